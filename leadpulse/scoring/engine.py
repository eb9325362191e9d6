"""The scoring engine: `apply` folds one event into a contact's state, `snapshot` reads it.

Everything here is a pure function of (state, event, rules, time): the stream, a restarted
worker and the offline scorer therefore compute the same table from the same events.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from leadpulse.scoring.domains import account_of_state
from leadpulse.scoring.identity import Link, add_links
from leadpulse.scoring.merge import merged_view
from leadpulse.scoring.plan import Plan, plan_of
from leadpulse.scoring.rules import (
    DEFAULT_MODEL,
    FUNNEL_STAGES,
    SIDE_STAGES,
    STAGE_LEVEL,
    Category,
    Model,
    PropertyValue,
    Rules,
    Scorer,
    hot_hysteresis,
)
from leadpulse.scoring.state import SEEN_BYTES, ContactState, CrmStage, Derived, Part, ProfileValue, SignalSum
from leadpulse.scoring.timesearch import decay_eta_ms, first_time

Outcome = Literal["scored", "unscored", "duplicate"]
_PROSPECT = STAGE_LEVEL["prospect"]
_OPPORTUNITY = STAGE_LEVEL["opportunity"]
_EVENT_HASHER = hashlib.blake2b(digest_size=8)  # event_hash's, copied for each event id
_from_bytes = int.from_bytes
_new_tuple = tuple.__new__


@dataclass(slots=True, init=False)
class Event:
    """A validated input event. `contact_id` is the key: the contact id, else the anonymous id.

    The identity fields after `source` are carried for identity stitching and account
    scoring (a contact's cookies, its aliases, its account): `anonymous_id` and
    `previous_id` link those ids to the contact (`linked_ids`), `account_id` is kept on the
    state (latest by event time).

    Treated as a value: nothing changes an event once built (a new one is built with
    `replace`). Not frozen because one is built per input record, and a frozen dataclass's
    constructor makes a call per field: 1.7 µs of the record's decoding, against 0.3 µs.
    Its `__init__` is written out, as those of the other values here (state.SignalSum says why)."""

    event_id: str
    type: str
    contact_id: str
    identified: bool
    occurred_ms: int
    properties: dict[str, Any]
    source: str | None = None
    anonymous_id: str | None = None  # the cookie or device id, also when a contact id is known
    account_id: str | None = None  # Segment groupId (group call, or context.groupId)
    previous_id: str | None = None  # Segment alias: the id the contact was known by before
    call: str | None = None  # the Segment call it came from (track, identify, ...); None: native
    received_ms: int | None = None  # Segment's `receivedAt`: when the collector (or Segment) took it in

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        event_id: str,
        type: str,
        contact_id: str,
        identified: bool,
        occurred_ms: int,
        properties: dict[str, Any],
        source: str | None = None,
        anonymous_id: str | None = None,
        account_id: str | None = None,
        previous_id: str | None = None,
        call: str | None = None,
        received_ms: int | None = None,
    ) -> None:
        self.event_id, self.type, self.contact_id, self.identified = event_id, type, contact_id, identified
        self.occurred_ms, self.properties, self.source, self.anonymous_id = (
            occurred_ms,
            properties,
            source,
            anonymous_id,
        )
        self.account_id, self.previous_id, self.call, self.received_ms = account_id, previous_id, call, received_ms


@dataclass(slots=True, init=False)
class Reason:
    """A value, as every output below: not frozen, so that its `__init__` can be written out
    (state.SignalSum says why); nothing changes one once built."""

    signal: str
    part: Literal["fit", "engagement"]
    points: float

    def __init__(self, signal: str, part: Literal["fit", "engagement"], points: float) -> None:
        self.signal, self.part, self.points = signal, part, points


@dataclass(slots=True, init=False)
class ModelScore:
    """A contact as one named model scores it (rules `[models.<name>]`)."""

    model: str
    score: int
    fit: float
    engagement: float
    temperature: int
    temperature_label: str
    reasons: tuple[Reason, ...]

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        model: str,
        score: int,
        fit: float,
        engagement: float,
        temperature: int,
        temperature_label: str,
        reasons: tuple[Reason, ...],
    ) -> None:
        self.model, self.score, self.fit, self.engagement = model, score, fit, engagement
        self.temperature, self.temperature_label, self.reasons = temperature, temperature_label, reasons


@dataclass(slots=True, init=False)
class Snapshot:
    contact_id: str
    score: int
    fit: float
    engagement: float
    temperature: int
    temperature_label: str
    stage: str
    rules_version: str
    updated_ms: int
    reasons: tuple[Reason, ...]
    segments: tuple[str, ...] = ()
    interests: tuple[tuple[str, float], ...] = ()  # (interest, decayed weight), strongest first
    account_id: str | None = None  # the contact's account (account_of): explicit, else a business e-mail domain
    models: tuple[ModelScore, ...] = ()  # the named models that apply to the contact, in file order

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        contact_id: str,
        score: int,
        fit: float,
        engagement: float,
        temperature: int,
        temperature_label: str,
        stage: str,
        rules_version: str,
        updated_ms: int,
        reasons: tuple[Reason, ...],
        segments: tuple[str, ...] = (),
        interests: tuple[tuple[str, float], ...] = (),
        account_id: str | None = None,
        models: tuple[ModelScore, ...] = (),
    ) -> None:
        self.contact_id, self.score, self.fit, self.engagement = contact_id, score, fit, engagement
        self.temperature, self.temperature_label, self.stage = temperature, temperature_label, stage
        self.rules_version, self.updated_ms, self.reasons, self.segments = rules_version, updated_ms, reasons, segments
        self.interests, self.account_id, self.models = interests, account_id, models


@dataclass(slots=True, init=False)
class StageChange:
    id: str
    contact_id: str
    from_stage: str | None
    to_stage: str
    occurred_ms: int
    cause_event_id: str
    score: int
    rules_version: str
    merged_from: str | None = None  # the anonymous id whose hand-over caused it (identity stitching)

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        id: str,
        contact_id: str,
        from_stage: str | None,
        to_stage: str,
        occurred_ms: int,
        cause_event_id: str,
        score: int,
        rules_version: str,
        merged_from: str | None = None,
    ) -> None:
        self.id, self.contact_id, self.from_stage, self.to_stage = id, contact_id, from_stage, to_stage
        self.occurred_ms, self.cause_event_id, self.score = occurred_ms, cause_event_id, score
        self.rules_version, self.merged_from = rules_version, merged_from


@dataclass(slots=True, init=False)
class HotLead:
    id: str
    contact_id: str
    occurred_ms: int
    cause_event_id: str
    snapshot: Snapshot
    merged_from: str | None = None  # the anonymous id whose hand-over caused it (identity stitching)
    model: str = DEFAULT_MODEL  # the model whose score became hot

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        id: str,
        contact_id: str,
        occurred_ms: int,
        cause_event_id: str,
        snapshot: Snapshot,
        merged_from: str | None = None,
        model: str = DEFAULT_MODEL,
    ) -> None:
        self.id, self.contact_id, self.occurred_ms, self.cause_event_id = id, contact_id, occurred_ms, cause_event_id
        self.snapshot, self.merged_from, self.model = snapshot, merged_from, model

    @property
    def model_score(self) -> ModelScore | None:
        """The named model's view of the contact (None for the default model: the snapshot's own)."""
        return next((found for found in self.snapshot.models if found.model == self.model), None)


Output = StageChange | HotLead


class Applied(NamedTuple):
    state: ContactState
    outputs: tuple[Output, ...]
    outcome: Outcome
    links: tuple[Link, ...] = ()  # to send to the anonymous ids the event linked (scoring.identity)


def event_hash(event_id: str) -> int:
    """64-bit id hash used for de-duplication and as the last-writer-wins tie-breaker."""
    return _from_bytes(event_key(event_id), "little")


def event_key(event_id: str) -> bytes:
    """`event_hash` as the 8 little-endian bytes a state's `seen` packs. One per event: a copy
    of a prepared hasher, since the constructor's keyword argument (`digest_size`) costs
    ~1,500 machine instructions of argument parsing per call."""
    hasher = _EVENT_HASHER.copy()
    hasher.update(event_id.encode())
    return hasher.digest()


def _holds(seen: bytes, key: bytes) -> bool:
    """Whether `key` is one of the hashes packed in `seen`: found at a multiple of their size
    (elsewhere it spans two of them)."""
    at = seen.find(key)
    while at > 0 and at % SEEN_BYTES:
        at = seen.find(key, at + 1)
    return at >= 0


def output_id(*cause: str) -> str:
    """Deterministic id of an output from its cause, so consumers can drop replays."""
    return hashlib.blake2b("\x1f".join(cause).encode(), digest_size=16).hexdigest()


def future_reason(event: Event, now_ms: int, rules: Rules) -> str | None:
    """Why an event is refused for being ahead of `now_ms`, or None: decay would otherwise
    credit points that have not happened yet (a producer with a wrong clock)."""
    ahead = event.occurred_ms - now_ms
    if ahead > rules.max_future_ms:
        return f"occurred_at is {ahead / 1000:.0f}s in the future (limit {rules.max_future_ms / 1000:.0f}s)"
    return None


def new_state(contact_id: str) -> ContactState:
    return ContactState(contact_id=contact_id)


def linked_ids(event: Event) -> tuple[str, ...]:
    """The ids an event links to its contact: the cookie of an identified event (a form fill,
    an identify call with both ids) and the previous id of a Segment alias. An event keyed by
    its anonymous id links nothing."""
    found = (event.anonymous_id, event.previous_id)
    return tuple(dict.fromkeys(i for i in found if i is not None and i != event.contact_id))


def view_of(state: ContactState, rules: Rules) -> ContactState:
    """The state a contact is scored on: its own merged with its linked anonymous ids' parts."""
    return merged_view(state, rules.half_life_ms)


def apply(state: ContactState, event: Event, rules: Rules) -> Applied:
    """Fold `event` into `state`. Duplicates (an id among the last `dedup_window` applied to
    this contact) change nothing: retries and redelivery after a crash resend an event within
    seconds, long before a contact receives that many newer events."""
    key = event_key(event.event_id)
    if _holds(state.seen, key):
        return Applied(state, (), "duplicate")
    window = rules.dedup_window * SEEN_BYTES
    seen = state.seen[SEEN_BYTES - window :] + key if window > SEEN_BYTES else key
    tie = _from_bytes(key, "little")
    plan = plan_of(rules)
    properties, occurred_ms, half_life_ms = event.properties, event.occurred_ms, rules.half_life_ms
    signals = state.signals
    signal = plan.signal_for(event.type, properties)
    if signal is not None:
        signals = dict(signals)
        signals[signal.name] = _add(signals.get(signal.name), signal.points, occurred_ms, half_life_ms)
    interests = state.interests
    for interest in plan.interests_of(properties):
        if interests is state.interests:
            interests = dict(interests)
        interests[interest.name] = _add(interests.get(interest.name), interest.weight, occurred_ms, half_life_ms)
    model_signals = state.model_signals
    for model, own in plan.own_signals_for(event.type, properties):
        if model_signals is state.model_signals:
            model_signals = dict(model_signals)
        sums = dict(model_signals.get(model.name, {}))
        sums[own.name] = _add(sums.get(own.name), own.points, occurred_ms, half_life_ms)
        model_signals[model.name] = sums
    if plan.profile_keys.isdisjoint(properties):
        profile, best_fit = state.profile, state.best_fit
    else:
        profile, best_fit = _merge_profile(state, event, tie, rules)
    crm_level, crm_last = state.crm_level, state.crm_last
    explicit = rules.explicit_stages.get(event.type)
    if explicit is not None:
        if explicit in STAGE_LEVEL:
            crm_level = max(crm_level, STAGE_LEVEL[explicit])
        if crm_last is None or (event.occurred_ms, tie) > (crm_last.occurred_ms, crm_last.tie):
            crm_last = CrmStage(explicit, event.occurred_ms, tie)
    claims, parts = state.claims, state.parts
    links: tuple[Link, ...] = ()
    if event.anonymous_id is not None or event.previous_id is not None:
        claims, links = add_links(
            state.contact_id, state.claims, linked_ids(event), (event.occurred_ms, tie), rules.max_linked_ids
        )
        if any(link.claim.refused and link.anonymous_id in parts for link in links):  # pushed out by the cap:
            parts = {anonymous_id: part for anonymous_id, part in parts.items() if anonymous_id in claims}  # leaves
    account, email = state.account, state.email
    if event.account_id is not None or "account_id" in properties:
        account = _latest(account, _explicit_account(event), occurred_ms, tie)
    if "email" in properties:
        email = _latest(email, _text(properties.get("email")), occurred_ms, tie)
    scored = (
        signal is not None
        or model_signals is not state.model_signals
        or profile is not state.profile
        or explicit is not None
        or interests is not state.interests
        or account is not state.account
        or email is not state.email
    )
    updated = ContactState(
        state.contact_id,
        state.identified or event.identified,
        state.intent or event.type in rules.opportunity_events,
        state.hot_armed,
        event.occurred_ms if event.occurred_ms > state.last_event_ms else state.last_event_ms,  # max(): see _clamp
        crm_level,
        crm_last,
        state.stage,
        state.temperature,
        signals,
        profile,
        best_fit,
        seen,
        state.positions,
        state.published_ms,
        state.cooling_due_ms,
        interests,
        account,
        email,
        state.account_sent,
        state.nurtured,
        claims,
        parts,
        state.claim,
        state.sent_to,
        model_signals,
        state.model_armed,
        state.derived,
        state.folded,
    )
    outputs = _settle_view(updated, event.event_id, event.occurred_ms, plan)
    # Built as the tuple it is: a NamedTuple's constructor is a Python function around this
    # very call, ~1,300 machine instructions more per event.
    return _new_tuple(Applied, (updated, outputs, "scored" if scored else "unscored", links))


def attach(state: ContactState, anonymous_id: str, part: Part, rules: Rules) -> Applied:
    """A linked anonymous id's hand-over reaches its contact: its whole state replaces the
    part the contact held for it (None: detached, the id went to another contact or was
    erased), unless an older version arrives after a newer one (a replay). The merged view is
    settled as after an event; its stage changes and hot lead name the merge as their cause.
    A hand-over of an id the contact does not claim (beyond its cap, or sent before the cap
    pushed the id out) is refused: a contact holds parts of its claims only."""
    known = state.parts.get(anonymous_id)
    if anonymous_id not in state.claims or (known is not None and part.version < known.version):
        return Applied(state, (), "duplicate")
    updated = state.copy()
    updated.parts = {**state.parts, anonymous_id: part}
    if (known is None or known.state is None) and part.state is None:
        # Nothing was attached: nothing to settle, but the detach is kept, so that an
        # older hand-over arriving after it cannot attach the id.
        return Applied(updated, (), "unscored")
    cause = f"merge:{anonymous_id}:{part.version}"
    outputs = _settle_view(updated, cause, view_of(updated, rules).last_event_ms, plan_of(rules), anonymous_id)
    return Applied(updated, outputs, "scored")


def reevaluate(state: ContactState, at_ms: int, rules: Rules) -> Applied:
    """Re-read a contact at `at_ms` without a new event (the cooling timer): the temperature
    may drop. Nothing else moves: stages do not depend on time, and the hot alert re-arms
    only in `apply`, at event time, so that the stream (which ticks) and the offline scorer
    (which does not) decide every alert alike. Outcome 'scored': the snapshot changed."""
    score = score_parts(view_of(state, rules), at_ms, rules)[2]
    updated = state.copy()
    updated.temperature = rules.temperature(score)
    return Applied(updated, (), "scored" if updated.temperature != state.temperature else "unscored")


def snapshot(state: ContactState, at_ms: int, rules: Rules) -> Snapshot:
    """The contact at `at_ms`, on its merged view (its own history and its linked ids')."""
    own_id, state = state.contact_id, view_of(state, rules)
    derived = _derived(state, rules)
    fit_points = derived.fit_points
    if fit_points is None:  # read once per profile (Derived): a contact is published after each batch
        fit_points = derived.fit_points = tuple(_fit_points(state, rules))
    decayed = list(_decayed_signals(state.signals, at_ms, rules.signal_categories, rules.half_life_ms))
    fit, engagement, score = _combine(fit_points, decayed, rules)
    temperature = rules.temperature(score)
    segments = derived.segments
    if segments is None:  # `fit` is derived.fit: the same sum of the same points (_fit_of)
        segments = derived.segments = segments_of(state, fit, rules)
    return Snapshot(
        contact_id=own_id,
        score=score,
        fit=fit,
        engagement=engagement,
        temperature=temperature,
        temperature_label=rules.band_labels[temperature - 1],
        stage=stage_of(state, rules),
        rules_version=rules.version,
        updated_ms=at_ms,
        reasons=_reasons(fit_points, decayed, rules.top_reasons),
        segments=segments,
        interests=top_interests(state, at_ms, rules),
        account_id=account_of_state(state),
        models=tuple(_model_score(state, at_ms, model, rules) for model in rules.models if model.applies(segments)),
    )


def _model_score(state: ContactState, at_ms: int, model: Model, rules: Rules) -> ModelScore:
    fit_points = list(_fit_points(state, model))
    decayed = list(_decayed_signals(_sums_of(state, model), at_ms, model.signal_categories, rules.half_life_ms))
    fit, engagement, score = _combine(fit_points, decayed, model)
    temperature = model.temperature(score)
    reasons = _reasons(fit_points, decayed, rules.top_reasons)
    return ModelScore(model.name, score, fit, engagement, temperature, model.band_labels[temperature - 1], reasons)


def _reasons(
    fit_points: Iterable[tuple[str, PropertyValue, float]], decayed: list[tuple[str, str, float]], top: int
) -> tuple[Reason, ...]:
    """The `top` largest contributions to a score, fit and engagement alike."""
    reasons = [Reason(f"{attribute}: {value}", "fit", points) for attribute, value, points in fit_points if points]
    reasons.extend(Reason(name, "engagement", rounded) for name, _, value in decayed if (rounded := round(value, 1)))
    reasons.sort(key=lambda r: (-abs(r.points), r.signal))
    return tuple(reasons[:top])


def _sums_of(state: ContactState, model: Model) -> dict[str, SignalSum]:
    """A model with signals of its own reads their sums; the others share the top level's."""
    return state.model_signals.get(model.name, {}) if model.own_signals else state.signals


def segments_of(state: ContactState, fit: float, rules: Rules) -> tuple[str, ...]:
    """The rules' segments (in file order) the contact's latest profile and fit fall in."""
    profile = {attribute: known.value for attribute, known in state.profile.items()}
    return tuple(segment.name for segment in rules.segments if segment.contains(profile, fit))


def top_interests(state: ContactState, at_ms: int, rules: Rules) -> tuple[tuple[str, float], ...]:
    """The strongest interests at `at_ms` (decayed, rounded to 0.1; those that rounded to
    nothing left out). Interests the rules no longer define are not shown."""
    defined = plan_of(rules).interest_names
    weights = [
        (name, rounded)
        for name, summed in state.interests.items()
        if name in defined and (rounded := round(_decayed(summed, at_ms, rules.half_life_ms), 1)) > 0
    ]
    weights.sort(key=lambda item: (-item[1], item[0]))
    return tuple(weights[: rules.top_interests])


def interest_ranking(state: ContactState, at_ms: int, rules: Rules) -> list[str]:
    """The interests of the rules the contact has shown, strongest first (unrounded, so the
    order is the same at any time after the contact's events: every weight decays alike)."""
    defined = plan_of(rules).interest_names
    weights = [
        (name, weight)
        for name, summed in state.interests.items()
        if name in defined and (weight := _decayed(summed, at_ms, rules.half_life_ms)) > 0
    ]
    weights.sort(key=lambda item: (-item[1], item[0]))
    return [name for name, _ in weights]


def stage_of(state: ContactState, rules: Rules) -> str:
    """The stage is a function of state built from monotone parts (flags, maxima, lifetime
    points), so it never moves back by rule and does not depend on arrival order. Side
    stages come only from the latest explicit CRM event."""
    return _stage(state, rules, _derived(state, rules))


def _stage(state: ContactState, rules: Rules, derived: Derived) -> str:
    if state.crm_last is not None and state.crm_last.stage in SIDE_STAGES:
        return state.crm_last.stage
    level = state.crm_level  # at least 1 once identified (comparisons, not max(): see _clamp)
    if level < 1 and state.identified:
        level = 1
    if (
        level < _PROSPECT
        and derived.best >= rules.prospect_fit
        and _lifetime(state, rules) >= rules.prospect_engagement
    ):
        level = _PROSPECT
    if _PROSPECT <= level < _OPPORTUNITY and state.intent:
        level = _OPPORTUNITY
    return FUNNEL_STAGES[level]


def next_cooling_ms(state: ContactState, rules: Rules, from_ms: int | None = None) -> int | None:
    """When the temperature the contact has at `from_ms` (default: its latest event) will next
    drop if nothing happens (to a minute), or None when it is cold by then. Searched on time
    (scoring.timesearch), so the cooling timer can schedule each contact once per band instead
    of scanning the table."""
    state = view_of(state, rules)
    start = state.last_event_ms if from_ms is None else max(from_ms, state.last_event_ms)
    fit, _, score = score_parts(state, start, rules)
    temperature = rules.temperature(score)
    if temperature <= 1:
        return None
    floor = rules.band_floors[temperature - 1]
    # The score is under `floor` once weight_fit·fit + weight_engagement·engagement + 0.5 is,
    # the engagement rounded to 0.1: once the engagement itself is under `below`.
    target = (floor - 0.5 - rules.weight_fit * fit) / rules.weight_engagement if rules.weight_engagement else 0.0
    return first_time(
        lambda at_ms: score_parts(state, at_ms, rules)[2] < floor,
        start,
        20 * rules.half_life_ms,
        engagement_eta_ms(state, start, math.ceil(target * 10) / 10 - 0.05, rules),
    )


def engagement_eta_ms(state: ContactState, at_ms: int, below: float, rules: Rules) -> float | None:
    """How long after `at_ms` the contact's engagement (unrounded) falls under `below` if
    nothing happens: a search's starting point (timesearch.decay_eta_ms)."""
    decayed = _decayed_signals(state.signals, at_ms, rules.signal_categories, rules.half_life_ms)
    categories = rules.categories
    totals = ((total, categories[name].floor, categories[name].cap) for name, total in _per_category(decayed).items())
    return decay_eta_ms(totals, below, rules.half_life_ms)


def cooling_due_ms(state: ContactState, rules: Rules, now_ms: int) -> int | None:
    """When the contact's published temperature will next be out of date if nothing happens:
    `now_ms` if it already is (a worker that was down while the contact cooled), else the next
    band drop after `now_ms`; None once it is cold for good."""
    state = view_of(state, rules)
    start = max(now_ms, state.last_event_ms)
    if rules.temperature(score_parts(state, start, rules)[2]) != state.temperature:
        return start
    return next_cooling_ms(state, rules, start)


def _settle_view(
    state: ContactState, cause: str, occurred_ms: int, plan: Plan, merged_from: str | None = None
) -> tuple[Output, ...]:
    """Settle a contact on its merged view, at the view's latest event, and keep the view's
    stage, hysteresis and temperature on the contact's own state (the state the caller has
    just built). `plan`: the rules' (`plan_of`), which the caller has already looked up (a
    look-up costs ~1,300 machine instructions, a parameter nothing)."""
    if not state.parts:  # nothing linked (nearly every contact): the view is the state
        return _settle(state, cause, occurred_ms, plan, merged_from)
    view = view_of(state, plan.rules)
    outputs = _settle(view, cause, occurred_ms, plan, merged_from)
    if view is not state:
        state.stage, state.hot_armed, state.temperature = view.stage, view.hot_armed, view.temperature
        state.model_armed = view.model_armed
    return outputs


def _settle(
    state: ContactState, cause: str, occurred_ms: int, plan: Plan, merged_from: str | None
) -> tuple[Output, ...]:
    """Derive stage, temperature and the hot-lead hysteresis of a state the caller has just
    built, at its latest event, and say what changed. Runs at every event: it reads the
    profile only when the event changed it (`_derived`) and scores only the named models
    that apply."""
    rules, at_ms = plan.rules, state.last_event_ms
    derived = state.derived
    if (
        derived is None
        or derived.rules is not rules
        or derived.profile is not state.profile
        or derived.best_fit is not state.best_fit
    ):
        derived = _derive(state, rules)
    engagement = _engagement(state.signals, at_ms, rules.signal_categories, rules.categories, rules.half_life_ms)
    score = int(rules.weight_fit * derived.fit + rules.weight_engagement * engagement + 0.5)
    stage = _stage(state, rules, derived)
    outputs: tuple[Output, ...] = ()
    if stage != state.stage:
        change = StageChange(
            id=output_id(state.contact_id, "stage", str(state.stage), stage, cause),
            contact_id=state.contact_id,
            from_stage=state.stage,
            to_stage=stage,
            occurred_ms=occurred_ms,
            cause_event_id=cause,
            score=score,
            rules_version=rules.version,
            merged_from=merged_from,
        )
        outputs = (change,)
        state.stage = stage
    state.hot_armed, fired = hot_hysteresis(state.hot_armed, score, rules.band_floors[-1], rules.rearm_gap)
    fired_models = [DEFAULT_MODEL] if fired else []
    if derived.models:
        fired_models.extend(_settle_models(state, at_ms, engagement, derived, rules))
    if fired_models:
        view = snapshot(state, at_ms, rules)
        for model in fired_models:
            named = () if model == DEFAULT_MODEL else (model,)
            alert_id = output_id(state.contact_id, "hot", *named, cause)
            outputs += (HotLead(alert_id, state.contact_id, occurred_ms, cause, view, merged_from, model),)
    state.temperature = plan.temperature(score)
    return outputs


def _settle_models(state: ContactState, at_ms: int, engagement: float, derived: Derived, rules: Rules) -> list[str]:
    """The hot-lead hysteresis of each named model that applies to the contact: one alert per
    hot episode per model. A model that does not apply keeps its hysteresis as it was. A model
    on the top level's signals has the default model's engagement (`engagement`)."""
    fired: list[str] = []
    armed_by_model = state.model_armed
    for model, fit, shares in derived.models:
        own = engagement
        if not shares:
            sums = _sums_of(state, model)  # none yet (0.0, as `_engagement` would say): nearly every contact
            own = (
                _engagement(sums, at_ms, model.signal_categories, model.categories, rules.half_life_ms) if sums else 0.0
            )
        score = int(model.weight_fit * fit + model.weight_engagement * own + 0.5)
        armed = armed_by_model.get(model.name, True)
        now_armed, alert = hot_hysteresis(armed, score, model.hot_floor, model.rearm_gap)
        if now_armed != armed:
            if armed_by_model is state.model_armed:
                armed_by_model = dict(armed_by_model)
            armed_by_model[model.name] = now_armed
        if alert:
            fired.append(model.name)
    state.model_armed = armed_by_model
    return fired


def _derived(state: ContactState, rules: Rules) -> Derived:
    """What the state's profile and best fit values give under `rules`, read again only when
    the state holds other dicts than those it was read from (an event that changed them)."""
    derived = state.derived
    if (
        derived is not None
        and derived.rules is rules
        and derived.profile is state.profile
        and derived.best_fit is state.best_fit
    ):
        return derived
    return _derive(state, rules)


def _derive(state: ContactState, rules: Rules) -> Derived:
    """`_derived`, read again and kept on the state."""
    if not state.profile and not state.best_fit:  # a new contact, or one that sent no profile yet
        nothing = plan_of(rules).nothing_known
        derived = Derived(rules, state.profile, state.best_fit, nothing.fit, nothing.best, nothing.models)
        state.derived = derived
        return derived
    fit = _fit_of(state.profile, rules)
    values = {attribute: known.value for attribute, known in state.profile.items()}
    shared = plan_of(rules).shares_engagement
    models = tuple(
        (model, _fit_of(state.profile, model), model.name in shared)
        for model in rules.models
        if model.applies_to_profile(values, fit)
    )
    best = _clamp(math.fsum([max(points, 0.0) for points in state.best_fit.values()]))
    derived = Derived(rules, state.profile, state.best_fit, fit, best, models)
    state.derived = derived
    return derived


def _fit_of(profile: dict[str, ProfileValue], scorer: Scorer) -> float:
    """The fit part of a score, as `_combine` computes it (fsum is exact: the order of the
    attributes does not matter)."""
    criteria = scorer.fit
    points = [
        criterion.points(known.value)
        for attribute, known in profile.items()
        if (criterion := criteria.get(attribute)) is not None
    ]
    return round(_clamp(math.fsum(points)), 1)


def _engagement(
    sums: dict[str, SignalSum],
    at_ms: int,
    signal_categories: dict[str, str],
    categories: dict[str, Category],
    half_life_ms: int,
) -> float:
    """The engagement part of a score at `at_ms`, as `_combine` computes it from
    `_decayed_signals` (the same floats: the same decay of each sum, exact sums per category).
    Runs at every event, so a category's values are gathered in a list only once it has a
    second one: most categories of a contact hold one signal, and the exact sum of one value
    is that value (`+ 0.0`: fsum's zero, never -0.0), without a list and an fsum call."""
    single: dict[str, float] = {}
    several: dict[str, list[float]] = {}
    for name, summed in sums.items():
        category_name = signal_categories.get(name)
        if category_name is None:
            continue
        value = summed.value
        if at_ms > summed.ref_ms:
            factor: float = 2.0 ** ((summed.ref_ms - at_ms) / half_life_ms)
            value = value * factor
        if category_name not in single:
            single[category_name] = value
        elif category_name in several:
            several[category_name].append(value)
        else:
            several[category_name] = [single[category_name], value]
    return round(_clamp(_capped_sum(single, several, categories, floors=True)), 1)


def _capped_sum(
    single: dict[str, float], several: dict[str, list[float]], categories: dict[str, Category], *, floors: bool
) -> float:
    """The exact sum over categories of each one's total, held within its cap (and its floor
    with `floors`): a category's first value in `single`, all of them in `several` once it has
    a second (the exact sum of one value is that value; `+ 0.0`: fsum's zero, never -0.0).
    min() and max() as comparisons: see _clamp."""
    capped = []
    for category_name, value in single.items():
        values = several.get(category_name)
        total = value + 0.0 if values is None else math.fsum(values)
        category = categories[category_name]
        if floors:
            total = category.floor if category.floor > total else total
        capped.append(category.cap if category.cap < total else total)
    return math.fsum(capped)


def _add(current: SignalSum | None, points: float, at_ms: int, half_life_ms: int) -> SignalSum:
    """Add p at time t: a late event is decayed to the reference, a newer one moves it."""
    lifetime = 0.0 if points < 0.0 else points  # max(points, 0.0): see _clamp
    if current is None:
        return SignalSum(points, at_ms, lifetime)
    lifetime += current.lifetime
    if at_ms <= current.ref_ms:
        return SignalSum(
            current.value + points * 2.0 ** ((at_ms - current.ref_ms) / half_life_ms), current.ref_ms, lifetime
        )
    return SignalSum(current.value * 2.0 ** ((current.ref_ms - at_ms) / half_life_ms) + points, at_ms, lifetime)


def _merge_profile(
    state: ContactState, event: Event, tie: int, rules: Rules
) -> tuple[dict[str, ProfileValue], dict[str, float]]:
    """Profile attributes come from any event that carries them (profile updates, forms), and
    from the words of another one the rules derive them from (`derive_from`: a seniority from a
    job title) when the event does not carry them itself."""
    profile, best_fit, kept = state.profile, state.best_fit, rules.model_attributes
    for attribute, value in _profile_values(event.properties, rules):
        criterion = rules.fit.get(attribute)
        if value is None or isinstance(value, dict | list) or (criterion is None and attribute not in kept):
            continue
        known = profile.get(attribute)
        if known is None or (event.occurred_ms, tie) > (known.occurred_ms, known.tie):
            if profile is state.profile:
                profile = dict(profile)
            profile[attribute] = ProfileValue(value, event.occurred_ms, tie)
        if criterion is None:  # only a named model's fit reads it
            continue
        points = criterion.points(value)
        if points > best_fit.get(attribute, float("-inf")):
            if best_fit is state.best_fit:
                best_fit = dict(best_fit)
            best_fit[attribute] = points
    return profile, best_fit


def _profile_values(properties: dict[str, Any], rules: Rules) -> Iterable[tuple[str, Any]]:
    """The event's properties, plus the values derived from them (`derive_from`) that it
    does not carry itself; the properties alone, as they are, for nearly every event."""
    derived = [
        (criterion.attribute, value)
        for criterion in rules.derived_fit
        if criterion.attribute not in properties
        and isinstance(source := properties.get(criterion.derive_from or ""), str)
        and (value := criterion.derived(source)) is not None
    ]
    return [*properties.items(), *derived] if derived else properties.items()


def _explicit_account(event: Event) -> str | None:
    """The account an event names: a Segment group's groupId (Event.account_id), else an
    `account_id` property; one field, so both kinds of input end in the same account."""
    return event.account_id if event.account_id is not None else _text(event.properties.get("account_id"))


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _latest(known: ProfileValue | None, value: str | None, occurred_ms: int, tie: int) -> ProfileValue | None:
    """Last writer wins by (event time, event-id hash), as profile values: order-independent."""
    if value is None or (known is not None and (occurred_ms, tie) <= (known.occurred_ms, known.tie)):
        return known
    return ProfileValue(value, occurred_ms, tie)


def score_parts(state: ContactState, at_ms: int, rules: Rules) -> tuple[float, float, int]:
    """(fit, engagement, score) at `at_ms`, without building a snapshot."""
    fit = _derived(state, rules).fit
    engagement = _engagement(state.signals, at_ms, rules.signal_categories, rules.categories, rules.half_life_ms)
    return fit, engagement, int(rules.weight_fit * fit + rules.weight_engagement * engagement + 0.5)


def _combine(
    fit_points: Iterable[tuple[str, PropertyValue, float]], decayed: Iterable[tuple[str, str, float]], rules: Scorer
) -> tuple[float, float, int]:
    """(fit, engagement, score) from the fit points and decayed signals at one moment; parts
    rounded to 0.1 before combining so that the published numbers add up."""
    fit = round(_clamp(math.fsum(points for _, _, points in fit_points)), 1)
    capped = []
    for category_name, total in _per_category(decayed).items():
        category = rules.categories[category_name]
        capped.append(min(max(total, category.floor), category.cap))
    engagement = round(_clamp(math.fsum(capped)), 1)
    return fit, engagement, int(rules.weight_fit * fit + rules.weight_engagement * engagement + 0.5)


def _per_category(decayed: Iterable[tuple[str, str, float]]) -> dict[str, float]:
    """Each category's exact total (fsum) of decayed signals (signal, category, value), in
    the order the categories first appear."""
    values: dict[str, list[float]] = {}
    for _, category_name, value in decayed:
        values.setdefault(category_name, []).append(value)
    return {category_name: math.fsum(each) for category_name, each in values.items()}


def _fit_points(state: ContactState, rules: Scorer) -> Iterator[tuple[str, PropertyValue, float]]:
    for attribute, known in state.profile.items():
        criterion = rules.fit.get(attribute)
        if criterion is not None:
            yield attribute, known.value, criterion.points(known.value)


def _decayed_signals(
    signals: dict[str, SignalSum], at_ms: int, categories: dict[str, str], half_life_ms: int
) -> Iterator[tuple[str, str, float]]:
    """(signal, category, value at `at_ms`). A signal the current rules (or model) no longer
    define scores nothing (rules changed without a replay)."""
    for name, summed in signals.items():
        category = categories.get(name)
        if category is not None:
            yield name, category, _decayed(summed, at_ms, half_life_ms)


def _decayed(summed: SignalSum, at_ms: int, half_life_ms: int) -> float:
    if at_ms > summed.ref_ms:
        factor: float = 2.0 ** ((summed.ref_ms - at_ms) / half_life_ms)
        return summed.value * factor
    return summed.value


def _lifetime(state: ContactState, rules: Rules) -> float:
    """The lifetime engagement of the prospect test. It and the best fit values
    (`Derived.best`: an attribute whose best value scores negative, an intern's title, counts
    as 0 there) only grow, so a contact never un-qualifies by rule. Gathered as `_engagement`
    gathers its values (a list only for a category's second one), capped by comparisons."""
    single: dict[str, float] = {}
    several: dict[str, list[float]] = {}
    signal_categories = rules.signal_categories
    for name, summed in state.signals.items():
        category_name = signal_categories.get(name)
        if category_name is None:
            continue
        if category_name not in single:
            single[category_name] = summed.lifetime
        elif category_name in several:
            several[category_name].append(summed.lifetime)
        else:
            several[category_name] = [single[category_name], summed.lifetime]
    return _clamp(_capped_sum(single, several, rules.categories, floors=False))


def _clamp(value: float) -> float:
    """min(max(value, 0.0), 100.0), written as the comparisons those builtins make (the same
    result, the same zero's sign): called several times per event, and min() and max() cost
    ~1,600 machine instructions each in CPython 3.11 (their argument parsing), both comparisons ~90."""
    low = 0.0 if value < 0.0 else value
    return 100.0 if low > 100.0 else low

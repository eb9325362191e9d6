"""Per-contact state: everything the engine needs to score a contact, and nothing it can derive.

Each part is merged commutatively so that the final state does not depend on arrival order:
decayed sums per signal, last-writer-wins profile attributes (by event time, then event id),
monotone maxima and flags. The bytes form goes into a Faust table and its changelog.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import orjson

from leadpulse.scoring.rules import FUNNEL_STAGES, SIDE_STAGES, Model, PropertyValue, Rules

# 8: 7 + named models (per model: the sums of its own signals, its hot-alert hysteresis).
# 7: 6 + identity stitching (the ids a contact linked, the winning link of an anonymous id,
# where its part was last sent, the parts of linked anonymous ids).
# 6: 5 + the nurture period last sent per track.
# 5: 2 + interests, the explicit account, the latest e-mail and the account last sent to.
# Also read: 1, 2, 3 (2 + the explicit account), 5, 6 and 7. Formats 3 (2 + interests) and 4 of
# the accounts branch were never released and are not read: 4 is refused, and a 3 is main's.
# The identity branch's own 7 (without the nurture periods) was never released either.
FORMAT_VERSION = 8
_READ = (1, 2, 3, 5, 6, 7, FORMAT_VERSION)
STAGE_CODES: tuple[str, ...] = FUNNEL_STAGES + SIDE_STAGES
_FLAG_IDENTIFIED, _FLAG_INTENT, _FLAG_ARMED = 1, 2, 4
SEEN_BYTES = 8  # an event's hash in ContactState.seen


@dataclass(slots=True, init=False)
class SignalSum:
    """Σ p·2^(-(ref - t)/H) for one signal, kept at `ref_ms` (its newest event), plus the
    undecayed positive points ever earned (`lifetime`), which only grows: stages use it.

    This and the two values below are treated as values: nothing changes one once built,
    states share them. Not frozen because events build them (1.5 per event on average) and a
    frozen dataclass's constructor makes a call per field: 0.55 µs each, against 0.15 µs.

    The hot classes of the core write their `__init__` out (`init=False`): the one dataclasses
    generates is Python made at import time, which the compiled core (docs/compiled.md) runs
    interpreted, setting each field by name: ~300 ns a call, against ~50 ns compiled."""

    value: float
    ref_ms: int
    lifetime: float

    def __init__(self, value: float, ref_ms: int, lifetime: float) -> None:
        self.value, self.ref_ms, self.lifetime = value, ref_ms, lifetime


@dataclass(slots=True, init=False)
class ProfileValue:
    """Last writer wins by (occurred_ms, tie), tie being the event-id hash: order-independent."""

    value: PropertyValue
    occurred_ms: int
    tie: int

    def __init__(self, value: PropertyValue, occurred_ms: int, tie: int) -> None:
        self.value, self.occurred_ms, self.tie = value, occurred_ms, tie


@dataclass(slots=True, init=False)
class CrmStage:
    """The latest explicit CRM stage event; it decides side stages (nurturing, disqualified)."""

    stage: str
    occurred_ms: int
    tie: int

    def __init__(self, stage: str, occurred_ms: int, tie: int) -> None:
        self.stage, self.occurred_ms, self.tie = stage, occurred_ms, tie


@dataclass(frozen=True, slots=True)
class Claim:
    """A link of an anonymous id to a contact, ordered by (event time, event-id hash,
    contact id): the earliest one wins (docs/scoring.md#identity), whatever the order of arrival.
    `refused`: the link is not among the contact's `max_linked_ids` earliest, so the id it
    names is not merged (it stands on its own); a link once refused stays refused."""

    contact_id: str
    occurred_ms: int
    tie: int
    refused: bool = False

    def key(self) -> tuple[int, int, str]:
        return (self.occurred_ms, self.tie, self.contact_id)


@dataclass(frozen=True, slots=True)
class Part:
    """What a contact holds of one linked anonymous id: its whole own state as last handed
    over (None: detached), and the version it was sent with, so that an older hand-over
    arriving late (a replay after a crash) cannot replace a newer one."""

    version: int
    state: ContactState | None


@dataclass(slots=True, init=False)
class Derived:
    """Never stored: what the engine read from a state's profile and best fit values under
    one rules object (engine._derived), valid while the state holds these very dicts (a
    state never changes a dict it holds; a new value is a new dict). Events that carry no
    profile value, nearly all of them, reuse it instead of reading the profile again.
    A value, not frozen: built at each profile change (see SignalSum on `__init__`)."""

    rules: Rules
    profile: dict[str, ProfileValue]
    best_fit: dict[str, float]
    fit: float  # the default model's fit part, as scores show it
    best: float  # the fit of the best values seen (clamped, negative points as 0): the prospect test's
    models: tuple[tuple[Model, float, bool], ...]  # the named models that apply: (model, its fit, shares
    # the default model's engagement: the top level's signals and categories)
    # What a snapshot shows of the profile, read at the first snapshot that asks (engine.snapshot):
    # (attribute, value, points) of the default model's fit criteria, and the segments.
    fit_points: tuple[tuple[str, PropertyValue, float], ...] | None = None
    segments: tuple[str, ...] | None = None

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        rules: Rules,
        profile: dict[str, ProfileValue],
        best_fit: dict[str, float],
        fit: float,
        best: float,
        models: tuple[tuple[Model, float, bool], ...],
    ) -> None:
        self.rules, self.profile, self.best_fit = rules, profile, best_fit
        self.fit, self.best, self.models = fit, best, models
        self.fit_points = self.segments = None


@dataclass(slots=True, init=False)
class ContactState:
    """Treated as a value: the engine never changes a state it is given, only the new one it
    builds (mutable so that building it costs one constructor call on the hot path; its
    `__init__` written out, see SignalSum). A dict argument left out is a new empty dict."""

    contact_id: str
    identified: bool = False
    intent: bool = False
    hot_armed: bool = True
    last_event_ms: int = 0
    crm_level: int = 0
    crm_last: CrmStage | None = None
    stage: str | None = None
    temperature: int = 0
    signals: dict[str, SignalSum] = field(default_factory=dict)
    profile: dict[str, ProfileValue] = field(default_factory=dict)
    best_fit: dict[str, float] = field(default_factory=dict)
    # The hashes of the latest events applied (engine.event_hash), oldest first, packed as
    # 8-byte little-endian ints (SEEN_BYTES each): one flat object, searched and cut without
    # touching an int object per id (a tuple of 64 ints was ~2.5 KB in 65 objects a contact).
    seen: bytes = b""
    # Where the stream stands for this contact, per input (its offset in the contact's
    # partition): a replay after a crash re-delivers offsets at or below these, however many
    # events the contact got in the replayed span. The engine carries them over untouched.
    positions: dict[str, int] = field(default_factory=dict)
    published_ms: int = 0  # latest time a snapshot was published at: updated_at never goes back
    cooling_due_ms: int | None = None  # when the stream means to re-read it (kept: no recomputing on recovery)
    interests: dict[str, SignalSum] = field(default_factory=dict)  # decayed weight per interest of the rules
    # The explicit account: a Segment `group` call's groupId (or context.groupId), or an
    # `account_id` property of any event; latest by (event time, event-id hash) like a
    # profile value, so any arrival order ends with the same account.
    account: ProfileValue | None = None
    # The latest `email` property (last writer wins): its business domain is the account
    # when there is no explicit one (scoring.domains.account_of).
    email: ProfileValue | None = None
    account_sent: str | None = None  # the account the stream last sent this contact's member record to
    # Per nurture track, the latest period (index of a fixed window of time) a record was sent
    # in: at most one per track per period, and a maximum, so merging never depends on order.
    nurtured: dict[str, int] = field(default_factory=dict)
    # Identity stitching (scoring/identity.py). As a contact: the anonymous ids its own events
    # linked to it, each with its earliest link (event time, event-id hash), only the
    # `max_linked_ids` earliest of them (the cap: a bound by construction), and the latest
    # part handed over by each of those ids. As an anonymous id: the winning link (refused or
    # not), and the contact its part was last sent to (so that a contact that lost it gets a
    # detach).
    claims: dict[str, tuple[int, int]] = field(default_factory=dict)
    parts: dict[str, Part] = field(default_factory=dict)
    claim: Claim | None = None
    sent_to: str | None = None
    # Named models (rules `[models.<name>]`): the decayed sums of the signals of each model
    # that has its own (the others read `signals`), and each model's hot-alert hysteresis
    # (absent: armed), kept like `hot_armed`.
    model_signals: dict[str, dict[str, SignalSum]] = field(default_factory=dict)
    model_armed: dict[str, bool] = field(default_factory=dict)
    derived: Derived | None = field(default=None, compare=False, repr=False)  # a cache, never stored
    folded: FoldedParts | None = field(default=None, compare=False, repr=False)  # a cache, never stored (merge.py)

    def __init__(  # noqa: PLR0917 (a dataclass's constructor, called positionally)
        self,
        contact_id: str,
        identified: bool = False,
        intent: bool = False,
        hot_armed: bool = True,
        last_event_ms: int = 0,
        crm_level: int = 0,
        crm_last: CrmStage | None = None,
        stage: str | None = None,
        temperature: int = 0,
        signals: dict[str, SignalSum] | None = None,
        profile: dict[str, ProfileValue] | None = None,
        best_fit: dict[str, float] | None = None,
        seen: bytes = b"",
        positions: dict[str, int] | None = None,
        published_ms: int = 0,
        cooling_due_ms: int | None = None,
        interests: dict[str, SignalSum] | None = None,
        account: ProfileValue | None = None,
        email: ProfileValue | None = None,
        account_sent: str | None = None,
        nurtured: dict[str, int] | None = None,
        claims: dict[str, tuple[int, int]] | None = None,
        parts: dict[str, Part] | None = None,
        claim: Claim | None = None,
        sent_to: str | None = None,
        model_signals: dict[str, dict[str, SignalSum]] | None = None,
        model_armed: dict[str, bool] | None = None,
        derived: Derived | None = None,
        folded: FoldedParts | None = None,
    ) -> None:
        self.contact_id, self.identified, self.intent, self.hot_armed = contact_id, identified, intent, hot_armed
        self.last_event_ms, self.crm_level, self.crm_last = last_event_ms, crm_level, crm_last
        self.stage, self.temperature = stage, temperature
        self.signals = {} if signals is None else signals
        self.profile = {} if profile is None else profile
        self.best_fit = {} if best_fit is None else best_fit
        self.seen = seen
        self.positions = {} if positions is None else positions
        self.published_ms, self.cooling_due_ms = published_ms, cooling_due_ms
        self.interests = {} if interests is None else interests
        self.account, self.email, self.account_sent = account, email, account_sent
        self.nurtured = {} if nurtured is None else nurtured
        self.claims = {} if claims is None else claims
        self.parts = {} if parts is None else parts
        self.claim, self.sent_to = claim, sent_to
        self.model_signals = {} if model_signals is None else model_signals
        self.model_armed = {} if model_armed is None else model_armed
        self.derived, self.folded = derived, folded

    def copy(self) -> ContactState:
        """A shallow copy, for a caller about to set some of its fields (a state never changes
        a dict it holds, so copies share them). `dataclasses.replace` is Python in either build
        and reads each of the 30 fields by name (5.2 µs a copy, pure, against 0.8),
        and `copy.copy` fails on the compiled class (docs/compiled.md)."""
        return ContactState(
            self.contact_id,
            self.identified,
            self.intent,
            self.hot_armed,
            self.last_event_ms,
            self.crm_level,
            self.crm_last,
            self.stage,
            self.temperature,
            self.signals,
            self.profile,
            self.best_fit,
            self.seen,
            self.positions,
            self.published_ms,
            self.cooling_due_ms,
            self.interests,
            self.account,
            self.email,
            self.account_sent,
            self.nurtured,
            self.claims,
            self.parts,
            self.claim,
            self.sent_to,
            self.model_signals,
            self.model_armed,
            self.derived,
            self.folded,
        )


@dataclass(slots=True, init=False)
class FoldedParts:
    """Never stored: a contact's attached parts folded into one state (merge.py), valid while
    the contact holds this very `parts` dict (a new hand-over is a new dict) under this
    half-life. Kept on the contact, so each own event of a contact with linked ids costs one
    merge of this fold into its state, not a fold of every part."""

    parts: dict[str, Part]
    half_life_ms: int
    state: ContactState | None  # None: every part detached

    def __init__(self, parts: dict[str, Part], half_life_ms: int, state: ContactState | None) -> None:
        self.parts, self.half_life_ms, self.state = parts, half_life_ms, state


def to_bytes(state: ContactState) -> bytes:
    """Compact JSON array; ids of seen events as packed 64-bit ints in base64 (11 B each)."""
    return orjson.dumps(to_fields(state))


def to_fields(state: ContactState) -> list[object]:
    """The JSON array of a state; parts nest their states in the same form."""
    flags = (
        (_FLAG_IDENTIFIED if state.identified else 0)
        | (_FLAG_INTENT if state.intent else 0)
        | (_FLAG_ARMED if state.hot_armed else 0)
    )
    crm = state.crm_last
    claim = state.claim
    return [
        FORMAT_VERSION,
        state.contact_id,
        flags,
        state.last_event_ms,
        state.crm_level,
        None if crm is None else [STAGE_CODES.index(crm.stage), crm.occurred_ms, crm.tie],
        -1 if state.stage is None else STAGE_CODES.index(state.stage),
        state.temperature,
        {name: [s.value, s.ref_ms, s.lifetime] for name, s in state.signals.items()},
        {name: [p.value, p.occurred_ms, p.tie] for name, p in state.profile.items()},
        state.best_fit,
        base64.b64encode(state.seen).decode(),
        state.positions,
        state.published_ms,
        state.cooling_due_ms,
        {name: [s.value, s.ref_ms, s.lifetime] for name, s in state.interests.items()},
        _profile_value(state.account),
        _profile_value(state.email),
        state.account_sent,
        state.nurtured,
        {anonymous_id: list(first) for anonymous_id, first in state.claims.items()},
        {
            anonymous_id: [part.version, None if part.state is None else to_fields(part.state)]
            for anonymous_id, part in state.parts.items()
        },
        None if claim is None else [claim.contact_id, claim.occurred_ms, claim.tie, *((1,) if claim.refused else ())],
        state.sent_to,
        {
            model: {name: [s.value, s.ref_ms, s.lifetime] for name, s in sums.items()}
            for model, sums in state.model_signals.items()
        },
        state.model_armed,
    ]


def from_bytes(data: bytes) -> ContactState:
    return from_fields(orjson.loads(data))


def from_fields(fields: object) -> ContactState:
    if not isinstance(fields, list) or fields[0] not in _READ:
        raise ValueError(f"unsupported contact state format {fields[0] if isinstance(fields, list) else '?'}")
    if fields[0] == 1:
        fields.extend(({}, fields[3], None))
    if fields[0] < 3:
        fields.append(None)
    if fields[0] < 5:  # 1, 2 and 3 carry no interests, e-mail nor account sent to
        fields[15:15] = [{}]
        fields.extend((None, None))
    if fields[0] < 6:  # nothing nurtured yet
        fields.append({})
    if fields[0] < 7:  # before identity stitching: nothing linked
        fields.extend(({}, {}, None, None))
    if fields[0] < FORMAT_VERSION:  # before named models
        fields.extend(({}, {}))
    (_, contact_id, flags, last_event_ms, crm_level, crm, stage, temperature, signals, profile, best, seen) = fields[
        :12
    ]
    positions, published_ms, cooling_due_ms, interests, account, email, account_sent, nurtured = fields[12:20]
    claims, parts, claim, sent_to, model_signals, model_armed = fields[20:]
    return ContactState(
        contact_id=contact_id,
        identified=bool(flags & _FLAG_IDENTIFIED),
        intent=bool(flags & _FLAG_INTENT),
        hot_armed=bool(flags & _FLAG_ARMED),
        last_event_ms=last_event_ms,
        crm_level=crm_level,
        crm_last=None if crm is None else CrmStage(STAGE_CODES[crm[0]], crm[1], crm[2]),
        stage=None if stage < 0 else STAGE_CODES[stage],
        temperature=temperature,
        signals={name: SignalSum(v, ref, life) for name, (v, ref, life) in signals.items()},
        profile={name: ProfileValue(v, t, tie) for name, (v, t, tie) in profile.items()},
        best_fit=best,
        seen=base64.b64decode(seen),
        positions=positions,
        published_ms=published_ms,
        cooling_due_ms=cooling_due_ms,
        interests={name: SignalSum(v, ref, life) for name, (v, ref, life) in interests.items()},
        account=None if account is None else ProfileValue(*account),
        email=None if email is None else ProfileValue(*email),
        account_sent=account_sent,
        nurtured=nurtured,
        claims={anonymous_id: (first[0], first[1]) for anonymous_id, first in claims.items()},
        parts={
            anonymous_id: Part(version, None if nested is None else from_fields(nested))
            for anonymous_id, (version, nested) in parts.items()
        },
        claim=None if claim is None else Claim(claim[0], claim[1], claim[2], len(claim) > 3),
        sent_to=sent_to,
        model_signals={
            model: {name: SignalSum(v, ref, life) for name, (v, ref, life) in sums.items()}
            for model, sums in model_signals.items()
        },
        model_armed=model_armed,
    )


def _profile_value(known: ProfileValue | None) -> list[object] | None:
    return None if known is None else [known.value, known.occurred_ms, known.tie]

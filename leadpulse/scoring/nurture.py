"""Nurture triggers: which contacts need content rather than a salesperson, and what to send.

A decision is a pure function of (state, time, rules): the tracks of `[nurture]` whose
condition holds at `at_ms`, for a contact that is not hot, not an opportunity nor a customer
(nor in a skipped stage), minus the tracks already sent in the current period. Periods are
fixed windows of time (`at_ms // period`), so a replay or the offline scorer evaluating the
same state at a moment of the same window decides alike, and the memory of what was sent
(`ContactState.nurtured`, a maximum per track) merges in any order.

Nothing here runs on events: the stream evaluates on its cooling ticks (`revisit`, scheduled
by `revisit_due_ms`), the offline scorer at `--at`. A condition therefore depends on the final
state only, never on the order in which events arrived.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import partial
from typing import NamedTuple

from leadpulse.scoring.engine import (
    Outcome,
    cooling_due_ms,
    engagement_eta_ms,
    interest_ranking,
    output_id,
    reevaluate,
    score_parts,
    segments_of,
    stage_of,
    view_of,
)
from leadpulse.scoring.nurture_rules import RECYCLED_STAGE, CatalogueItem, NurtureTrack
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState
from leadpulse.scoring.timesearch import first_time


@dataclass(frozen=True, slots=True)
class Nurture:
    """One record of the `nurture` topic. It carries no evaluation time, only its period:
    evaluated anywhere in the period (a cooling tick, `leadpulse score --at`), it is the
    same record with the same id."""

    id: str
    contact_id: str
    track: str
    trigger: str
    period_start_ms: int
    period_end_ms: int
    stage: str
    segments: tuple[str, ...]
    interest: str | None  # the interest the content was chosen for, if any
    content: CatalogueItem
    rules_version: str


class Revisited(NamedTuple):
    state: ContactState
    nurtures: tuple[Nurture, ...]
    outcome: Outcome  # 'scored': the state changed (temperature dropped, or a record was sent)


def period_of(at_ms: int, rules: Rules) -> int:
    return at_ms // rules.nurture.period_ms


def dormant_from_ms(state: ContactState, rules: Rules) -> int:
    """From when the contact is nurtured no more, unless an event comes first."""
    return state.last_event_ms + rules.nurture.dormant_after_ms


def rearm_ms(contact_id: str, period: int, rules: Rules) -> int:
    """When, within `period`, the stream re-reads a contact whose track held in the period
    before: at a fixed offset per contact, so that the stalled leads of a million contacts
    are spread over the period instead of all falling due at its first millisecond. A
    record is the same anywhere in its period, so the offset changes no decision."""
    period_ms = rules.nurture.period_ms
    offset = int.from_bytes(hashlib.blake2b(contact_id.encode(), digest_size=8).digest(), "little") % period_ms
    return period * period_ms + offset


def excluded(state: ContactState, at_ms: int, rules: Rules) -> bool:
    """Hot contacts, opportunities and customers are sales' business (and skipped stages
    nobody's); a dormant contact (no event for `dormant_after`) is nobody's either."""
    if stage_of(state, rules) in rules.nurture.skip_stages or at_ms >= dormant_from_ms(state, rules):
        return True
    return score_parts(state, at_ms, rules)[2] >= rules.hot_floor


def holds(track: NurtureTrack, state: ContactState, at_ms: int, rules: Rules) -> bool:
    """Whether the track's condition holds at `at_ms` (exclusions and periods aside)."""
    if track.trigger == "low_engagement":
        fit, engagement, _ = score_parts(state, at_ms, rules)
        return fit >= track.min_fit and engagement <= track.max_engagement
    if track.trigger == "cooled":
        before = rules.temperature(score_parts(state, state.last_event_ms, rules)[2])
        return before >= track.from_band and rules.temperature(score_parts(state, at_ms, rules)[2]) == track.to_band
    if track.trigger == "stalled":
        return stage_of(state, rules) in track.stages and at_ms - state.last_event_ms >= track.after_ms
    crm = state.crm_last
    return (
        crm is not None
        and crm.stage == RECYCLED_STAGE
        and stage_of(state, rules) == RECYCLED_STAGE
        and at_ms >= crm.occurred_ms + track.after_ms
    )


def nurtures_at(state: ContactState, at_ms: int, rules: Rules) -> tuple[Nurture, ...]:
    """The records due for the contact at `at_ms`: one per track whose condition holds and
    that was not sent in this period, in the rules' track order. Decided on the contact's
    merged view (its linked anonymous ids' history counts); the memory is the contact's own."""
    state = view_of(state, rules)
    if not rules.nurture.tracks or excluded(state, at_ms, rules):
        return ()
    period = period_of(at_ms, rules)
    due = [
        track
        for track in rules.nurture.tracks
        if state.nurtured.get(track.name, -1) < period and holds(track, state, at_ms, rules)
    ]
    if not due:
        return ()
    stage = stage_of(state, rules)
    segments = segments_of(state, score_parts(state, at_ms, rules)[0], rules)
    interests = interest_ranking(state, at_ms, rules)
    period_ms = rules.nurture.period_ms
    records = []
    for track in due:
        content = choose_content(track.name, stage, segments, interests, rules)
        records.append(
            Nurture(
                id=output_id(state.contact_id, "nurture", track.name, str(period)),
                contact_id=state.contact_id,
                track=track.name,
                trigger=track.trigger,
                period_start_ms=period * period_ms,
                period_end_ms=(period + 1) * period_ms,
                stage=stage,
                segments=segments,
                interest=content.interest,
                content=content,
                rules_version=rules.version,
            )
        )
    return tuple(records)


def choose_content(
    track: str, stage: str, segments: tuple[str, ...], interests: list[str], rules: Rules
) -> CatalogueItem:
    """The first entry for the contact's strongest interest that has one, else the first
    entry without an interest; the rules guarantee each track an unconditional entry."""
    fitting = [item for item in rules.nurture.catalogue if item.fits(track, stage, segments)]
    for interest in interests:
        for item in fitting:
            if item.interest == interest:
                return item
    return next(item for item in fitting if item.interest is None)


def nurture(state: ContactState, at_ms: int, rules: Rules) -> Revisited:
    """The records due at `at_ms`, and the state that remembers them (this period per track)."""
    records = nurtures_at(state, at_ms, rules)
    if not records:
        return Revisited(state, (), "unscored")
    period = period_of(at_ms, rules)
    sent = {**state.nurtured, **{record.track: period for record in records}}
    return Revisited(replace(state, nurtured=sent), records, "scored")


def revisit(state: ContactState, at_ms: int, rules: Rules) -> Revisited:
    """A cooling tick: the temperature may have dropped (engine.reevaluate) and tracks may
    have become due."""
    cooled = reevaluate(state, at_ms, rules)
    nurtured = nurture(cooled.state, at_ms, rules)
    changed = "scored" in (cooled.outcome, nurtured.outcome)
    return Revisited(nurtured.state, nurtured.nurtures, "scored" if changed else "unscored")


def revisit_due_ms(state: ContactState, rules: Rules, now_ms: int) -> int | None:
    """When the stream should next re-read the contact: its published temperature goes out of
    date (engine.cooling_due_ms), or a track may become due; None when neither will happen."""
    cooling = cooling_due_ms(state, rules, now_ms)
    nurturing = next_nurture_ms(state, rules, now_ms, cooling)
    return min((due for due in (cooling, nurturing) if due is not None), default=None)


def next_nurture_ms(state: ContactState, rules: Rules, now_ms: int, before: int | None = None) -> int | None:
    """The earliest time from `now_ms` at which a track may become due, if earlier than
    `before` (a re-read already planned, which computes the next time anew). A hot contact
    waits for its drop out of the hot band, which the cooling schedule already has; a contact
    in an excluded stage waits for an event, which reschedules it anyway."""
    state = view_of(state, rules)
    start = max(now_ms, state.last_event_ms)
    if not rules.nurture.tracks or excluded(state, start, rules):
        return None
    fixed = []  # the times a track may become due
    for track in rules.nurture.tracks:
        begins = _holds_from(track, state, rules, start)
        if begins is not None:  # not before the period after the last one sent
            fixed.append(max(begins, _next_period_ms(state, track, rules)))
    dormant = dormant_from_ms(state, rules)
    bound = min((due for due in (*fixed, before) if due is not None), default=start + 20 * rules.half_life_ms)
    for track in rules.nurture.tracks:
        if track.trigger == "low_engagement" and not holds(track, state, start, rules):
            hint = engagement_eta_ms(state, start, track.max_engagement + 0.05, rules)  # rounded, it is at most that
            found = first_time(partial(holds, track, state, rules=rules), start, min(bound, dormant) - start, hint)
            if found is not None:
                fixed.append(max(found, _next_period_ms(state, track, rules)))
    return min((due for due in fixed if due < dormant), default=None)


def _next_period_ms(state: ContactState, track: NurtureTrack, rules: Rules) -> int:
    """The earliest time the track may send again: the contact's moment of the period after
    the last one it was sent in (any time, if never sent)."""
    sent = state.nurtured.get(track.name)
    return 0 if sent is None else rearm_ms(state.contact_id, sent + 1, rules)


def _holds_from(track: NurtureTrack, state: ContactState, rules: Rules, start: int) -> int | None:
    """When the track's condition next holds from `start`, where time alone decides it
    (low engagement needs a search: next_nurture_ms; cooled is a band drop, which the cooling
    schedule ticks at)."""
    if holds(track, state, start, rules):
        return start
    if track.trigger == "stalled" and stage_of(state, rules) in track.stages:
        return state.last_event_ms + track.after_ms
    if track.trigger == "recycled" and state.crm_last is not None and stage_of(state, rules) == RECYCLED_STAGE:
        return state.crm_last.occurred_ms + track.after_ms
    return None

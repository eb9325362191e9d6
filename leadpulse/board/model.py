"""The read model's pure decisions: what a record of each output topic becomes as a row, when
a score point enters a history (downsampling), what an erasure marker hides, and the funnel
from its counts. No database, no Kafka, no clock: store.py and ingest.py call these."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson

from leadpulse.scoring.rules import FUNNEL_STAGES
from leadpulse.scoring.timeutil import parse_rfc3339_ms
from leadpulse.streams.topics import ACCOUNT_SCORES, HOT_ACCOUNTS, HOT_LEADS, NURTURE, SCORES, STAGE_CHANGES

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
MONDAY_SHIFT_MS = 3 * DAY_MS  # 1970-01-01 was a Thursday: weeks counted from a Monday
MAX_POINTS_PER_DAY = 8  # changes past it in one day replace the day's last point
MAX_EVENTS_PER_CONTACT = 100  # alerts, stage changes, nurture records kept per contact (the latest)
MAX_REASONS = 5  # reasons kept per row: the top ones, as the rows show them
ROLES = (SCORES, ACCOUNT_SCORES, HOT_LEADS, HOT_ACCOUNTS, STAGE_CHANGES, NURTURE)
"""The output topics the board reads, by their role names (settings.topic gives the name)."""


class BadRecord(ValueError):
    """A record that is not what its topic carries: logged, counted and passed."""


@dataclass(frozen=True)
class ContactRow:
    contact_id: str
    score: int
    fit: float
    engagement: float
    temperature: int
    temperature_label: str
    stage: str
    account_id: str | None
    updated_ms: int
    segments: tuple[str, ...]
    reasons: str  # JSON: the top reasons, as published
    interests: str  # JSON
    models: tuple[ModelRow, ...]


@dataclass(frozen=True)
class ModelRow:
    model: str
    score: int
    temperature: int
    reasons: str  # JSON


@dataclass(frozen=True)
class AccountRow:
    """No member list: the published top contacts name people, and an erased one must leave
    the read model with their own tombstone; members are the contacts naming the account."""

    account_id: str
    score: int
    temperature: int
    temperature_label: str
    contacts: int
    engaged_contacts: int
    coverage: float
    covered: str  # JSON list of committee roles
    missing: str  # JSON list
    updated_ms: int


@dataclass(frozen=True)
class HotLeadRow:
    id: str
    contact_id: str
    model: str
    occurred_ms: int
    score: int
    stage: str
    reasons: str  # JSON


@dataclass(frozen=True)
class HotAccountRow:
    id: str
    account_id: str
    occurred_ms: int
    score: int
    coverage: float


@dataclass(frozen=True)
class StageChangeRow:
    id: str
    contact_id: str
    from_stage: str | None
    to_stage: str
    occurred_ms: int


@dataclass(frozen=True)
class NurtureRow:
    id: str
    contact_id: str
    track: str
    title: str
    period_start_ms: int


Row = ContactRow | AccountRow | HotLeadRow | HotAccountRow | StageChangeRow | NurtureRow


@dataclass(frozen=True)
class Erase:
    """A tombstone: the key's rows go. `contact` tells a person (contact-scores) from an
    account whose last member left (account-scores)."""

    key: str
    contact: bool


def is_internal_key(key: bytes | None) -> bool:
    """The worker's compaction nudges (`\\x00roll`) and keyless records are nobody."""
    return not key or key.startswith(b"\x00")


def change_of(role: str, key: bytes | None, value: bytes | None) -> Row | Erase | None:
    """What one record of `role`'s topic does to the read model; None: nothing (a nudge, a
    tombstone of an event topic). Raises BadRecord for a value its topic does not carry."""
    if is_internal_key(key) and role in (SCORES, ACCOUNT_SCORES):
        return None
    if value is None:
        if role in (SCORES, ACCOUNT_SCORES) and key is not None:
            return Erase(key.decode("utf-8", "replace"), contact=role == SCORES)
        return None
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise BadRecord(f"not JSON: {error}") from None
    if not isinstance(record, dict):
        raise BadRecord("not a JSON object")
    try:
        row: Row = _ROWS[role](record)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise BadRecord(f"{role}: {error.__class__.__name__}: {error}") from None
    return row


def _reasons(reasons: Any) -> str:
    return orjson.dumps(list(reasons)[:MAX_REASONS]).decode()


def contact_row(record: Mapping[str, Any]) -> ContactRow:
    models = record.get("models") or {}
    return ContactRow(
        contact_id=str(record["contact_id"]),
        score=int(record["score"]),
        fit=float(record["fit"]),
        engagement=float(record["engagement"]),
        temperature=int(record["temperature"]),
        temperature_label=str(record["temperature_label"]),
        stage=str(record["stage"]),
        account_id=None if record.get("account_id") is None else str(record["account_id"]),
        updated_ms=parse_rfc3339_ms(record["updated_at"]),
        segments=tuple(str(s) for s in record.get("segments", ())),
        reasons=_reasons(record.get("reasons", ())),
        interests=orjson.dumps(list(record.get("interests", ()))[:MAX_REASONS]).decode(),
        models=tuple(
            ModelRow(str(name), int(m["score"]), int(m["temperature"]), _reasons(m.get("reasons", ())))
            for name, m in sorted(models.items())
        ),
    )


def account_row(record: Mapping[str, Any]) -> AccountRow:
    committee = record.get("committee") or {}
    return AccountRow(
        account_id=str(record["account_id"]),
        score=int(record["score"]),
        temperature=int(record["temperature"]),
        temperature_label=str(record["temperature_label"]),
        contacts=int(record.get("contacts", 0)),
        engaged_contacts=int(record.get("engaged_contacts", 0)),
        coverage=float(committee.get("coverage", 0.0)),
        covered=orjson.dumps(list(committee.get("covered", ()))).decode(),
        missing=orjson.dumps(list(committee.get("missing", ()))).decode(),
        updated_ms=parse_rfc3339_ms(record["updated_at"]),
    )


def hot_lead_row(record: Mapping[str, Any]) -> HotLeadRow:
    return HotLeadRow(
        id=str(record["id"]),
        contact_id=str(record["contact_id"]),
        model=str(record.get("model") or "default"),
        occurred_ms=parse_rfc3339_ms(record["occurred_at"]),
        score=int(record["score"]),
        stage=str(record["stage"]),
        reasons=_reasons(record.get("reasons", ())),
    )


def hot_account_row(record: Mapping[str, Any]) -> HotAccountRow:
    return HotAccountRow(
        id=str(record["id"]),
        account_id=str(record["account_id"]),
        occurred_ms=parse_rfc3339_ms(record["occurred_at"]),
        score=int(record["score"]),
        coverage=float((record.get("committee") or {}).get("coverage", 0.0)),
    )


def stage_change_row(record: Mapping[str, Any]) -> StageChangeRow:
    return StageChangeRow(
        id=str(record["id"]),
        contact_id=str(record["contact_id"]),
        from_stage=None if record.get("from_stage") is None else str(record["from_stage"]),
        to_stage=str(record["to_stage"]),
        occurred_ms=parse_rfc3339_ms(record["occurred_at"]),
    )


def nurture_row(record: Mapping[str, Any]) -> NurtureRow:
    return NurtureRow(
        id=str(record["id"]),
        contact_id=str(record["contact_id"]),
        track=str(record["track"]),
        title=str((record.get("content") or {}).get("title", "")),
        period_start_ms=parse_rfc3339_ms(record["period_start"]),
    )


_ROWS: dict[str, Any] = {
    SCORES: contact_row,
    ACCOUNT_SCORES: account_row,
    HOT_LEADS: hot_lead_row,
    HOT_ACCOUNTS: hot_account_row,
    STAGE_CHANGES: stage_change_row,
    NURTURE: nurture_row,
}


# -- history ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One point of a score history. `change`: the stage or temperature differs from the
    point before it (kept for the retention); else a daily point (one per day, the latest)."""

    at_ms: int
    score: int
    temperature: int
    stage: str
    change: bool


class Step(Enum):
    APPEND = "append"  # a new point
    REPLACE = "replace"  # the new point takes the place of the last one
    SKIP = "skip"  # older than the last point: the history moves forward only


def history_step(last: Point | None, at_ms: int, temperature: int, stage: str, points_that_day: int) -> Step:
    """Downsampling: every stage or temperature change is a point of its own (up to
    MAX_POINTS_PER_DAY a day; past it the day's last point is replaced, so a temperature
    flapping at a band's edge costs one row, not one per snapshot), and the other snapshots
    of a day keep only the latest one. `points_that_day`: points already stored on the day
    of `at_ms`. The result depends only on the last point, so a replay decides the same."""
    if last is None:
        return Step.APPEND
    if at_ms < last.at_ms:
        return Step.SKIP
    changed = temperature != last.temperature or stage != last.stage
    same_day = at_ms // DAY_MS == last.at_ms // DAY_MS
    if not same_day:
        return Step.APPEND
    if points_that_day >= MAX_POINTS_PER_DAY:
        return Step.REPLACE
    if changed:
        return Step.APPEND
    return Step.APPEND if last.change else Step.REPLACE


def point_of(last: Point | None, at_ms: int, score: int, temperature: int, stage: str) -> Point:
    changed = last is None or temperature != last.temperature or stage != last.stage
    return Point(at_ms, score, temperature, stage, changed)


def history_bound(retention_days: int) -> int:
    """Most points a contact or account holds: MAX_POINTS_PER_DAY for each retained day and
    the day in progress."""
    return MAX_POINTS_PER_DAY * (retention_days + 1)


# -- erasure ------------------------------------------------------------------------------


def erased_digest(contact_id: str) -> str:
    """What an erasure marker keeps of the person: a BLAKE2b digest of the id (as the
    worker's marker), never the id."""
    return hashlib.blake2b(contact_id.encode(), digest_size=16).hexdigest()


def hidden_by_erasure(erased_at_ms: int | None, record_ms: int) -> bool:
    """An alert, stage change or nurture record of an erased contact that the worker wrote
    before the erasure (a rebuild reads them from the event topics' retention) is not
    stored again; one written after it belongs to the person's new profile."""
    return erased_at_ms is not None and record_ms <= erased_at_ms


# -- funnel -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunnelStage:
    stage: str
    now: int  # contacts at the stage now
    reached: int  # contacts that entered it within the retention (or are at it)
    conversion: float | None  # reached / reached of the stage before (None for the first)


@dataclass(frozen=True)
class Funnel:
    stages: tuple[FunnelStage, ...]
    weeks: tuple[tuple[int, tuple[int, ...]], ...]  # (week start ms, entries per stage, in stage order)
    other: tuple[tuple[str, int], ...]  # side stages now (nurturing, disqualified)


def funnel(
    now: Mapping[str, int],
    reached: Mapping[str, int],
    weekly: Sequence[tuple[int, str, int]],
    stages: Sequence[str] = FUNNEL_STAGES,
) -> Funnel:
    """Contacts per stage now; per stage, those that reached it (entered it, or are at it or
    further on now) and the conversion from the stage before; entries per stage and week
    (`weekly`: week index, stage, count)."""
    rows = []
    previous: int | None = None
    for i, stage in enumerate(stages):
        at_or_past = sum(now.get(s, 0) for s in stages[i:])
        count = max(reached.get(stage, 0), at_or_past)
        conversion = None if previous is None else (count / previous if previous else 0.0)
        rows.append(FunnelStage(stage, now.get(stage, 0), count, conversion))
        previous = count
    by_week: dict[int, list[int]] = {}
    for week, stage, count in weekly:
        if stage in stages:
            by_week.setdefault(week, [0] * len(stages))[stages.index(stage)] += count
    weeks = tuple((week * WEEK_MS - MONDAY_SHIFT_MS, tuple(counts)) for week, counts in sorted(by_week.items()))
    other = tuple(sorted((s, n) for s, n in now.items() if s not in stages))
    return Funnel(tuple(rows), weeks, other)


def week_of(ms: int) -> int:
    """The Monday-started week index of a time (funnel's weekly buckets, also done in SQL)."""
    return (ms + MONDAY_SHIFT_MS) // WEEK_MS

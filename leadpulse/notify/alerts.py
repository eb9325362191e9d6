"""What the notifier delivers: one output record of the scoring worker (a hot lead, a hot
account, a stage change, a nurture record), read once from its topic's bytes into an `Alert`
that routing, throttles and message rendering share. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from leadpulse.scoring.timeutil import parse_rfc3339_ms

# The output topics the notifier can read, by role (the name before LEADPULSE_TOPIC_PREFIX),
# with the `kind` their records carry and the JSON Schema (leadpulse/schemas/json) of that kind.
KINDS: Mapping[str, str] = {
    "hot-leads": "hot_lead",
    "hot-accounts": "hot_account",
    "stage-changes": "stage_change",
    "nurture": "nurture",
}
TOPICS: tuple[str, ...] = tuple(KINDS)
DEFAULT_TOPICS: tuple[str, ...] = ("hot-leads", "hot-accounts")
SCHEMAS: Mapping[str, str] = {topic: kind.replace("_", "-") for topic, kind in KINDS.items()}
ACCOUNT_TOPICS = frozenset({"hot-accounts"})  # keyed by account_id; the others by contact_id
# The id becomes the webhook-id header: the worker's ids are 32 hex digits (engine.output_id).
MAX_ALERT_ID = 256


@dataclass(frozen=True)
class Alert:
    """One output record to deliver. `id` is the record's deterministic id: the webhook-id,
    so a receiver that deduplicates on it sees each alert once however often it is retried
    or replayed. `key` is what per-key order and the cool-down are kept by."""

    topic: str  # the output topic's role: one of TOPICS
    id: str
    key: str  # contact_id, or account_id for hot-accounts
    occurred_ms: int  # occurred_at; a nurture record's period_start (it has no event time)
    record: Mapping[str, Any]  # the parsed output record, as the worker published it
    # Until when the alert is news: a nurture record stands for its whole period (its
    # period_end), every other alert for its moment (occurred_ms). throttle.too_old reads it.
    current_until_ms: int | None = None

    @property
    def kind(self) -> str:
        return KINDS[self.topic]


def alert_from(topic: str, value: bytes) -> Alert:
    """The alert an output record's bytes hold; ValueError with one line (topic, field,
    problem) when they are not such a record, so the caller can dead-letter it."""
    if topic not in KINDS:
        raise ValueError(f"{topic!r} is not a topic the notifier reads (one of {', '.join(TOPICS)})")
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError as error:
        raise ValueError(f"{topic} record: not JSON: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{topic} record: expected a JSON object, got {type(record).__name__}")
    if record.get("kind") != KINDS[topic]:
        raise ValueError(f"{topic} record: kind: expected {KINDS[topic]!r}, got {_shown(record.get('kind'))}")
    alert_id = _text(topic, record, "id")
    if len(alert_id) > MAX_ALERT_ID or not (alert_id.isascii() and alert_id.isprintable()) or " " in alert_id:
        raise ValueError(
            f"{topic} record: id: expected up to {MAX_ALERT_ID} printable ASCII characters, got {_shown(alert_id)}"
        )
    key = _text(topic, record, "account_id" if topic in ACCOUNT_TOPICS else "contact_id")
    if topic == "nurture":
        occurred_ms, until_ms = _time(topic, record, "period_start"), _time(topic, record, "period_end")
    else:
        occurred_ms, until_ms = _time(topic, record, "occurred_at"), None
    return Alert(topic, alert_id, key, occurred_ms, record, until_ms)


def _text(topic: str, record: Mapping[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{topic} record: {field}: expected a non-empty string, got {_shown(value)}")
    return value


def _time(topic: str, record: Mapping[str, Any], field: str) -> int:
    value = _text(topic, record, field)
    try:
        return parse_rfc3339_ms(value)
    except ValueError as error:
        raise ValueError(f"{topic} record: {field}: {error}") from None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


_CRITERION_FIELDS: Mapping[str, str] = {
    "models": "model",
    "segments": "segments",
    "accounts": "account_id",
    "min_score": "score",
}


def field_of(criterion: str, topic: str) -> str:
    """The record field a route's criterion (config.CRITERIA) tests on `topic`'s records:
    a stage change's stage is the one it moved to."""
    if criterion == "stages":
        return "to_stage" if topic == "stage-changes" else "stage"
    return _CRITERION_FIELDS[criterion]

"""The delivery-failures record: an alert one destination could not take, with why, how many
attempts were made and when. Pure: built from values the engine passes in, read back by
`leadpulse notify redrive`.

The record carries the whole alert (its output topic's role and the output record as it was
read), so a re-drive sends exactly what the first delivery would have sent, with the same
`webhook-id`; it is keyed by the alert's key, so one key's failures stay in order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from leadpulse.scoring.timeutil import format_ms, parse_rfc3339_ms


@dataclass(frozen=True)
class Failure:
    topic: str  # the alert's output topic role: hot-leads, hot-accounts...
    key: str  # the alert's key (contact or account id): the record's key too
    record: dict[str, Any]  # the output record as read
    destination: str
    reason: str  # "HTTP 410", "retry window over (last: HTTP 503)", ...
    attempts: int
    first_attempt_ms: int | None  # None: refused before any attempt (a destination no longer configured)
    last_attempt_ms: int | None
    failed_ms: int


def failure_bytes(failure: Failure) -> bytes:
    return orjson.dumps(
        {
            "alert": {"topic": failure.topic, "key": failure.key, "record": failure.record},
            "destination": failure.destination,
            "reason": failure.reason,
            "attempts": failure.attempts,
            "first_attempt_at": _time(failure.first_attempt_ms),
            "last_attempt_at": _time(failure.last_attempt_ms),
            "failed_at": format_ms(failure.failed_ms),
        }
    )


def failure_from(value: bytes) -> Failure:
    """A record written by failure_bytes; ValueError (one line) for anything else."""
    try:
        document = orjson.loads(value)
        alert = document["alert"]
        return Failure(
            topic=str(alert["topic"]),
            key=str(alert["key"]),
            record=dict(alert["record"]),
            destination=str(document["destination"]),
            reason=str(document["reason"]),
            attempts=int(document["attempts"]),
            first_attempt_ms=_ms(document.get("first_attempt_at")),
            last_attempt_ms=_ms(document.get("last_attempt_at")),
            failed_ms=parse_rfc3339_ms(document["failed_at"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"not a delivery-failures record ({type(error).__name__}: {error})") from None


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _ms(text: Any) -> int | None:
    return None if text is None else parse_rfc3339_ms(str(text))

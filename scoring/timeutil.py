"""Event-time helpers: the engine keeps time as integer epoch milliseconds so that state
compares and serializes exactly; text forms are RFC 3339 (input) and ISO 8601 UTC (output)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """Parse '30d', '10m', '1.5h' into milliseconds; raise ValueError naming the accepted forms."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration like '30d', '12h', '10m', '45s'")
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_rfc3339_ms(text: str) -> int:
    """RFC 3339 timestamp with an explicit offset -> epoch ms. Naive times are refused because
    decay depends on absolute time and a guessed zone would shift it silently."""
    shape = _RFC3339.match(text)
    if shape is None:
        raise ValueError("not an RFC 3339 timestamp (e.g. 2026-11-26T09:30:00Z)")
    if shape.group(1) is None:
        raise ValueError("timestamp has no UTC offset (add Z or +01:00)")
    try:
        moment = datetime.fromisoformat(text[:26] + text[shape.start(1) :] if shape.start(1) > 26 else text)
    except ValueError as error:
        raise ValueError(f"not a valid date and time: {error}") from None
    return (moment - _EPOCH) // _ONE_MS


def format_ms(ms: int) -> str:
    """Epoch ms -> '2026-11-26T09:30:00.000Z' (fixed width, sorts as text). Via time.gmtime:
    half the cost of a datetime, and every published record carries one."""
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def now_ms() -> int:
    """Wall-clock time; only the I/O shell calls this, the engine takes time as an argument."""
    return (datetime.now(tz=UTC) - _EPOCH) // _ONE_MS

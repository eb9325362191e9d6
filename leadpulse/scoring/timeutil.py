"""Event-time helpers: the engine keeps time as integer epoch milliseconds so that state
compares and serializes exactly; text forms are RFC 3339 (input) and ISO 8601 UTC (output)."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC) - _EPOCH) // _ONE_MS
"""The last instant `format_ms` writes as a four-digit year: later ones would not be RFC 3339."""
MAX_DURATION_MS = 1000 * 365 * 86_400_000
"""1000 years: longer durations are typing mistakes, and unbounded ones overflow."""
# The parts of the usual timestamps (`_usual_ms`) with their separators, as milliseconds:
# "THH:MM", ":SS", and "Z" or ".fffZ".
_CLOCK_MS = {f"T{hour:02d}:{minute:02d}": (hour * 60 + minute) * 60_000 for hour in range(24) for minute in range(60)}
_SECOND_MS = {f":{second:02d}": second * 1000 for second in range(60)}
_FRACTION_MS = {"Z": 0} | {f".{millis:03d}Z": millis for millis in range(1000)}
_MIDNIGHTS: dict[str, int] = {}  # "YYYY-MM-DD" -> its midnight in epoch ms (UTC), for dates read before
_MIDNIGHTS_KEPT = 4_096  # emptied when full: a stream's events span a few days, a backfill a few years


def parse_duration_ms(text: str) -> int:
    """Parse '30d', '10m', '1.5h' into milliseconds; raise ValueError naming the accepted forms."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{_shown(text)} is not a duration like '30d', '12h', '10m', '45s'")
    millis = float(match.group(1)) * _UNIT_MS[match.group(2)]
    if not math.isfinite(millis) or millis > MAX_DURATION_MS:
        raise ValueError(f"{_shown(text)} is longer than 1000 years")
    return round(millis)


def parse_rfc3339_ms(text: str) -> int:
    """RFC 3339 timestamp with an explicit offset -> epoch ms. Naive times are refused because
    decay depends on absolute time and a guessed zone would shift it silently. Instants
    outside 1970..9999 (in UTC) are refused so that every output time is RFC 3339 again."""
    usual = _usual_ms(text)
    return _parsed_ms(text) if usual is None else usual


def _usual_ms(text: str) -> int | None:
    """The usual forms, 'YYYY-MM-DDTHH:MM:SSZ' and 'YYYY-MM-DDTHH:MM:SS.fffZ' (what `format_ms`
    writes, and most producers), read as four table look-ups of its parts, separators
    included: half of `_parsed_ms`'s cost, which every input record pays (its regular
    expression and `datetime` arithmetic: ~11,400 machine instructions; in CPython each
    further index or comparison costs ~400). None for any other text, valid or not:
    `_parsed_ms` decides it, so every refusal and its message stay `_parsed_ms`'s. A date is
    read by `_parsed_ms` once and remembered (`_MIDNIGHTS`); any time of a date in range is in
    range (MAX_MS is the last millisecond of 9999-12-31)."""
    clock, second, fraction = _CLOCK_MS.get(text[10:16]), _SECOND_MS.get(text[16:19]), _FRACTION_MS.get(text[19:])
    if clock is None or second is None or fraction is None:
        return None
    date = text[:10]
    midnight = _MIDNIGHTS.get(date)
    if midnight is None:
        if not date.isascii():
            return None
        try:
            midnight = _parsed_ms(date + "T00:00:00Z")
        except ValueError:
            return None
        if len(_MIDNIGHTS) >= _MIDNIGHTS_KEPT:
            _MIDNIGHTS.clear()
        _MIDNIGHTS[date] = midnight
    return midnight + clock + second + fraction


def _parsed_ms(text: str) -> int:
    """`parse_rfc3339_ms` of any text: its shape, then `datetime`'s reading and range."""
    shape = _RFC3339.match(text)
    if shape is None:
        raise ValueError("not an RFC 3339 timestamp (e.g. 2026-11-26T09:30:00Z)")
    if shape.group(1) is None:
        raise ValueError("timestamp has no UTC offset (add Z or +01:00)")
    try:
        moment = datetime.fromisoformat(text[:26] + text[shape.start(1) :] if shape.start(1) > 26 else text)
    except ValueError as error:
        raise ValueError(f"not a valid date and time: {error}") from None
    ms = (moment - _EPOCH) // _ONE_MS
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"{text} is outside 1970-01-01..9999-12-31 (in UTC)")
    return ms


def format_ms(ms: int) -> str:
    """Epoch ms -> '2026-11-26T09:30:00.000Z' (fixed width, sorts as text). Via time.gmtime:
    half the cost of a datetime, and every published record carries one."""
    seconds, millis = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"


def now_ms() -> int:
    """Wall-clock time; only the I/O shell calls this, the engine takes time as an argument."""
    return (datetime.now(tz=UTC) - _EPOCH) // _ONE_MS


def _shown(text: str, limit: int = 40) -> str:
    """A user's text as quoted in an error: cut, so a pasted megabyte stays a one-line message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."

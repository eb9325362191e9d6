"""The input contract. One validation path for the stream and the offline scorer: every
rejection names the field and the reason, which end up in the dead-letter record.

Two shapes share the input topic: LeadPulse's native events and Segment-spec messages
(schemas/segment.py), told apart by their fields."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from leadpulse.schemas.fields import MAX_ID, InvalidEvent, identifier, json_kind, normalized_id, person_id
from leadpulse.schemas.limits import DEFAULT_LIMITS, InputLimits, stored_bytes, variable
from leadpulse.schemas.segment import is_segment, segment_event, segment_key, shipped_mapping
from leadpulse.scoring.engine import Event, future_reason
from leadpulse.scoring.rules import EVENT_TYPE, Rules
from leadpulse.scoring.timeutil import parse_rfc3339_ms

__all__ = ["InvalidEvent", "admit_event", "contact_key", "decode_event", "validate_event"]
_WIDEST = 6  # bytes a character may take as stored (a control character: \u001f); shorter strings need no encoding
_TYPES_SEEN: set[str] = set()  # native event types validated before (`_new_type`)
_TYPES_KEPT = 4_096  # emptied when full: a producer inventing types cannot grow it


def admit_event(raw: bytes | str, reference_ms: int, limits: InputLimits, rules: Rules) -> Event:
    """The one acceptance path of the worker and the offline scorer (so both accept and
    refuse the same records): `decode_event`, then an event more than the rules' `max_future`
    ahead of `reference_ms`, or of its own `receivedAt` (when the collector or Segment took
    it in), whichever is earlier, is refused: decay would credit points that have not
    happened yet. The worker's reference is its record's timestamp capped by its clock; the
    offline scorer's is the clock when it starts (capped by --at): a file has no record
    timestamps, and that is the one place where the two may decide apart (docs/scoring.md)."""
    event = decode_event(raw, limits, rules.mapping)
    received = event.received_ms
    reason = future_reason(event, reference_ms if received is None else min(received, reference_ms), rules)
    if reason is not None:
        raise InvalidEvent("occurred_at", reason)
    return event


def decode_event(
    raw: bytes | str, limits: InputLimits = DEFAULT_LIMITS, mapping: Mapping[str, str] | None = None
) -> Event:
    """Bytes (or text) of one input record -> Event, within `limits`. The size is checked
    before parsing, since parsing is what an oversized record would cost. `mapping` is the
    rules' `[mapping]` of Segment track names (None: the shipped rules')."""
    if isinstance(raw, str):  # tests and tools; the stream hands over bytes
        raw = raw.encode("utf-8", "surrogatepass")
    size = len(raw)
    if size > limits.max_record_bytes:
        raise InvalidEvent("", f"record is {size} bytes, {_over(limits.max_record_bytes, 'max_record_bytes')}")
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent("", f"not valid JSON: {error}") from None
    event = validate_event(document, mapping)
    if len(event.properties) > limits.max_properties:
        count = len(event.properties)
        field = "traits" if event.call in ("identify", "group") else "properties"
        raise InvalidEvent(field, f"{count} properties, {_over(limits.max_properties, 'max_properties')}")
    # Exact shortcuts that spare nearly every record the walk: no string is longer than the
    # record, and a value N levels below the top-level object takes N opening brackets
    # (arrays counted only if there is one: a search for one byte costs a tenth of a count).
    openings = raw.count(b"{") + (raw.count(b"[") if b"[" in raw else 0)
    if size > limits.max_string or openings > limits.max_depth + 1:
        _check_nesting(document, limits)
    return event


def validate_event(document: Any, mapping: Mapping[str, str] | None = None) -> Event:
    if not isinstance(document, dict):
        raise InvalidEvent("", f"expected a JSON object, got {json_kind(document)}")
    if is_segment(document):
        return segment_event(document, shipped_mapping() if mapping is None else mapping)
    event_id = document.get("event_id")
    if event_id.__class__ is not str or not 0 < len(event_id) <= MAX_ID:  # else `identifier` would return it
        event_id = identifier(document, "event_id")
        if event_id is None:
            raise InvalidEvent("event_id", "required")
    event_type = document.get("type")
    if not isinstance(event_type, str) or (event_type not in _TYPES_SEEN and not _new_type(event_type)):
        raise InvalidEvent("type", _type_problem(event_type))
    contact_id = _person(document, "contact_id")
    anonymous_id = _person(document, "anonymous_id")
    if contact_id is None and anonymous_id is None:
        raise InvalidEvent("contact_id", "one of contact_id or anonymous_id is required")
    occurred_at = document.get("occurred_at")
    if not isinstance(occurred_at, str):
        raise InvalidEvent("occurred_at", "required: RFC 3339 timestamp with offset")
    try:
        occurred_ms = parse_rfc3339_ms(occurred_at)
    except ValueError as error:
        raise InvalidEvent("occurred_at", str(error)) from None
    source = document.get("source")
    if source is not None and not isinstance(source, str):
        raise InvalidEvent("source", f"expected a string, got {json_kind(source)}")
    properties = document.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise InvalidEvent("properties", f"expected an object, got {json_kind(properties)}")
    # Positional (Event's field order): keywords double the constructor's cost (3,700 instructions a record).
    return Event(
        event_id,
        event_type,
        contact_id if contact_id is not None else str(anonymous_id),  # contact_id: the key
        contact_id is not None or isinstance(properties.get("email"), str),  # identified
        occurred_ms,
        properties,
        source,
        anonymous_id,
    )


def _new_type(event_type: str) -> bool:
    """Whether a type not seen before is a native event type (`EVENT_TYPE`), remembered if
    so: a stream has a few dozen types, and a set look-up costs a tenth of the expression."""
    if not EVENT_TYPE.match(event_type):
        return False
    if len(_TYPES_SEEN) >= _TYPES_KEPT:
        _TYPES_SEEN.clear()
    _TYPES_SEEN.add(event_type)
    return True


def _person(document: dict[str, Any], field: str) -> str | None:
    """`person_id`, without its calls for the usual value: absent, or a short plain id."""
    value = document.get(field)
    if value is None or (value.__class__ is str and 0 < len(value) <= MAX_ID and "@" not in value):
        return value
    return person_id(document, field)


def _type_problem(event_type: Any) -> str:
    """What is wrong with a native event's type, and the type it was probably meant to be: a
    Segment-style name ('Page Viewed') is not missing, it is spelt as a track call's `event`."""
    if event_type is None:
        return "required: a lower-case event type such as 'page_viewed'"
    if not isinstance(event_type, str):
        return f"expected a lower-case event type such as 'page_viewed', got {json_kind(event_type)}"
    meant = re.sub(r"[^a-z0-9_.]+", "_", event_type.strip().lower()).strip("_.")
    shown = event_type if len(event_type) <= 64 else event_type[:64] + "…"
    hint = f": did you mean {meant!r}?" if meant and EVENT_TYPE.match(meant) else "."
    return (
        f"{shown!r} is not a native event type (lower case, digits, '_' and '.'){hint} "
        'A Segment track name goes in `event`, with "type": "track".'
    )


def _check_nesting(document: dict[str, Any], limits: InputLimits) -> None:
    """Every string (keys included) within max_string bytes as stored (its JSON form, as
    every state and record is written: a control character costs 6 bytes, an accented
    letter 2) and every value at most max_depth levels inside `properties` (or any other
    top-level field). A loop, not a recursion: a document is checked without growing the
    Python stack however deep it is, and nothing deeper than the limit is visited. Exact
    types suffice: the document comes from orjson."""
    max_string, deepest = limits.max_string, limits.max_depth + 1  # `properties` is itself a level
    pending: list[tuple[str, dict[str, Any] | list[Any], int]] = [("", document, 0)]
    while pending:
        path, container, depth = pending.pop()
        items: Iterable[tuple[str | int, Any]]
        if isinstance(container, dict):
            if container and max(map(len, container)) * _WIDEST > max_string:
                longest = max(map(stored_bytes, container))
                if longest > max_string:
                    raise InvalidEvent(path, f"a key is {longest} bytes as stored, {_over(max_string, 'max_string')}")
            items = container.items()
        else:
            items = enumerate(container)
        if depth == deepest and container:
            first: str | int = next(iter(container)) if isinstance(container, dict) else 0
            raise InvalidEvent(_child(path, first), f"nested {depth} levels deep, {_over(deepest - 1, 'max_depth')}")
        for key, value in items:
            kind = type(value)
            if kind is str:
                if len(value) * _WIDEST > max_string and (stored := stored_bytes(value)) > max_string:
                    over = _over(max_string, "max_string")
                    raise InvalidEvent(_child(path, key), f"{stored} bytes as stored, {over}")
            elif kind is dict or kind is list:
                pending.append((_child(path, key), value, depth + 1))


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _over(limit: int, setting: str) -> str:
    return f"over the limit of {limit} ({variable(setting)})"


def contact_key(document: Any) -> str | None:
    """The partitioning key of a raw input (contact id, else anonymous id), if it has one."""
    if isinstance(document, dict) and is_segment(document):
        return segment_key(document)
    if isinstance(document, dict):
        for field in ("contact_id", "anonymous_id"):
            value = document.get(field)
            if isinstance(value, str) and value:
                return normalized_id(value)
    return None

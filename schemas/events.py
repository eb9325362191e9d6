"""The input contract. One validation path for the stream and the offline scorer: every
rejection names the field and the reason, which end up in the dead-letter record."""

from __future__ import annotations

import re
from typing import Any

import orjson

from scoring.engine import Event
from scoring.timeutil import parse_rfc3339_ms

_MAX_ID = 256
_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


class InvalidEvent(ValueError):
    """An input that cannot be scored; `field` is the JSON field at fault ('' for the whole)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def decode_event(raw: bytes | str) -> Event:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidEvent("", f"not valid JSON: {error}") from None
    return validate_event(document)


def validate_event(document: Any) -> Event:
    if not isinstance(document, dict):
        raise InvalidEvent("", f"expected a JSON object, got {_json_kind(document)}")
    event_id = _identifier(document, "event_id")
    if event_id is None:
        raise InvalidEvent("event_id", "required")
    event_type = document.get("type")
    if not isinstance(event_type, str) or not _TYPE.match(event_type):
        raise InvalidEvent("type", "required: lower-case event type such as 'page_viewed'")
    contact_id = _identifier(document, "contact_id")
    anonymous_id = _identifier(document, "anonymous_id")
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
        raise InvalidEvent("source", f"expected a string, got {_json_kind(source)}")
    properties = document.get("properties")
    if properties is None:
        properties = {}
    elif not isinstance(properties, dict):
        raise InvalidEvent("properties", f"expected an object, got {_json_kind(properties)}")
    return Event(
        event_id=event_id,
        type=event_type,
        contact_id=contact_id if contact_id is not None else str(anonymous_id),
        identified=contact_id is not None or isinstance(properties.get("email"), str),
        occurred_ms=occurred_ms,
        properties=properties,
        source=source,
    )


def contact_key(document: Any) -> str | None:
    """The partitioning key of a raw input (contact id, else anonymous id), if it has one."""
    if isinstance(document, dict):
        for field in ("contact_id", "anonymous_id"):
            value = document.get(field)
            if isinstance(value, str) and value:
                return value
    return None


def _identifier(document: dict[str, Any], field: str) -> str | None:
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidEvent(field, f"expected a non-empty string, got {_json_kind(value)}")
    if len(value) > _MAX_ID:
        raise InvalidEvent(field, f"longer than {_MAX_ID} characters")
    return value


def _json_kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

"""Field checks shared by the native and the Segment-spec input shapes, so that both name the
field at fault the same way (the name ends up in the dead letter and in the collector's 400)."""

from __future__ import annotations

from typing import Any

from leadpulse.scoring.timeutil import parse_rfc3339_ms

MAX_ID = 256


class InvalidEvent(ValueError):
    """An input that cannot be scored; `field` is the JSON field at fault ('' for the whole)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


def identifier(document: dict[str, Any], field: str, path: str = "") -> str | None:
    """An optional id: absent or null is None; anything but a bounded non-empty string is refused."""
    value = document.get(field)
    if value is None:
        return None
    where = f"{path}.{field}" if path else field
    if not isinstance(value, str) or not value:
        raise InvalidEvent(where, f"expected a non-empty string, got {json_kind(value)}")
    if len(value) > MAX_ID:
        raise InvalidEvent(where, f"longer than {MAX_ID} characters")
    return value


def normalized_id(value: str) -> str:
    """An e-mail-shaped id (one with an '@') trimmed and lower-cased: `Eve@VictimCorp.com `
    and `eve@victimcorp.com` are one contact, one key, one erasure. Other ids (cookies,
    device ids, CRM ids) are kept exactly as sent: their case can matter."""
    return value.strip().lower() if "@" in value else value


def person_id(document: dict[str, Any], field: str, path: str = "") -> str | None:
    """An optional id naming a contact or a device, normalized (normalized_id)."""
    value = identifier(document, field, path)
    return None if value is None else normalized_id(value)


def optional_object(document: dict[str, Any], field: str, path: str = "") -> dict[str, Any]:
    """An optional JSON object: absent or null reads as empty."""
    value = document.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidEvent(f"{path}.{field}" if path else field, f"expected an object, got {json_kind(value)}")
    return value


def timestamp_ms(document: dict[str, Any], field: str) -> int | None:
    """An optional RFC 3339 time with its offset, as epoch milliseconds."""
    value = document.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(field, f"expected an RFC 3339 timestamp string, got {json_kind(value)}")
    try:
        return parse_rfc3339_ms(value)
    except ValueError as error:
        raise InvalidEvent(field, str(error)) from None


def json_kind(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)

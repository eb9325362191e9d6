"""Output records as JSON: what `contact-scores`, `stage-changes`, `hot-leads` and
`dead-letters` carry. Field names are the contract published in schemas/json/."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from scoring.engine import HotLead, Output, Snapshot, StageChange
from scoring.timeutil import format_ms


def snapshot_record(view: Snapshot) -> dict[str, Any]:
    return {
        "contact_id": view.contact_id,
        "score": view.score,
        "fit": view.fit,
        "engagement": view.engagement,
        "temperature": view.temperature,
        "temperature_label": view.temperature_label,
        "stage": view.stage,
        "rules_version": view.rules_version,
        "updated_at": format_ms(view.updated_ms),
        "reasons": _reasons(view),
    }


def _reasons(view: Snapshot) -> list[dict[str, Any]]:
    return [{"signal": r.signal, "part": r.part, "points": r.points} for r in view.reasons]


def output_record(output: Output) -> dict[str, Any]:
    if isinstance(output, StageChange):
        return {
            "id": output.id,
            "kind": "stage_change",
            "contact_id": output.contact_id,
            "from_stage": output.from_stage,
            "to_stage": output.to_stage,
            "occurred_at": format_ms(output.occurred_ms),
            "cause_event_id": output.cause_event_id,
            "score": output.score,
            "rules_version": output.rules_version,
        }
    return hot_lead_record(output)


def hot_lead_record(alert: HotLead) -> dict[str, Any]:
    view = alert.snapshot
    return {
        "id": alert.id,
        "kind": "hot_lead",
        "contact_id": alert.contact_id,
        "occurred_at": format_ms(alert.occurred_ms),
        "cause_event_id": alert.cause_event_id,
        "score": view.score,
        "fit": view.fit,
        "engagement": view.engagement,
        "stage": view.stage,
        "rules_version": view.rules_version,
        "reasons": _reasons(view),
    }


def dead_letter_record(
    reason: str,
    field: str,
    raw: bytes | None,
    *,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    received_ms: int,
) -> dict[str, Any]:
    """The raw value is kept as text when it is UTF-8 and as base64 otherwise: nothing is lost."""
    return {
        "reason": reason,
        "field": field,
        "origin": {"topic": topic, "partition": partition, "offset": offset, "key": _text_or_b64(key)},
        "value": _text_or_b64(raw),
        "received_at": format_ms(received_ms),
    }


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def _text_or_b64(raw: bytes | None) -> dict[str, str] | None:
    if raw is None:
        return None
    try:
        return {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}

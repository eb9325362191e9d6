"""Output records as JSON: what `contact-scores`, `stage-changes`, `hot-leads`, `nurture`
and `dead-letters` carry. Field names are the contract published in schemas/json/."""

from __future__ import annotations

import base64
import codecs
import hashlib
from typing import Any

import orjson

from leadpulse.schemas.limits import DEFAULT_LIMITS
from leadpulse.scoring.accounts import AccountSnapshot, HotAccount
from leadpulse.scoring.engine import HotLead, Output, Reason, Snapshot, StageChange
from leadpulse.scoring.nurture import Nurture
from leadpulse.scoring.timeutil import format_ms


def snapshot_record(view: Snapshot) -> dict[str, Any]:
    """`account_id` only when the contact has an account (explicit, else a business e-mail
    domain: scoring.domains.account_of), so snapshots without one keep the shape they had."""
    record = {
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
        **_segments_and_interests(view),
    }
    if view.account_id is not None:
        record["account_id"] = view.account_id
    if view.models:
        record["models"] = {
            scored.model: {
                "score": scored.score,
                "fit": scored.fit,
                "engagement": scored.engagement,
                "temperature": scored.temperature,
                "temperature_label": scored.temperature_label,
                "reasons": _reason_list(scored.reasons),
            }
            for scored in view.models
        }
    return record


def _segments_and_interests(view: Snapshot) -> dict[str, Any]:
    """Who the contact is (segments) and what they care about (interests): what sales and
    nurturing pick the offer by."""
    return {
        "segments": list(view.segments),
        "interests": [{"name": name, "weight": weight} for name, weight in view.interests],
    }


def _reasons(view: Snapshot) -> list[dict[str, Any]]:
    return _reason_list(view.reasons)


def _reason_list(reasons: tuple[Reason, ...]) -> list[dict[str, Any]]:
    return [{"signal": r.signal, "part": r.part, "points": r.points} for r in reasons]


def account_record(view: AccountSnapshot) -> dict[str, Any]:
    """`account-scores`: what sales needs to see a buying committee forming."""
    return {
        "account_id": view.account_id,
        "score": view.score,
        "temperature": view.temperature,
        "temperature_label": view.temperature_label,
        "contacts": view.contacts,
        "engaged_contacts": view.engaged_contacts,
        "committee": {
            "covered": list(view.committee_covered),
            "missing": list(view.committee_missing),
            "coverage": view.coverage,
        },
        "best_fit": {"contact_id": view.best_fit_contact, "fit": view.best_fit},
        "top_contacts": [
            {
                "contact_id": top.contact_id,
                "score": top.score,
                "temperature": top.temperature,
                "stage": top.stage,
                **dict(top.attributes),
                "reasons": _reason_list(top.reasons),
            }
            for top in view.top_contacts
        ],
        "rules_version": view.rules_version,
        "updated_at": format_ms(view.updated_ms),
    }


def hot_account_record(alert: HotAccount) -> dict[str, Any]:
    return {
        "id": alert.id,
        "kind": "hot_account",
        "occurred_at": format_ms(alert.occurred_ms),
        "cause_contact_id": alert.cause_contact_id,
        **account_record(alert.snapshot),
    }


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
            **_merged_from(output.merged_from),
        }
    return hot_lead_record(output)


def _merged_from(anonymous_id: str | None) -> dict[str, Any]:
    """Named only on outputs a merge caused (identity stitching), so others keep their shape."""
    return {} if anonymous_id is None else {"merged_from": anonymous_id}


def hot_lead_record(alert: HotLead) -> dict[str, Any]:
    """Score, fit, engagement and reasons are those of the model that fired (`model`)."""
    view, scored = alert.snapshot, alert.model_score
    return {
        "id": alert.id,
        "kind": "hot_lead",
        "model": alert.model,
        "contact_id": alert.contact_id,
        "occurred_at": format_ms(alert.occurred_ms),
        "cause_event_id": alert.cause_event_id,
        "score": view.score if scored is None else scored.score,
        "fit": view.fit if scored is None else scored.fit,
        "engagement": view.engagement if scored is None else scored.engagement,
        "stage": view.stage,
        "rules_version": view.rules_version,
        "reasons": _reasons(view) if scored is None else _reason_list(scored.reasons),
        **_segments_and_interests(view),
        **_merged_from(alert.merged_from),
    }


def nurture_record(record: Nurture) -> dict[str, Any]:
    """No evaluation time, only the period: the record is the same wherever in its period the
    stream's cooling timer or `leadpulse score --nurture --at` decided it."""
    return {
        "id": record.id,
        "kind": "nurture",
        "contact_id": record.contact_id,
        "track": record.track,
        "trigger": record.trigger,
        "period_start": format_ms(record.period_start_ms),
        "period_end": format_ms(record.period_end_ms),
        "stage": record.stage,
        "segments": list(record.segments),
        "interest": record.interest,
        "content": {"title": record.content.title, "url": record.content.url},
        "rules_version": record.rules_version,
    }


MAX_REASON = 1000
"""Characters of a dead letter's reason (and field path): past this they are cut."""


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
    excerpt_bytes: int = DEFAULT_LIMITS.dead_letter_excerpt,
) -> dict[str, Any]:
    """A bounded record whatever the input: the first `excerpt_bytes` of the value and of the
    key (as text when UTF-8, else base64), with the size and SHA-256 of the whole value, so a
    megabyte of garbage costs the dead-letter topic a few kilobytes and can still be found."""
    excerpt, truncated = _excerpt(raw, excerpt_bytes)
    return {
        "reason": _cut(reason, MAX_REASON),
        "field": _cut(field, MAX_REASON),
        "origin": {"topic": topic, "partition": partition, "offset": offset, "key": _excerpt(key, excerpt_bytes)[0]},
        "value": excerpt,
        "size": None if raw is None else len(raw),
        "sha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
        "truncated": truncated,
        "received_at": format_ms(received_ms),
    }


# The top-level fields of event.schema.json and segment-message.schema.json, plus the key
# and the cooling tick's `at_ms`: the only values the dead-letter metric's label takes.
KNOWN_FIELDS = frozenset(
    {
        *("event_id", "type", "contact_id", "anonymous_id", "occurred_at", "source", "properties"),
        *("messageId", "userId", "anonymousId", "previousId", "groupId", "event", "name", "timestamp"),
        *("originalTimestamp", "sentAt", "receivedAt", "traits", "context", "integrations"),
        *("key", "at_ms"),
    }
)


def dead_letter_label(field: str) -> str:
    """The `field` label of `leadpulse_dead_letters_total`: the top-level field at fault if the
    input contract knows it, "(record)" for the record as a whole, else "(other)". A producer
    writing straight to Kafka chooses its key names; each distinct label would be one more
    Prometheus series for ever, so the label set is fixed here (the dead letter itself names
    the field in full)."""
    top = field.split(".", 1)[0].split("[", 1)[0]
    return top if top in KNOWN_FIELDS else "(record)" if not top else "(other)"


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def _excerpt(raw: bytes | None, limit: int) -> tuple[dict[str, str] | None, bool]:
    """The first `limit` bytes as text if they are UTF-8, else as base64, and whether that is
    less than the whole. A character split by the cut is dropped rather than turning
    readable text into base64."""
    if raw is None:
        return None, False
    prefix, truncated = raw[:limit], len(raw) > limit
    try:
        if truncated:
            return {"text": codecs.getincrementaldecoder("utf-8")().decode(prefix, final=False)}, truncated
        return {"text": prefix.decode("utf-8")}, truncated
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(prefix).decode()}, truncated


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Generic webhooks as the Standard Webhooks specification has them: the body is
`{"type", "timestamp", "data"}` with the output record as `data`; `webhook-id` is the
record's deterministic id (receivers deduplicate on it), `webhook-timestamp` the attempt's
time in seconds, and `webhook-signature` one `v1,<base64 HMAC-SHA256>` of
`{id}.{timestamp}.{body}` per active secret, space-separated, so that during a rotation a
receiver holding either the old or the new secret verifies. Pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import orjson

from leadpulse.notify.alerts import Alert
from leadpulse.scoring.timeutil import format_ms

# The `type` of each record kind, dot-separated as the specification's examples are.
EVENT_TYPES: Mapping[str, str] = {
    "hot_lead": "lead.hot",
    "hot_account": "account.hot",
    "stage_change": "lead.stage_changed",
    "nurture": "lead.nurture",
}
SIGNATURE_VERSION = "v1"


def webhook_body(alert: Alert) -> bytes:
    """The same bytes for every attempt of one alert (only the timestamp header changes)."""
    return orjson.dumps(
        {"type": EVENT_TYPES[alert.kind], "timestamp": format_ms(alert.occurred_ms), "data": alert.record}
    )


def webhook_headers(secrets: tuple[bytes, ...], message_id: str, now_ms: int, body: bytes) -> dict[str, str]:
    timestamp = str(now_ms // 1000)
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": signatures(secrets, message_id, timestamp, body),
    }


def signatures(secrets: tuple[bytes, ...], message_id: str, timestamp: str, body: bytes) -> str:
    signed = b".".join((message_id.encode(), timestamp.encode(), body))
    return " ".join(
        f"{SIGNATURE_VERSION},{base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()}"
        for key in secrets
    )

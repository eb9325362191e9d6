"""The HTTP request one delivery attempt sends: a signed Standard Webhooks POST or a Slack
Block Kit message. Pure: the sender (the notifier's I/O edge) only POSTs it, and calls this
again for each attempt, since a webhook's timestamp and signatures are the attempt's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from leadpulse.notify.alerts import Alert
from leadpulse.notify.config import Destination
from leadpulse.notify.slack import slack_body
from leadpulse.notify.webhook import webhook_body, webhook_headers

JSON = {"content-type": "application/json"}


@dataclass(frozen=True)
class OutgoingRequest:
    """A POST. `url` may be a secret (Slack's), so it is left out of repr()."""

    url: str = field(repr=False)
    headers: Mapping[str, str]
    body: bytes


def request_for(destination: Destination, alert: Alert, now_ms: int) -> OutgoingRequest:
    if destination.kind == "slack":
        return OutgoingRequest(destination.url, JSON, slack_body(destination, alert))
    body = webhook_body(alert)
    return OutgoingRequest(destination.url, webhook_headers(destination.secrets, alert.id, now_ms, body), body)

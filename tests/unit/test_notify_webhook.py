"""Signed webhooks, checked as a receiver checks them: with the `standardwebhooks` library
(the Standard Webhooks reference implementation for Python), including a secret rotation."""

import base64
import os
import time

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from leadpulse.notify.alerts import alert_from
from leadpulse.notify.requests import request_for
from tests.factories import notify_records
from tests.unit.test_notify_config import CRM, ROUTE, parse

RECORDS = notify_records()
NEW, OLD, OTHER = (os.urandom(32) for _ in range(3))


def whsec(key):
    return "whsec_" + base64.b64encode(key).decode()


def crm(*keys):
    """The `crm` destination signing with `keys`, newest first, from two variables."""
    names = [f"CRM_SECRET_{index}" for index in range(len(keys))]
    text = CRM.replace('secret_env = "CRM_SECRET"', f"secret_env = {names}") + ROUTE
    return parse(text, dict(zip(names, map(whsec, keys), strict=True))).destinations["crm"]


def now_ms():
    return time.time_ns() // 1_000_000  # the receiver checks the timestamp against its clock


@pytest.mark.parametrize("topic", sorted(RECORDS))
def test_every_kind_of_alert_verifies_as_a_receiver_checks_it(topic):
    alert = alert_from(topic, orjson.dumps(RECORDS[topic]))
    request = request_for(crm(NEW), alert, now_ms())
    assert request.url == "https://crm.example.com/hooks/leadpulse"
    payload = Webhook(whsec(NEW)).verify(request.body, dict(request.headers))
    assert request.headers["webhook-id"] == RECORDS[topic]["id"]
    assert payload["data"] == RECORDS[topic]
    assert (
        payload["type"]
        == {
            "hot-leads": "lead.hot",
            "hot-accounts": "account.hot",
            "stage-changes": "lead.stage_changed",
            "nurture": "lead.nurture",
        }[topic]
    )
    assert request.headers["content-type"] == "application/json"


def test_during_a_rotation_a_receiver_with_either_secret_verifies_and_another_does_not():
    alert = alert_from("hot-leads", orjson.dumps(RECORDS["hot-leads"]))
    request = request_for(crm(NEW, OLD), alert, now_ms())
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for key in (NEW, OLD):
        Webhook(whsec(key)).verify(request.body, dict(request.headers))
    with pytest.raises(WebhookVerificationError):
        Webhook(whsec(OTHER)).verify(request.body, dict(request.headers))


def test_a_retry_has_the_same_id_and_body_and_a_fresh_timestamp_and_signature():
    alert = alert_from("hot-accounts", orjson.dumps(RECORDS["hot-accounts"]))
    first, retry = request_for(crm(NEW), alert, now_ms() - 60_000), request_for(crm(NEW), alert, now_ms())
    assert (first.body, first.headers["webhook-id"]) == (retry.body, retry.headers["webhook-id"])
    assert int(retry.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) in (59, 60, 61)
    assert first.headers["webhook-signature"] != retry.headers["webhook-signature"]


def test_a_tampered_body_or_a_replayed_old_request_is_refused_by_the_receiver():
    alert = alert_from("hot-leads", orjson.dumps(RECORDS["hot-leads"]))
    request = request_for(crm(NEW), alert, now_ms())
    receiver = Webhook(whsec(NEW))
    with pytest.raises(WebhookVerificationError):
        receiver.verify(request.body.replace(b'"score":77', b'"score":99'), dict(request.headers))
    stale = request_for(crm(NEW), alert, now_ms() - 3_600_000)
    with pytest.raises(WebhookVerificationError):
        receiver.verify(stale.body, dict(stale.headers))

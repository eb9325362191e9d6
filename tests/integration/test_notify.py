"""`leadpulse notify run` against the suite's broker and real HTTP receivers on 127.0.0.1
(tests/integration/receiver.py): alerts are written straight to the hot-leads topic as the
worker writes them, the service is a process of its own, killed by pid, and every webhook
a receiver takes is verified with the `standardwebhooks` package."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.notify import hot_lead_record
from leadpulse.cli.processes import free_port
from leadpulse.notify.failures import failure_from
from leadpulse.notify.service import failures_topic
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.settings import Settings
from tests.integration.harness import read_all, run_cli, topic_configs, wait_for, write_outputs
from tests.integration.receiver import CLOSE, FAIL, GONE, OK, TIMEOUT, Endpoint, new_secret, retry_after

pytestmark = pytest.mark.integration


def secret_files(folder: Path, *secrets: str) -> list[str]:
    names = []
    for index, secret in enumerate(secrets):
        (folder / f"secret-{index}.key").write_text(secret + "\n")
        names.append(f"secret-{index}.key")
    return names


def ids_in(endpoint: Endpoint, expected: list[str]) -> list[str]:
    """The alert ids an endpoint took (answered 200 in full), in arrival order: a webhook's
    `webhook-id`, a Slack message's alert id (it names it; Slack messages are not signed)."""
    if endpoint.secrets:
        return endpoint.delivered_ids()
    text = [orjson.dumps(request.body).decode() for request in endpoint.delivered()]
    return [next(i for i in expected if f"alert {i}" in body or i in body) for body in text]


def first_arrivals(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


OUTAGE_S = 30.0  # how long crm stays down at least: longer than an SDK or a receiver would time out


def test_a_destination_down_then_back_gets_every_alert_in_order_and_holds_back_no_other_one(
    make_settings, receivers, notifiers, tmp_path
):
    """crm is down from the start; sales (Slack-shaped) answers 429 + Retry-After, 500, a
    connection closed mid-answer and a timeout before it takes alerts; archive always takes
    them. notify is killed (-9) while crm is being retried and started again; then crm comes
    back. Nothing is lost anywhere, crm receives each contact's alerts in order, sales and
    archive got everything while crm was still down, and every re-sent webhook carries the
    webhook-id of its first sending. The second process runs with a cap of 4 alerts in flight:
    it pauses there while crm is down, and catches up once crm is back."""
    settings = make_settings(notify_port=free_port(), notify_max_backoff_s=2.0)
    new, old = new_secret(), new_secret()
    crm = receivers.add("crm", secrets=(new, old), up=False)  # verifies with each: a rotation either side
    sales = receivers.add("sales")
    archive = receivers.add("archive", secrets=(new,))
    receivers.script("sales", retry_after(1), FAIL, CLOSE, TIMEOUT)
    files = secret_files(tmp_path, new, old)
    config = tmp_path / "notify.toml"
    config.write_text(
        f"""
max_alert_age = "1h"
cooldown = "off"
[destinations.crm]
kind = "webhook"
url = "{crm.url}"
secret_file = {orjson.dumps(files).decode()}
timeout = "1s"
[destinations.sales]
kind = "slack"
url = "{sales.url}"
rate_per_s = 100
timeout = "1s"
[destinations.archive]
kind = "webhook"
url = "{archive.url}"
secret_file = "{files[0]}"
[[routes]]
to = ["crm", "sales", "archive"]
"""
    )
    start = now_ms() - 60_000
    contacts = [f"c{n}@acme.io" for n in range(4)]
    records = [
        hot_lead_record(contact, n, start + 1_000 * n + i) for n in range(3) for i, contact in enumerate(contacts)
    ]
    expected = [record["id"] for record in records]
    write_outputs(settings, "hot-leads", records)

    first = notifiers(settings, config)
    outage_started = time.monotonic()
    assert wait_for(lambda: set(ids_in(sales, expected)) == set(expected), 60, 0.2), "sales did not get every alert"
    assert wait_for(lambda: set(archive.delivered_ids()) == set(expected), 30, 0.2)
    retried = wait_for(lambda: first.metric("leadpulse_notify_retried_total", 'destination="crm"'), 30, 0.2)
    assert retried > 0 and crm.requests == [], "crm is down: notify retries it, nothing reached it"
    assert first.metric("leadpulse_notify_queue_depth", 'destination="crm"') == len(expected)
    assert first.metric("leadpulse_notify_oldest_pending_age_seconds", 'destination="crm"') >= 60
    answers = [request.answer for request in sales.requests[:4]]
    assert answers == [retry_after(1), FAIL, CLOSE, TIMEOUT], answers

    first.kill()  # -9, mid-retry: crm's alerts are unsettled, so no offset past them was committed
    # Started again with a cap of 4 alerts in flight: it reads 4, pauses, and holds no more.
    second = notifiers(replace(settings, notify_max_pending=4), config)
    assert wait_for(lambda: second.metric("leadpulse_notify_paused") == 1, 30, 0.2), "fetching did not pause at the cap"
    assert second.metric("leadpulse_notify_pending_alerts") == 4
    assert second.metric("leadpulse_notify_queue_depth", 'destination="crm"') == 4
    retried_before = second.metric("leadpulse_notify_retried_total", 'destination="crm"')
    assert wait_for(lambda: time.monotonic() - outage_started >= OUTAGE_S, OUTAGE_S, 0.5)
    assert second.metric("leadpulse_notify_retried_total", 'destination="crm"') > retried_before, "kept retrying crm"
    receivers.up("crm")
    back = time.monotonic()
    assert wait_for(lambda: set(crm.delivered_ids()) == set(expected), 30, 0.2), "crm did not get every alert"
    recovery_s = time.monotonic() - back
    print(f"crm down {back - outage_started:.1f} s; every alert delivered {recovery_s:.1f} s after it came back")

    occurred = {record["id"]: record["occurred_at"] for record in records}
    for contact in contacts:
        own = [i for i in first_arrivals(crm.delivered_ids()) if i.startswith(f"hot:{contact}:")]
        assert own == sorted(own, key=occurred.__getitem__), f"{contact}'s alerts reached crm out of order: {own}"
    assert all(request.verified for endpoint in (crm, archive) for request in endpoint.requests)
    # The second process re-read every alert from the first one crm owed: archive got each twice,
    # with the same webhook-id, and a receiver that deduplicates on it sees each once.
    assert set(Counter(archive.delivered_ids()).values()) == {2}
    assert wait_for(lambda: second.metric("leadpulse_notify_pending_alerts") == 0, 10, 0.2)
    assert second.metric("leadpulse_notify_dead_lettered_total", 'destination="crm"') == 0


def test_a_permanent_refusal_is_dead_lettered_at_once_and_redrive_delivers_it_once_fixed(
    make_settings, receivers, notifiers, tmp_path
):
    """legacy answers 410 (gone): each alert is tried once and written to the delivery-failures
    topic with its reason and attempts; `leadpulse notify redrive` sends them again, with the
    same webhook-id, once the receiver takes them. Routes choose by segment, model and score
    (bigdeals takes enterprise alerts of the saas model scoring 90+), and an alert older than
    max_alert_age goes nowhere."""
    settings = make_settings(notify_port=free_port(), notify_max_backoff_s=2.0, event_retention=2 * 86_400_000)
    secret = new_secret()
    legacy = receivers.add("legacy", secrets=(secret,))
    bigdeals = receivers.add("bigdeals", secrets=(secret,))
    receivers.script("legacy", default=GONE)
    files = secret_files(tmp_path, secret)
    config = tmp_path / "notify.toml"
    config.write_text(
        f"""
max_alert_age = "1h"
cooldown = "off"
[destinations.legacy]
kind = "webhook"
url = "{legacy.url}"
secret_file = "{files[0]}"
[destinations.bigdeals]
kind = "webhook"
url = "{bigdeals.url}"
secret_file = "{files[0]}"
[[routes]]
to = ["legacy"]
[[routes]]
to = ["bigdeals"]
segments = ["enterprise"]
models = ["saas"]
min_score = 90
"""
    )
    now = now_ms()
    records = [
        hot_lead_record("big@acme.io", 0, now - 5_000, score=95, model="saas", segments=["enterprise", "emea"]),
        hot_lead_record("small@acme.io", 0, now - 4_000, score=95, model="saas", segments=["smb"]),
        hot_lead_record("low@acme.io", 0, now - 3_000, score=80, model="saas", segments=["enterprise"]),
        hot_lead_record("other@acme.io", 0, now - 2_000, score=97, model="services", segments=["enterprise"]),
        hot_lead_record("old@acme.io", 0, now - 2 * 3_600_000, score=99, model="saas", segments=["enterprise"]),
    ]
    fresh = [record["id"] for record in records[:-1]]
    write_outputs(settings, "hot-leads", records)

    notify = notifiers(settings, config)
    failed = wait_for(lambda: _failures(settings) if len(_failures(settings)) >= len(fresh) else None, 30, 0.3)
    assert failed, "the refused alerts were not dead-lettered"
    assert sorted(failure.record["id"] for failure in failed) == sorted(fresh)
    assert {(failure.destination, failure.reason, failure.attempts) for failure in failed} == {
        ("legacy", "HTTP 410", 1)
    }
    # The failures hold alerts (personal data): notify made their topic with the event topics'
    # lifetime, not the broker's default (docs/erasure.md).
    (config_of_failures,) = topic_configs(settings, [failures_topic(settings)]).values()
    assert config_of_failures["cleanup.policy"] == "delete"
    assert config_of_failures["retention.ms"] == str(settings.event_retention)  # 2 d, not the broker's 7 d
    assert sorted(request.webhook_id for request in legacy.requests) == sorted(fresh), "each was tried once"
    assert wait_for(lambda: bigdeals.delivered_ids() == ["hot:big@acme.io:0"], 10, 0.2), bigdeals.delivered_ids()
    assert notify.metric("leadpulse_notify_skipped_total", 'destination="legacy",reason="too_old"') == 1
    assert wait_for(lambda: notify.metric("leadpulse_notify_pending_alerts") == 0, 10, 0.2)

    receivers.script("legacy", default=OK)
    done, _ = run_cli(settings, "notify", "redrive", str(config))
    assert done.returncode == 0, done.stderr.decode()
    assert f"re-drove {len(fresh)} alerts: {len(fresh)} delivered" in done.stderr.decode()
    assert sorted(legacy.delivered_ids()) == sorted(fresh)
    assert all(request.verified for request in legacy.requests + bigdeals.requests)
    again, _ = run_cli(settings, "notify", "redrive", str(config))
    assert "re-drove 0 alerts" in again.stderr.decode(), again.stderr.decode()


def _failures(settings: Settings) -> list[Any]:
    return [failure_from(value) for _, value in read_all(settings, failures_topic(settings), idle_s=0.5) if value]

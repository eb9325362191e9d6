"""Accounts on the real broker: contacts re-keyed by account through `account-members`, the
account table, `account-scores` and `hot-accounts`, checked against the offline scorer
(`leadpulse score --accounts`), also after kill -9 of the worker mid-stream."""

import orjson
import pytest

from leadpulse.scoring.timeutil import format_ms, now_ms
from tests.integration.harness import latest_by_key, produce, read_all, request_erasures, scores_reach, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration


def test_account_scores_equal_the_offline_accounts_after_a_kill_mid_stream(make_settings, workers):
    """Contacts name one of 60 companies (by business e-mail, or an explicit account id) and
    some change company on the way, so leave records are exercised too."""
    settings = make_settings()
    lines = traffic_lines(36_000, 3_600, seed=53, accounts=60)  # long enough to be mid-stream on a busy machine
    oracle = Oracle(lines)
    assert any(view["temperature_label"] == "hot" for view in oracle.accounts.values())
    produce(settings, lines)
    worker = workers(settings)
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="scored"') >= 2_000, 90, 0.02)
    worker.kill()
    at_kill = latest_by_key(read_all(settings, settings.topic("account-scores"), idle_s=0.5))
    assert at_kill != oracle.accounts, "the worker finished before it was killed: nothing was tested"
    worker.start()
    scores_reach(settings, oracle.snapshots, timeout_s=150)
    scores_reach(settings, oracle.accounts, timeout_s=90, topic="account-scores")

    account_id = max(oracle.accounts, key=lambda a: (oracle.accounts[a]["contacts"], a))
    assert worker.get(f"/accounts/{account_id}") == (200, oracle.accounts[account_id])
    status, body = worker.get("/accounts/nobody.example")
    assert status == 404 and "unknown account" in body["error"]

    alerts = [orjson.loads(value) for _, value in read_all(settings, settings.topic("hot-accounts"))]
    assert alerts and {alert["kind"] for alert in alerts} == {"hot_account"}
    hot_now = {a for a, view in oracle.accounts.items() if view["temperature_label"] == "hot"}
    assert hot_now <= {alert["account_id"] for alert in alerts}, "an account hot at the end never alerted"

    # Erasing the account's best contact takes it out of the account, as the offline scorer does.
    victim = oracle.accounts[account_id]["top_contacts"][0]["contact_id"]
    erase = {"event_id": "erase-victim", "type": "contact_erased", "contact_id": victim}
    erase_line = orjson.dumps({**erase, "occurred_at": format_ms(now_ms())})
    after = Oracle([*lines, erase_line])
    assert after.accounts.get(account_id) != oracle.accounts[account_id]
    request_erasures(settings, [erase_line])
    scores_reach(settings, after.snapshots, timeout_s=90)
    scores_reach(settings, after.accounts, timeout_s=90, topic="account-scores")
    listed = [top["contact_id"] for top in worker.get(f"/accounts/{account_id}")[1].get("top_contacts", [])]
    assert victim not in listed

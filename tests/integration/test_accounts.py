"""Accounts on the real broker: contacts re-keyed by account through `account-members`, the
account table, `account-scores` and `hot-accounts`, checked against the offline scorer
(`leadpulse score --accounts`), also after kill -9 of the worker mid-stream."""

import asyncio
from dataclasses import replace

import orjson
import pytest

from leadpulse.cli.kafka_clients import ensure_topic, input_producer
from leadpulse.schemas.outputs import account_record
from leadpulse.scoring.accounts import Member, accounts_from, leaving, member_to_bytes
from leadpulse.scoring.engine import Reason
from leadpulse.scoring.rules import band_of, load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from leadpulse.streams.startup import ACCOUNTS_TABLE, changelog_topic
from tests.integration.harness import latest_by_key, produce, read_all, scores_reach, wait_for
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
    produce(settings, [erase_line])
    scores_reach(settings, after.snapshots, timeout_s=90)
    scores_reach(settings, after.accounts, timeout_s=90, topic="account-scores")
    listed = [top["contact_id"] for top in worker.get(f"/accounts/{account_id}")[1].get("top_contacts", [])]
    assert victim not in listed


def big_account(account_id: str, members: int, leaves: int) -> list[Member]:
    """`members` contacts of one account with varied scores, fit and committee attributes,
    then the first `leaves` of them leaving (moved or erased): member records as the scoring
    agent sends them, in send order."""
    departments = ("executive", "it", "finance", "marketing", "sales", "operations")
    seniorities = ("c_level", "vp", "director", "manager", "individual")
    start = now_ms() - 86_400_000
    records = []
    for i in range(members):
        score = (i * 7_919) % 101
        attributes = (("department", departments[i % len(departments)]), ("seniority", seniorities[i % 5]))
        reasons = (Reason("pricing page", "engagement", float(score % 13)),)
        records.append(
            Member(
                f"m{i:06d}@{account_id}",
                start + i,
                False,
                score,
                float((i * 31) % 97),
                band_of(score, (0.0, 25.0, 50.0, 75.0)),
                "lead",
                attributes,
                reasons,
            )
        )
    records.extend(leaving(records[i].contact_id, start + members + i) for i in range(leaves))
    return records


def send_members(settings, account_id: str, records: list[Member]) -> None:
    """Straight into the accounts agent's input, on the account's partition, keyed by account
    (as the scoring agent sends them)."""

    async def send() -> None:
        topic = settings.internal_topic("account-members")
        await ensure_topic(settings, topic)
        key = account_id.encode()
        partition = home_partition(key, settings.partitions)
        producer = input_producer(settings)
        await producer.start()
        try:
            sent = [await producer.send(topic, member_to_bytes(r), key, partition=partition) for r in records]
            await asyncio.gather(*sent)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_an_account_of_100_000_members_scores_like_the_offline_accounts_also_after_a_kill_mid_stream(
    make_settings, workers
):
    """One account far over the broker's 1 MB record limit if it were one record (~100 B a
    member), 2,000 of whose members leave again: the worker keeps scoring, reads the account
    back from its keys after a kill -9, and the account equals the offline scorer's over the
    same members (accounts_from)."""
    settings = make_settings()
    account_id = "bigcorp.example"
    records = big_account(account_id, 100_000, 2_000)
    final = {r.contact_id: r for r in records}
    [expected_view] = accounts_from([(account_id, m) for m in final.values() if not m.left], load_rules())
    expected = {account_id: account_record(expected_view)}
    send_members(settings, account_id, records)

    worker = workers(settings)
    published = 'kind="account_snapshot"'
    assert wait_for(lambda: worker.metric("leadpulse_outputs_total", published) >= 10, 60, 0.05)
    worker.kill()
    at_kill = latest_by_key(read_all(settings, settings.topic("account-scores"), idle_s=0.5))
    assert at_kill and at_kill != expected, "the worker finished before it was killed: nothing was tested"
    worker.start()
    scores_reach(settings, expected, timeout_s=60, alive=worker.running, topic="account-scores")
    assert worker.get(f"/accounts/{account_id}") == (200, expected[account_id])
    assert worker.running()


def one_domain_lines(contacts: int, domain: str) -> list[bytes]:
    """Every contact of one business e-mail domain: a profile and a page view each, spread
    over the last 30 days (enough to pass the old one-record account's 1 MB limit)."""
    start = now_ms() - 30 * 86_400_000
    departments = ("executive", "it", "finance", "marketing", "sales")
    seniorities = ("c_level", "vp", "director", "manager", "individual")
    paths = ("/pricing", "/product", "/blog/x", "/integrations")
    lines = []
    for i in range(contacts):
        contact, at = f"p{i:05d}@{domain}", start + i * 97_000
        profile = {"seniority": seniorities[i % 5], "department": departments[(i // 5) % 5]}
        lines.append(
            orjson.dumps(
                {
                    "event_id": f"p{i}",
                    "type": "profile_updated",
                    "contact_id": contact,
                    "occurred_at": format_ms(at),
                    "properties": profile,
                }
            )
        )
        lines.append(
            orjson.dumps(
                {
                    "event_id": f"v{i}",
                    "type": "page_viewed",
                    "contact_id": contact,
                    "occurred_at": format_ms(at + 60_000),
                    "properties": {"path": paths[i % 4]},
                }
            )
        )
    return lines


def test_15_000_contacts_of_one_domain_make_one_account_equal_to_the_offline_scorer(make_settings, workers):
    """Through the scoring agent: the account the contacts' member records make is the one
    the offline scorer reads from the same events, and the worker keeps running."""
    settings = make_settings()
    lines = one_domain_lines(15_000, "megacorp.example")
    oracle = Oracle(lines)
    assert oracle.accounts["megacorp.example"]["contacts"] == 15_000
    produce(settings, lines)
    worker = workers(settings)
    scores_reach(settings, oracle.accounts, timeout_s=60, alive=worker.running, topic="account-scores")
    assert worker.get("/accounts/megacorp.example") == (200, oracle.accounts["megacorp.example"])
    assert worker.running()


def test_an_account_stored_as_one_value_by_an_older_version_is_read_on_recovery_and_moved_under_its_own_keys(
    make_settings, workers
):
    """An upgrade: the changelog holds an account as the one value of all its members that
    older versions wrote. The worker restores it, answers queries from it, and on the
    account's next member record stores each member under its own key."""
    settings = make_settings()
    account_id = "oldcorp.example"
    members = big_account(account_id, 40, 0)
    gone = members.pop()  # left before the upgrade, kept in clear as older versions did
    legacy = orjson.dumps(
        [
            1,
            account_id,
            True,
            0,
            None,
            [orjson.Fragment(member_to_bytes(m)) for m in members]
            + [orjson.Fragment(member_to_bytes(leaving(gone.contact_id, gone.at_ms + 1)))],
        ]
    )
    rules = load_rules()
    changelog = changelog_topic(settings, ACCOUNTS_TABLE)

    async def write_legacy() -> None:
        await ensure_topic(settings, changelog)
        producer = input_producer(settings)
        await producer.start()
        try:
            key = account_id.encode()
            await producer.send_and_wait(changelog, legacy, key, partition=home_partition(key, settings.partitions))
        finally:
            await producer.stop()

    asyncio.run(write_legacy())
    worker = workers(settings)
    [before] = accounts_from([(account_id, m) for m in members], rules)
    assert worker.get(f"/accounts/{account_id}") == (200, account_record(before))

    newcomer = replace(gone, contact_id=f"new@{account_id}", at_ms=gone.at_ms + 2)
    send_members(settings, account_id, [replace(gone, at_ms=gone.at_ms - 1), newcomer])  # the first: too old
    [after] = accounts_from([(account_id, m) for m in [*members, newcomer]], rules)
    scores_reach(
        settings, {account_id: account_record(after)}, timeout_s=60, alive=worker.running, topic="account-scores"
    )
    stored: dict[bytes, bytes] = {}
    for key, value in read_all(settings, changelog, idle_s=0.5):  # compacted: the latest value per key
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = value
    assert len([key for key in stored if key.startswith(b"\xff")]) == 41, (
        "40 members and a departure under their own keys"
    )
    assert orjson.loads(stored[account_id.encode()])[0] == 2, "the account's own key holds its aggregate now"
    assert not any(gone.contact_id.encode() in value for value in stored.values() if value)

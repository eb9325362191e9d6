"""Identity stitching on the real broker: anonymous histories handed over to their contacts
on other partitions through `events-by-contact`, checked against the offline scorer, also after
kill -9 of the worker in the middle of the merges, and for one contact identified with
thousands of devices (the cap on linked ids)."""

import random
import uuid
from collections import defaultdict

import orjson
import pytest

from leadpulse.scoring.accounts import member_from_bytes
from leadpulse.scoring.rules import load_rules
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from tests.integration.harness import (
    group_lag,
    latest_by_key,
    produce,
    read_all,
    request_erasures,
    scores_reach,
    wait_for,
)
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration


def contested(lines: list[bytes]) -> set[str]:
    """Cookies that two or more contacts were identified with (a shared computer)."""
    contacts = defaultdict(set)
    for line in lines:
        event = orjson.loads(line)
        if "contact_id" in event and "anonymous_id" in event:
            contacts[event["anonymous_id"]].add(event["contact_id"])
    return {cookie for cookie, claimed in contacts.items() if len(claimed) > 1}


def test_cross_partition_merges_survive_a_kill_mid_merge_and_erasure_follows_the_links(make_settings, workers):
    settings = make_settings(batch_size=200)  # smaller batches: the kill lands among the hand-overs
    lines = traffic_lines(12_000, 1_200, seed=71, identities=0.5)
    oracle = Oracle(lines)
    merged = oracle.merged_into
    across = {cookie for cookie, contact in merged.items() if home(cookie, settings) != home(contact, settings)}
    assert len(across) >= 300, "the traffic must hand histories over between partitions"
    assert contested(lines) & merged.keys(), "and contain cookies identified as two contacts"
    assert not merged.keys() & oracle.snapshots.keys()

    produce(settings, lines)
    worker = workers(settings)
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="merged"') >= 20, 120, 0.02)
    worker.kill()
    at_kill = latest_by_key(read_all(settings, settings.topic("contact-scores"), idle_s=0.5))
    assert at_kill != oracle.snapshots, "the worker finished before it was killed: nothing was tested"
    worker.start()
    latest = scores_reach(settings, oracle.snapshots, timeout_s=180, alive=worker.running)
    assert not merged.keys() & latest.keys(), "a merged cookie's snapshot is deleted (a tombstone)"

    cookie = min(across)
    status, body = worker.get(f"/contacts/{cookie}")
    assert (status, body["merged_into"]) == (404, merged[cookie])
    contact = merged[cookie]
    assert worker.get(f"/contacts/{contact}?at=last-event") == (200, oracle.snapshots[contact])

    tombstones = [key for key, value in read_all(settings, settings.topic("contact-scores")) if value is None]
    assert cookie.encode() in tombstones

    # Erasing the contact erases the cookies it linked, on their own partitions, as offline.
    erase = {"event_id": "erase-contact", "type": "contact_erased", "contact_id": contact}
    erase_line = orjson.dumps({**erase, "occurred_at": format_ms(now_ms())})
    after = Oracle([*lines, erase_line])
    assert contact not in after.snapshots and cookie not in after.merged_into
    request_erasures(settings, [erase_line])
    scores_reach(settings, after.snapshots, timeout_s=90, alive=worker.running)
    assert wait_for(lambda: worker.get(f"/contacts/{cookie}")[1].get("merged_into") is None, 30, 0.2)
    status, body = worker.get(f"/contacts/{cookie}")
    assert status == 404 and "unknown contact" in body["error"]


def test_contacts_that_lose_a_shared_cookie_leave_account_scores_equal_to_the_offline_accounts(make_settings, workers):
    """The earliest link of each shared cookie is held back until the rest is scored: a later
    link has taken the cookie, then the earlier one wins it and the cookie's part is
    detached, so the losing contact is published again at its own history's time, earlier
    than its last account record. Its account keeps the newer record all the same (ordered
    by version, not by time), as the offline scorer's final contacts say."""
    settings = make_settings()
    lines = traffic_lines(10_000, 1_000, seed=53, accounts=150, identities=0.6)  # few contacts per account
    oracle = Oracle(lines)
    shared = contested(lines)
    winning = {line for line in lines if winning_link(orjson.loads(line), shared, oracle.merged_into)}
    first = Oracle([line for line in lines if line not in winning])
    back_in_time = {
        contact
        for contact, view in oracle.snapshots.items()
        if "account_id" in view and view["updated_at"] < first.snapshots.get(contact, view)["updated_at"]
    }
    assert back_in_time, "the traffic must have contacts that a lost cookie takes back in time"

    produce(settings, [line for line in lines if line not in winning])
    worker = workers(settings)
    scores_reach(settings, first.snapshots, timeout_s=120, alive=worker.running)
    produce(settings, sorted(winning))
    scores_reach(settings, oracle.snapshots, timeout_s=90, alive=worker.running)
    scores_reach(settings, oracle.accounts, timeout_s=90, topic="account-scores", alive=worker.running)

    latest = {}
    went_back = set()
    for _, value in read_all(settings, settings.internal_topic("account-members"), idle_s=0.5):
        record = member_from_bytes(value)
        known = latest.get(record.contact_id)
        if known is not None and record.version > known.version and record.at_ms < known.at_ms:
            went_back.add(record.contact_id)
        latest[record.contact_id] = record
    assert back_in_time <= went_back, "their account records went back in time, at growing versions"


def winning_link(event: dict, shared: set[str], merged_into: dict[str, str]) -> bool:
    """An event of the contact a shared cookie is merged into that links the cookie."""
    cookie = event.get("anonymous_id")
    return cookie in shared and merged_into.get(cookie) == event.get("contact_id")


def home(key: str, settings) -> int:
    return home_partition(key.encode(), settings.partitions)


def push_token(rnd: random.Random) -> str:
    """A device id as mobile SDKs send them: a push token (FCM's are ~160 characters)."""
    return ":".join(str(uuid.UUID(int=rnd.getrandbits(128))) for _ in range(4))[:160]


def test_one_contact_identified_with_5000_devices_keeps_the_worker_running_and_equal_to_offline(make_settings, workers):
    """Every `identify` of one user with a new device id links one more id: before the cap on
    linked ids the contact's changelog record passed Kafka's 1 MB at ~1,600 such ids and the
    worker crash-looped (MessageSizeTooLargeError). Now the contact merges the earliest
    `max_linked_ids` devices, the others stand on their own, and its record stays small."""
    settings = make_settings()
    rnd, start, user = random.Random(18), now_ms() - 20 * 86_400_000, "ada@bigcorp.example"
    devices = [push_token(rnd) for _ in range(5_000)]
    lines = []
    for index, device in enumerate(devices):
        at = start + index * 60_000
        if index % 50 == 0:  # some devices browsed before the user logged in on them
            page = {"path": "/pricing"}
            browse = {"event_id": f"p{index}", "type": "page_viewed", "anonymous_id": device, "properties": page}
            lines.append(orjson.dumps({**browse, "occurred_at": format_ms(at - 30_000)}))
        identify = {"event_id": f"i{index}", "type": "profile_updated", "contact_id": user, "anonymous_id": device}
        lines.append(orjson.dumps({**identify, "occurred_at": format_ms(at)}))

    produce(settings, lines)
    worker = workers(settings)

    def done() -> bool:
        lag = group_lag(settings)
        return not worker.running() or (lag is not None and lag.committed >= len(lines) and not lag.behind)

    assert wait_for(done, 90, 0.5) and worker.running(), "the worker stopped (see its log above)"
    changelog = read_all(settings, f"{settings.app_id}-contacts-changelog", idle_s=0.5)
    largest = max(len(value) for key, value in changelog if key == user.encode() and value is not None)
    assert largest < 100_000, f"the contact's state is bounded by the cap ({largest:,} bytes)"

    oracle = Oracle(lines)
    cap = load_rules().max_linked_ids
    assert set(oracle.merged_into) == set(devices[:cap]), "the earliest devices are merged"
    alone = {device for index, device in enumerate(devices) if index % 50 == 0 and index >= cap}
    assert set(oracle.snapshots) == {user} | alone, "later ones with a history of their own stand alone"
    scores_reach(settings, oracle.snapshots, timeout_s=60, alive=worker.running)
    standing = devices[100]  # beyond the cap, with a page view of its own
    assert worker.get(f"/contacts/{standing}?at=last-event") == (200, oracle.snapshots[standing])
    status, body = worker.get(f"/contacts/{devices[cap + 1]}")  # beyond the cap, only ever in a link
    assert status == 404 and "unknown contact" in body["error"]
    assert worker.get(f"/contacts/{devices[0]}")[1]["merged_into"] == user

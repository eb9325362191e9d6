"""Identity stitching on the real broker: anonymous histories handed over to their contacts
on other partitions through `events-by-contact`, checked against the offline scorer, also after
kill -9 of the worker in the middle of the merges."""

from collections import defaultdict

import orjson
import pytest

from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from tests.integration.harness import latest_by_key, produce, read_all, request_erasures, scores_reach, wait_for
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


def home(key: str, settings) -> int:
    return home_partition(key.encode(), settings.partitions)

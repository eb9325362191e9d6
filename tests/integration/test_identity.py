"""Identity stitching on the real broker: anonymous histories handed over to their contacts
on other partitions through `identity-links`, checked against the offline scorer, also after
kill -9 of the worker in the middle of the merges."""

from collections import defaultdict

import orjson
import pytest

from leadpulse.streams.partitioning import home_partition
from tests.integration.harness import latest_by_key, produce, read_all, scores_reach, wait_for
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


def test_anonymous_histories_merge_across_partitions_and_a_kill_mid_merge_loses_and_doubles_nothing(
    make_settings, workers
):
    settings = make_settings()
    lines = traffic_lines(12_000, 1_200, seed=71, identities=0.5)
    oracle = Oracle(lines)
    merged = oracle.merged_into
    across = {cookie for cookie, contact in merged.items() if home(cookie, settings) != home(contact, settings)}
    assert len(across) >= 300, "the traffic must hand histories over between partitions"
    assert contested(lines) & merged.keys(), "and contain cookies identified as two contacts"
    assert not merged.keys() & oracle.snapshots.keys()

    produce(settings, lines)
    worker = workers(settings)
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="merged"') >= 100, 120, 0.02)
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


def home(key: str, settings) -> int:
    return home_partition(key.encode(), settings.partitions)

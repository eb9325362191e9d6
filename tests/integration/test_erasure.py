"""Erasure on the real broker: `leadpulse erase` removes a contact from the table, from
contact-scores and, once compacted, from the changelog; late events do not bring it back."""

import asyncio

import orjson
import pytest

from leadpulse.cli.main import main
from leadpulse.scoring.timeutil import format_ms, now_ms
from leadpulse.streams.partitioning import home_partition
from tests.integration.harness import produce, read_all, scores_reach, set_topic_config, wait_for
from tests.integration.oracle import Oracle, traffic_lines

pytestmark = pytest.mark.integration

COMPACT_NOW = {  # the changelog compacted as soon as the broker's cleaner looks at it
    "cleanup.policy": "compact",  # AlterConfigs replaces the topic's whole configuration
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": "100",
}


def test_an_erased_contact_is_gone_from_scores_api_and_compacted_changelog_and_stays_gone(
    make_settings, workers, monkeypatch
):
    settings = make_settings()
    lines = traffic_lines(2_000, 200, seed=31)
    oracle = Oracle(lines)
    worker = workers(settings)
    produce(settings, lines)
    scores_reach(settings, oracle.snapshots, timeout_s=90)
    victims = sorted(contact for contact in oracle.snapshots if contact.startswith("c-"))[:2]
    assert all(worker.get(f"/contacts/{victim}")[0] == 200 for victim in victims)

    for name, value in settings.as_env().items():
        monkeypatch.setenv(name, value)
    assert main(["erase", *victims]) == 0
    survivors = {contact: view for contact, view in oracle.snapshots.items() if contact not in victims}
    scores_reach(settings, survivors, timeout_s=90)
    assert all(worker.get(f"/contacts/{victim}")[0] == 404 for victim in victims)

    late = {"event_id": "late-1", "type": "demo_requested", "contact_id": victims[0]}
    produce(settings, [orjson.dumps({**late, "occurred_at": format_ms(now_ms() - 3_600_000)})])
    assert wait_for(lambda: worker.metric("leadpulse_events_total", 'outcome="forgotten"') >= 1, 60, 0.2)
    assert worker.get(f"/contacts/{victims[0]}")[0] == 404, "a late event re-created the erased contact"

    changelog = f"{settings.app_id}-contacts-changelog"
    victim_key = victims[0].encode()
    assert [value for key, value in read_all(settings, changelog) if key == victim_key][-1] is None
    asyncio.run(set_topic_config(settings, changelog, COMPACT_NOW, create=False))
    partition = home_partition(victim_key, settings.partitions)
    neighbours = (
        f"roll-{i}" for i in range(1_000_000) if home_partition(f"roll-{i}".encode(), settings.partitions) == partition
    )

    def compacted_away() -> bool:
        """Each look writes one more record to the victim's changelog partition: the broker
        rolls a segment only when a record arrives, and never cleans the active one."""
        neighbour = next(neighbours)
        event = {
            "event_id": neighbour,
            "type": "page_viewed",
            "contact_id": neighbour,
            "occurred_at": format_ms(now_ms()),
        }
        produce(settings, [orjson.dumps(event)])
        return all(key != victim_key for key, _ in read_all(settings, changelog, idle_s=1.0))

    assert wait_for(compacted_away, timeout_s=180, interval_s=2.0), "the erased contact is still in the changelog"

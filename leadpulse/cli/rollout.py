"""`leadpulse rules compare`: the broker's side of promoting a shadow app (scoring.rollout).
Reads, never writes and never joins a consumer group: the shadow group's committed offsets
on the input and on its re-keyed events, and both apps' `contact-scores` up to their end
offsets at the start (what was written later waits for the next run)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadpulse.cli.kafka_clients import latest_by_key, read_to_end
from leadpulse.scoring.rollout import Comparison, compare
from leadpulse.streams.offsets import first_and_end_offsets
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings
from leadpulse.streams.topics import BY_CONTACT, SCORES


def shadow_settings(live: Settings, app_id: str, topic_prefix: str) -> Settings:
    return replace(live, app_id=app_id, topic_prefix=topic_prefix)


Committed = dict[TopicPartition, int]  # partition -> the next offset a group reads there


async def partitions_of(settings: Settings, topics: list[str]) -> tuple[list[TopicPartition], Committed]:
    """The partitions of those of `topics` that exist, and the offsets `settings.app_id`'s
    group has committed on them (none: it has not read them)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        described = await admin.describe_topics([topic for topic in topics if topic in existing])
        committed = await admin.list_consumer_group_offsets(settings.app_id)
    finally:
        await admin.close()
    partitions = [TopicPartition(entry["topic"], p["partition"]) for entry in described for p in entry["partitions"]]
    return partitions, {tp: commit.offset for tp, commit in committed.items() if commit.offset >= 0}


async def unread(shadow: Settings) -> int:
    """Records of the input and of the shadow's re-keyed events its group has not committed
    (a partition it never committed: all it holds)."""
    partitions, done = await partitions_of(shadow, [shadow.input_topic, shadow.internal_topic(BY_CONTACT)])
    starts, ends = await first_and_end_offsets(shadow, partitions)
    return sum(ends[tp] - max(done.get(tp, starts[tp]), starts[tp]) for tp in partitions)


async def latest_snapshots(settings: Settings) -> dict[str, Any]:
    """The app's `contact-scores` as compaction leaves it: the latest snapshot per contact."""
    records = await read_to_end(settings, settings.topic(SCORES))
    return latest_by_key((record.key, record.value) for record in records or ())


async def shadow_report(live: Settings, shadow: Settings, limit: int) -> tuple[int, Comparison]:
    behind = await unread(shadow)
    return behind, compare(await latest_snapshots(live), await latest_snapshots(shadow), limit)

"""Moving a deployment from the internal topics named by the prefix (PREFIX events-by-contact,
cooling-ticks, account-members: what versions before the app id named them) to the ones named
by the app id (APP_ID-events-by-contact, ...).

The old topics may hold records the app wrote but has not read yet: re-keyed events, identity
links and hand-overs, member and leave records, cooling ticks. A worker that only switched
names would never read them: events lost, hand-overs never applied. So a worker refuses to
start while its consumer group has unread records in an old topic (`check_migrated`), and
`leadpulse topics migrate`, with every worker of the app stopped, copies them to the same
partition of the new topic (same key, value, timestamp and headers), then commits the group's
offsets on the old topics at the end of what it copied, marked as moved (`MOVED`, the commits'
metadata): a second run copies nothing, and records another app still on an older version
writes there later (the same prefix) are not taken for this app's.

Only a group with committed offsets on an old topic is concerned: an app that never read it (a
replay under a new app id sharing the prefix) neither copies nor waits for anything of it.
The copies are read under the new topic's offsets; the states remember the old topic's under
another name (agents.scoring.REKEYED, scoring.accounts.aggregate_from_bytes), so a copy is
never taken for a replay.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from leadpulse.streams.offsets import first_and_end_offsets
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings, StartupError
from leadpulse.streams.topics import INTERNAL_NAMES

IDLE_STATES = ("Empty", "Dead")  # a consumer group without members
MOVED = "leadpulse: moved to the topic named by the app id"  # commit metadata on an old topic


@dataclass(frozen=True)
class Backlog:
    """The records of one old topic the app's consumer group has not read."""

    old: str
    new: str
    ranges: dict[int, tuple[int, int]]  # every partition -> (first unread offset, end offset)

    @property
    def records(self) -> int:
        return sum(end - start for start, end in self.ranges.values())


def renamed(settings: Settings) -> dict[str, str]:
    """Old internal topic name -> new one; none where the prefix already gave the new name."""
    names = {settings.topic(name): settings.internal_topic(name) for name in INTERNAL_NAMES}
    return {old: new for old, new in names.items() if old != new}


async def backlogs(settings: Settings) -> list[Backlog]:
    """What the app's group has left unread in the old topics it has read from and not moved
    yet. A topic the client may not see counts as absent (a least-privilege worker has no ACL
    on it: the administrator migrates with the old ACLs)."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        names = renamed(settings)
        existing = set(await admin.list_topics())
        present = [old for old in names if old in existing]
        committed = await admin.list_consumer_group_offsets(settings.app_id) if present else {}
        read = [
            old
            for old in present
            if any(tp.topic == old for tp in committed)
            and not any(tp.topic == old and commit.metadata == MOVED for tp, commit in committed.items())
        ]
        if not read:
            return []
        described = await admin.describe_topics(read)
    finally:
        await admin.close()
    partitions = [TopicPartition(entry["topic"], p["partition"]) for entry in described for p in entry["partitions"]]
    starts, ends = await first_and_end_offsets(settings, partitions)
    found = []
    for old in read:
        ranges = {}
        for tp in (tp for tp in partitions if tp.topic == old):
            # a partition never committed is unread from its start (the group reads from the earliest)
            start = max(committed[tp].offset if tp in committed else 0, starts[tp])
            ranges[tp.partition] = (min(start, ends[tp]), ends[tp])
        found.append(Backlog(old, names[old], ranges))
    return found


async def check_migrated(settings: Settings) -> None:
    """Raise StartupError, in one line, while an old topic holds records the app has not read
    (startup.prepare_topics asks, once the group coordinator answers)."""
    found = [backlog for backlog in await backlogs(settings) if backlog.records]
    if found:
        unread = ", ".join(f"{backlog.old} ({backlog.records:,})" for backlog in found)
        raise StartupError(
            f"records app {settings.app_id!r} has not read yet are in its old internal topics: {unread}; "
            f"internal topics are now named by the app id ({found[0].new}): stop every worker of the app, "
            "then run `leadpulse topics migrate` (README, Upgrading)"
        )


async def migrate(settings: Settings) -> list[Backlog]:
    """Copy the unread records of the old topics to the new ones, which the caller has created
    (startup.prepare_topics), and mark them read in the old ones."""
    await _refuse_running_workers(settings)
    found = await backlogs(settings)
    for backlog in found:
        if backlog.records:
            await _copy(settings, backlog)
    await _mark_read(settings, found)
    return found


async def _refuse_running_workers(settings: Settings) -> None:
    """A running worker would go on writing to (and reading) the old topics after the copy."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([settings.app_id])
    finally:
        await admin.close()
    for response in responses:
        for group in response.to_object()["groups"]:
            if group["state"] not in IDLE_STATES:
                raise StartupError(
                    f"consumer group {settings.app_id!r} has {len(group['members'])} members ({group['state']}): "
                    "stop every worker of the app first (SIGTERM), then run `leadpulse topics migrate` again"
                )


async def _copy(settings: Settings, backlog: Backlog) -> None:
    consumer = AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    await consumer.start()
    await producer.start()
    try:
        partitions = [TopicPartition(backlog.old, p) for p, (start, end) in backlog.ranges.items() if start < end]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, backlog.ranges[tp.partition][0])
        pending = set(partitions)
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=1_000)
            deliveries = [
                await producer.send(
                    backlog.new,
                    record.value,
                    key=record.key,
                    partition=tp.partition,
                    timestamp_ms=record.timestamp,
                    headers=list(record.headers),
                )
                for tp, records in fetched.items()
                for record in records
                if record.offset < backlog.ranges[tp.partition][1]
            ]
            await asyncio.gather(*deliveries)  # each acknowledged, or the command fails here
            pending = {tp for tp in pending if await consumer.position(tp) < backlog.ranges[tp.partition][1]}
    finally:
        await producer.stop()
        await consumer.stop()


async def _mark_read(settings: Settings, found: list[Backlog]) -> None:
    """Commit the app's group offsets on the old topics at the end of what was copied, as moved."""
    offsets = {
        TopicPartition(backlog.old, partition): (end, MOVED)
        for backlog in found
        for partition, (_start, end) in backlog.ranges.items()
    }
    if not offsets:
        return
    consumer = AIOKafkaConsumer(**client_options(settings), group_id=settings.app_id, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()

"""Compaction on a clock, in Kafka and in the worker's RocksDB, so that what an erasure
deleted is gone from disk within a bound (docs/erasure.md).

Kafka never cleans a partition's active segment, and rolls it only
when a record is appended after `segment.ms` (or `max.compaction.lag.ms`). On a quiet
partition the old records and tombstones of an erased contact would stay in the active
segment of `contact-scores` and the changelogs forever. So every half `compaction_lag` the
worker appends one tombstone of a key no contact has to each compacted topic's partitions it
owns: the segment rolls, the cleaner compacts it, and the erasure delay holds on quiet
partitions too. Consumers see a deletion of a key nobody ever had.

RocksDB keeps an overwritten or deleted value in its write-ahead log and SST files until a
flush and a compaction reach it: an erased contact's own key is purged at once
(streams.tables), but an account's old value that listed the contact, say, is not. So on the
same clock each local database is flushed and compacted in full, in a thread, off the event
loop."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.stores.rocksdb import Store as RocksDBStore

from leadpulse.streams.outbox import DeliveryFailed, Outbox
from leadpulse.streams.pipeline import Pipeline
from leadpulse.streams.tables import bottommost

log = logging.getLogger(__name__)
NUDGE_KEY = b"\x00roll"  # starts with NUL, as no contact id, account id or erasure marker of scoring.erasure does


class CompactionNudge:
    def __init__(self, pipeline: Pipeline, producer: Any) -> None:
        self.pipeline = pipeline
        self.producer = producer

    @classmethod
    def attach(cls, pipeline: Pipeline, producer: Any) -> CompactionNudge:
        self = cls(pipeline, producer)
        pipeline.app.timer(self.interval_s, name="leadpulse.nudge_compaction")(self.nudge)
        return self

    def compacted_topics(self) -> list[str]:
        pipeline = self.pipeline
        return [
            pipeline.topics.scores.get_topic_name(),
            pipeline.topics.account_scores.get_topic_name(),
            pipeline.contacts.table.changelog_topic.get_topic_name(),
            pipeline.accounts.table.changelog_topic.get_topic_name(),
        ]

    async def nudge(self) -> None:
        """One tombstone per compacted topic and partition this worker scores."""
        input_topic = self.pipeline.settings.input_topic
        owned = sorted(
            {tp.partition for tp in self.pipeline.app.assignor.assigned_actives() if tp.topic == input_topic}
        )
        if not owned:
            return
        outbox = Outbox(self.pipeline.readiness.deliveries)
        for topic in self.compacted_topics():
            for partition in owned:
                outbox.add(topic, partition, NUDGE_KEY, None)
        try:
            await outbox.deliver(self.producer())
        except DeliveryFailed as error:
            log.error("compaction nudge not delivered, trying again in %.0f s: %s", self.interval_s, error)
        for table in (self.pipeline.contacts.table, self.pipeline.accounts.table):
            store = table.data
            if isinstance(store, RocksDBStore) and store.use_rocksdict:
                for partition, db in list(store._dbs.items()):
                    try:
                        await asyncio.to_thread(compact_all, db)
                    except Exception as error:  # a partition revoked meanwhile: its database was closed
                        log.warning("RocksDB partition %s of %s not compacted: %r", partition, table.name, error)

    @property
    def interval_s(self) -> float:
        return self.pipeline.settings.compaction_lag / 2_000


def compact_all(db: Any) -> None:
    """Flush the memtable (the write-ahead log files it covered are then deleted) and compact
    every key down to the last level, where deleted and overwritten values are dropped."""
    db.flush(True)
    db.compact_range(None, None, bottommost())

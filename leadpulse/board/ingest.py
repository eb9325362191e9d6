"""The board's Kafka edge: one consumer, no consumer group, assigned every partition of the
output topics the board reads and started at the offsets stored in the read model (the first
offset where none is stored: an empty database rebuilds from the topics). Each poll's records
go to `Store.apply` in one transaction with their next offsets; the hot leads it stored for
the first time then go to `on_hot` (the live pages)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from leadpulse.board.model import ROLES, HotLeadRow
from leadpulse.board.store import Incoming, Store
from leadpulse.scoring.timeutil import now_ms
from leadpulse.streams.quiet import install_reconnect_backoff
from leadpulse.streams.security import client_options
from leadpulse.streams.settings import Settings

log = logging.getLogger(__name__)

POLL_MS = 500
FETCH_RECORDS = 2_000  # records per poll and so per transaction, at most
EXPIRE_EVERY_S = 600.0


@dataclass
class Progress:
    """What /health tells: records applied and passed, and how far behind the topics' ends."""

    applied: int = 0
    unreadable: int = 0
    lag: int | None = None  # records not yet read (None: not known yet)
    partitions: int = 0
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)


class Ingest:
    def __init__(self, settings: Settings, store: Store, on_hot: Callable[[list[HotLeadRow]], None]) -> None:
        self.settings = settings
        self.store = store
        self.on_hot = on_hot
        self.roles = {settings.topic(role): role for role in ROLES}
        self.progress = Progress()
        self.consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        install_reconnect_backoff(self.consumer._client)

    async def run(self, stopping: asyncio.Event) -> None:
        await self.consumer.start()
        try:
            await self._assign()
            next_expiry = time.monotonic() + EXPIRE_EVERY_S
            while not stopping.is_set():
                batches = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=FETCH_RECORDS)
                records = [
                    Incoming(self.roles[tp.topic], tp.topic, tp.partition, r.offset, r.key, r.value, r.timestamp)
                    for tp, rs in batches.items()
                    for r in rs
                ]
                if records:
                    applied = await asyncio.to_thread(self.store.apply, records)
                    self.progress.applied += applied.records
                    self.progress.unreadable += len(applied.bad)
                    for role, where, why in applied.bad:
                        log.error("%s record %s is not one, passed: %s", role, where, why)
                    if applied.hot_leads:
                        self.on_hot(applied.hot_leads)
                self._measure_lag()
                if time.monotonic() >= next_expiry:
                    await asyncio.to_thread(self.store.expire, now_ms(), self._marker_ttl_ms())
                    next_expiry = time.monotonic() + EXPIRE_EVERY_S
        finally:
            await self.consumer.stop()

    async def _assign(self) -> None:
        """Every partition of the board's topics, each at its stored offset (else the first)."""
        cluster = await self.consumer._client.fetch_all_metadata()
        partitions = [
            TopicPartition(topic, p) for topic in self.roles for p in sorted(cluster.partitions_for_topic(topic) or ())
        ]
        missing = [topic for topic in self.roles if not any(tp.topic == topic for tp in partitions)]
        if missing:
            raise RuntimeError(f"topics {', '.join(missing)} do not exist")
        self.consumer.assign(partitions)
        stored = self.store.offsets()
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
        self.progress.partitions = len(partitions)
        log.info("board: reading %d partitions, %d at stored offsets", len(partitions), len(stored))

    def _measure_lag(self) -> None:
        lag, stored = 0, self.store.offsets()
        for tp in self.consumer.assignment():
            end = self.consumer.highwater(tp)
            if end is None:
                self.progress.lag = None
                return
            lag += max(0, end - stored.get((tp.topic, tp.partition), 0))
        self.progress.lag = lag

    def _marker_ttl_ms(self) -> int:
        """How long a record an erasure marker hides can still be read: the event topics'
        retention and a compaction lag (docs/erasure.md)."""
        return self.settings.event_retention + self.settings.compaction_lag

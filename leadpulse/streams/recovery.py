"""Table recovery that reads changelogs in bulk: Faust's own recovery takes every changelog
record through its per-message path and restores ~9-10k records/s (bench/README.md,
"Restore"), so a worker with a million contacts was ~2 minutes from ready. Here the
partitions Faust has just assigned, active and standby, are first read with a plain
consumer, one RocksDB write batch per fetch with Faust's stored changelog offset
(`Store.offset_key`) in the same batch; Faust then starts its recovery from that offset and
finds little or nothing left to read.

Nothing changes in what Faust owns: which partitions are recovered, up to which offsets,
routing, rebalancing. A crash leaves each database with the records and the offset of its
last whole write batch, so a restart resumes from there; a rebalance during the read stops
it, and Faust's next recovery takes over from the offsets written so far.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Set
from typing import Any

import rocksdict
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.stores.rocksdb import Store as RocksDBStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth, server_list
from faust.types import TP

log = logging.getLogger(__name__)

FETCH_BYTES = 64 << 20  # per fetch: a write batch per partition of up to ~8 MiB
PARTITION_FETCH_BYTES = 8 << 20
FETCH_RECORDS = 10_000  # records turned into Python objects at once: bounds memory and loop stalls
PROGRESS_STEPS = 10  # progress lines per rebuild: one per tenth read
BUDGET_SHARE = 0.5
"""Faust gives `_build_offsets` `broker_request_timeout` (90 s by default) and stops the
worker when it runs over; the bulk read stops after this share of it and leaves the rest
of the changelog to Faust's own recovery (~4M records at 100k records/s)."""


class BulkRecovery(Recovery):
    _reader: AIOKafkaConsumer | None = None

    async def _build_offsets(self, consumer: Any, tps: set[TP], destination: Any, title: str) -> None:
        """Faust calls this for the active partitions after taking their highwaters, then for
        the standby partitions; the offsets it then seeks to are the ones written here.
        Actives are read up to Faust's highwaters (it checks that no offset is past them);
        standbys, which Faust would otherwise read record by record while the worker
        scores, up to the changelog's end."""
        if title == "active":
            await self._rebuild(tps, destination, self.active_tps, self.active_highwaters)
        elif title == "standby":
            await self._rebuild(tps, destination, self.standby_tps, None)
        await super()._build_offsets(consumer, tps, destination, title)

    async def _rebuild(self, tps: set[TP], offsets: Any, owned: Set[TP], highwaters: Mapping[TP, int] | None) -> None:
        """Keyed by aiokafka's TopicPartition, which aiokafka insists on; it equals Faust's TP
        (both are (topic, partition) tuples), so Faust's mappings take it as their own."""
        stores = {
            TopicPartition(*tp): store for tp in tps if (store := _rocksdict_store(self.tp_to_table[tp])) is not None
        }
        if not stores:
            return
        reader = await self._started_reader()
        reader.assign(list(stores))
        try:
            earliest = await reader.beginning_offsets(list(stores))
            if highwaters is None:
                ends = await reader.end_offsets(list(stores))
            else:
                ends = {tp: highwaters[tp] + 1 for tp in stores}
            pending: dict[TopicPartition, int] = {}
            for tp in stores:
                start = earliest[tp] if offsets[tp] is None else max(offsets[tp] + 1, earliest[tp])
                if start < ends[tp]:
                    reader.seek(tp, start)
                    pending[tp] = ends[tp]
                    offsets[tp] = start - 1
            if pending:
                await self._read(reader, stores, pending, offsets, owned)
        finally:
            reader.assign([])

    async def _read(
        self,
        reader: AIOKafkaConsumer,
        stores: Mapping[TopicPartition, RocksDBStore],
        pending: dict[TopicPartition, int],
        offsets: Any,
        owned: Set[TP],
    ) -> None:
        """Until every partition is read to its end, another rebalance starts, or the time
        budget is spent. `offsets` holds, per partition, the last offset written; `owned` is
        Faust's set of those partitions, which a rebalance changes meanwhile."""
        total = _left(pending, offsets)
        log.info("rebuilding tables from changelogs: %s partitions, ~%s records", len(pending), f"{total:,}")
        started = time.monotonic()
        report_at = total // PROGRESS_STEPS
        deadline = started + BUDGET_SHARE * self.app.conf.broker_request_timeout
        records = 0
        while pending and not self.signal_recovery_start.is_set() and time.monotonic() < deadline:
            fetched = await reader.getmany(*pending, timeout_ms=500, max_records=FETCH_RECORDS)
            for tp, messages in fetched.items():
                if tp not in owned:  # revoked meanwhile: no longer ours to write
                    del pending[tp]
                    continue
                end = pending[tp]
                current = [message for message in messages if message.offset < end]
                if current:
                    store = stores[tp]
                    write_records(store._db_for_partition(tp.partition), current, store.offset_key)
                    offsets[tp] = current[-1].offset
                    records += len(current)
                if await reader.position(tp) >= end:
                    del pending[tp]
            if records >= report_at and pending:
                report_at = records + total // PROGRESS_STEPS
                log.info("rebuilding tables: %s records, ~%s to go", f"{records:,}", f"{_left(pending, offsets):,}")
        elapsed = time.monotonic() - started
        log.info(
            "rebuilt %s table records from changelogs in %.1f s (%s records/s)%s",
            f"{records:,}",
            elapsed,
            f"{records / elapsed:,.0f}" if elapsed else "-",
            f"; Faust's recovery reads the rest of {len(pending)} partitions" if pending else "",
        )

    async def _started_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            conf = self.app.conf
            transport: Any = self.app.transport  # the aiokafka driver's, with its default port
            self._reader = AIOKafkaConsumer(
                client_id=f"{conf.broker_client_id}-recovery",
                bootstrap_servers=server_list(transport.url, transport.default_port),
                request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
                enable_auto_commit=False,
                fetch_max_bytes=FETCH_BYTES,
                max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
                **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
            )
            await self._reader.start()
        return self._reader

    async def on_stop(self) -> None:
        await super().on_stop()
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None


class BulkTableManager(TableManager):
    """Faust's table manager, with the recovery above (the app's `TableManager` setting)."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = BulkRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


def _rocksdict_store(table: Any) -> RocksDBStore | None:
    """Values are written as the changelog holds them, as Faust's `apply_changelog_batch`
    does: only the rocksdict store is written that way here."""
    store = table.data
    return store if isinstance(store, RocksDBStore) and store.use_rocksdict else None


def _left(pending: Mapping[TopicPartition, int], offsets: Any) -> int:
    """Offsets still to read (compaction leaves gaps: an upper bound on records)."""
    return sum(end - 1 - offsets[tp] for tp, end in pending.items())


def write_records(db: rocksdict.Rdict, messages: list[Any], offset_key: bytes | None = None) -> None:
    """One atomic write: the records (a None value deletes) and, under `offset_key`, the
    offset of the last one, from which Faust resumes."""
    batch = rocksdict.WriteBatch(raw_mode=True)
    for message in messages:
        if message.value is None:
            batch.delete(message.key)
        else:
            batch.put(message.key, message.value)
    if offset_key is not None:
        batch.put(offset_key, str(messages[-1].offset).encode())
    db.write(batch)

"""The contact and account tables: Faust tables of id -> state bytes (scoring.state,
scoring.accounts; an account is kept under several keys).

Faust decides which local RocksDB partition and which changelog partition a write goes to
from the *current event*. A batch from `take_events` mixes partitions, so every access runs
inside `partition_of(event)` for an event of the key's own partition; otherwise a key would
be stored under another partition and restored wrongly after a rebalance.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Generic, TypeVar

import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event
from faust.types import TP

from leadpulse.scoring.accounts import (
    AccountState,
    Aggregate,
    aggregate_from_bytes,
    aggregate_key,
    changes,
    departure_due,
    departure_owner,
    entries_prefix,
    new_departures,
    restore,
)
from leadpulse.scoring.erasure import (
    Erasure,
    expiry_end,
    expiry_key,
    expiry_prefix,
    expiry_until,
    is_marker,
    marker_bytes,
    marker_from_bytes,
    marker_key,
    marker_of_expiry,
)
from leadpulse.scoring.expiry import departure_entry, departure_of, departures_range
from leadpulse.scoring.rules import Rules
from leadpulse.scoring.state import ContactState, from_bytes, to_bytes
from leadpulse.streams.outbox import Outbox

S = TypeVar("S")
Record = tuple[bytes, bytes | None]  # a table key and its value; None deletes it
NONE_DUE = 2**63  # no marker in the expiry index: none due until one is written


@contextmanager
def partition_of(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class Table:
    """A Faust table of bytes, read from and written to a partition's local store directly."""

    def __init__(self, table: Any, memory: RocksDBMemory | None = None) -> None:
        self.table = table
        store = table.data
        if isinstance(store, RocksDBStore) and store.use_rocksdict:  # Faust has no hook for rocksdict's options
            if memory is None:
                raise ValueError("a RocksDB table needs the worker's RocksDBMemory")
            options: Any = store.rocksdb_options
            options.__class__ = ErasingOptions
            options.memory = memory

    def read(self, key: bytes, partition: int | None) -> bytes | None:
        """A scoring batch knows the key's partition: RocksDB is read from that partition's
        database, where Faust's store reads it inside `partition_of`, without the layers of
        Faust's table mapping around it (~3% of the worker's CPU: bench/README.md).
        Elsewhere (queries) through the table, which finds the key's partition itself."""
        store = self.table.data
        if partition is not None and isinstance(store, RocksDBStore) and store.use_rocksdict:
            value: bytes | None = store._db_for_partition(partition).get(key)
            return value
        return self.table.get(key)  # type: ignore[no-any-return]

    def has(self, key: bytes, partition: int) -> bool:
        return self.read(key, partition) is not None

    def keys_between(self, partition: int, start: bytes, end: bytes, limit: int) -> list[bytes]:
        """Up to `limit` keys of `partition` in [start, end), in order: one seek in RocksDB; a
        scan of every key in other stores (memory://, for tests)."""
        store = self.table.data
        if isinstance(store, RocksDBStore) and store.use_rocksdict:
            found: list[bytes] = []
            for key in store._db_for_partition(partition).keys(from_key=start):
                if key >= end or len(found) >= limit:
                    break
                found.append(key)
            return found
        return sorted(key for key in store if isinstance(key, bytes) and start <= key < end)[:limit]

    def put_records(self, partition: int, records: list[Record], outbox: Outbox) -> None:
        """Write the local store now and queue the records in `outbox` for the changelog (a
        None value deletes the key: a tombstone); run in `partition_of` an event of
        `partition`. The persisted offset (where recovery resumes) is set the way Faust sets
        it, once the broker has the records."""
        changelog = self.table.changelog_topic.get_topic_name()
        for key, value in records:  # all checked before anything is written: RecordTooLarge changes nothing
            outbox.limits.check(changelog, key, value)
        for key, value in records:
            outbox.add_checked(changelog, partition, key, value)
        store = self.table.data
        _write_local(store, partition, records)
        outbox.on_delivered(changelog, partition, partial(store.set_persisted_offset, TP(changelog, partition)))


class StateTable(Table, Generic[S]):
    """A table of states kept as bytes, one per key, written a partition's batch at a time."""

    def __init__(
        self,
        table: Any,
        decode: Callable[[bytes], S],
        encode: Callable[[S], bytes],
        key: Callable[[S], str],
        memory: RocksDBMemory | None = None,
    ) -> None:
        super().__init__(table, memory)
        self.decode, self.encode, self.key = decode, encode, key

    def get(self, key: str, partition: int | None = None) -> S | None:
        data = self.read(key.encode(), partition)
        return None if data is None else self.decode(data)

    def put_many(self, partition: int, states: Iterable[S], outbox: Outbox, first: Iterable[Record] = ()) -> None:
        """Write the local store now and queue one changelog record per state in `outbox`;
        run in `partition_of` an event of `partition`. Faust's `table[key] = value` would send
        each changelog record on its own; the persisted offset (where recovery resumes) is
        set the way Faust sets it, once the broker has the records. `first` are written
        before the states (None deletes: a tombstone in the changelog)."""
        self.put_encoded(partition, ((self.key(state), self.encode(state)) for state in states), outbox, first)

    def put_encoded(
        self, partition: int, encoded: Iterable[tuple[str, bytes]], outbox: Outbox, first: Iterable[Record] = ()
    ) -> None:
        """`put_many` of states already encoded (key, bytes): a caller that checked their size
        against the changelog's record limit encodes each once."""
        self.put_records(partition, [*first, *((key.encode(), value) for key, value in encoded)], outbox)

    async def scan(self, slice_s: float = 0.005) -> AsyncIterator[tuple[str, S]]:
        """Every local state (erasure markers skipped), decoded; lets the event loop run (web, heartbeats, producer)
        whenever `slice_s` has passed, counting the caller's work on each state too, so a
        large table does not stall the worker (bench/recovery.py measures it)."""
        resumed = time.perf_counter()
        for key, data in self.table.items():
            if is_marker(key):
                continue
            yield key.decode(), self.decode(data)
            if time.perf_counter() - resumed >= slice_s:
                await asyncio.sleep(0)
                resumed = time.perf_counter()


CONTACT_CACHE_ENTRIES = 20_000
"""Contact states the worker keeps decoded across batches (~2.8 KB each, ~56 MB at the
bound): decoding a stored state was ~8% of the scoring agent's CPU and reading it from
RocksDB ~4% (bench/README.md). The contacts stored least recently are dropped beyond it,
and read again from the store on their next record."""


class ContactTable(StateTable[ContactState]):
    """Contacts, and the erasure markers kept among them (scoring.erasure) under keys no
    contact id has, so that a marker moves with its contact's partition.

    The states the scoring agent has just stored are kept decoded (`remember`), up to
    `cached_entries`: a scoring batch's `get` of one hands out that object instead of reading
    and decoding the store, and takes it out of the cache (the batch may then change it;
    a batch folded again reads the store, which it has not written yet). Every write of a
    key takes it out too, so a kept state is always the one its key holds in the local store;
    after a rebalance (the store recovered from the changelog, or written by a standby's
    reader meanwhile) none is kept."""

    def __init__(
        self, table: Any, memory: RocksDBMemory | None = None, cached_entries: int = CONTACT_CACHE_ENTRIES
    ) -> None:
        super().__init__(table, from_bytes, to_bytes, lambda state: state.contact_id, memory)
        # Memory store only (one mapping for all partitions, no sorted reads): the earliest
        # deadline in each partition's expiry index, so that it is not read at every batch.
        self._next_due: dict[int, int] = {}
        self.cached_entries = cached_entries
        self._decoded: OrderedDict[bytes, ContactState] = OrderedDict()
        table.on_recover(self._recovered)

    async def _recovered(self) -> None:
        self._next_due.clear()
        self._decoded.clear()

    def get(self, key: str, partition: int | None = None) -> ContactState | None:
        """As StateTable.get; in a scoring batch (`partition` given) a kept state is handed
        out, and forgotten."""
        if partition is not None:
            kept = self._decoded.pop(key.encode(), None)
            if kept is not None:
                return kept
        return super().get(key, partition)

    def remember(self, states: Iterable[ContactState]) -> None:
        """Keep `states`, just written by `put_encoded` as they are, for the next batch's
        `get`; the least recently stored beyond `cached_entries` are dropped."""
        decoded = self._decoded
        for state in states:
            decoded[state.contact_id.encode()] = state
        while len(decoded) > self.cached_entries:
            decoded.popitem(last=False)

    def put_records(self, partition: int, records: list[Record], outbox: Outbox) -> None:
        decoded = self._decoded
        for key, _ in records:
            decoded.pop(key, None)
        super().put_records(partition, records, outbox)

    def erasure(self, contact_id: str, partition: int | None = None) -> Erasure | None:
        data = self.read(marker_key(contact_id), partition)
        return None if data is None else marker_from_bytes(data)

    def put_many(  # type: ignore[override]
        self,
        partition: int,
        states: Iterable[ContactState],
        outbox: Outbox,
        erased: dict[str, Erasure] | None = None,
        expired: Iterable[bytes] = (),
    ) -> None:
        self.put_encoded(
            partition, ((self.key(state), self.encode(state)) for state in states), outbox, erased, expired
        )

    def put_encoded(  # type: ignore[override]
        self,
        partition: int,
        encoded: Iterable[tuple[str, bytes]],
        outbox: Outbox,
        erased: dict[str, Erasure] | None = None,
        expired: Iterable[bytes] = (),
        *,
        index: Iterable[Record] = (),
    ) -> None:
        """As StateTable.put_encoded; first `index` (the expiry index's entries, and expired
        contacts' deletions: scoring.expiry), then an erased contact's record is deleted and its marker
        stored with its expiry index entry (the entry of a marker it replaces deleted), and
        `expired` markers (scoring.erasure) are deleted with theirs. After an erasure the
        partition's RocksDB is flushed and the erased keys compacted away, so that neither
        its write-ahead log nor an SST file keeps the contact's data (docs/erasure.md)."""
        first: list[Record] = list(index)
        for marker in expired:
            data = self.read(marker, partition)
            if data is not None:
                first += [(marker, None), (expiry_key(partition, marker, marker_from_bytes(data)), None)]
        for contact_id, erasure in (erased or {}).items():  # first: a contact back after its grace is stored after
            marker = marker_key(contact_id)
            known = self.read(marker, partition)
            if known is not None and marker_from_bytes(known) != erasure:
                first.append((expiry_key(partition, marker, marker_from_bytes(known)), None))
            first += [
                (contact_id.encode(), None),
                (marker, marker_bytes(erasure)),
                (expiry_key(partition, marker, erasure), b""),
            ]
            self._next_due.pop(partition, None)
        super().put_encoded(partition, encoded, outbox, first)
        if erased:
            _purge(self.table.data, partition, [contact_id.encode() for contact_id in erased])

    def due_markers(self, partition: int, before_ms: int, limit: int) -> list[bytes]:
        """Up to `limit` markers of `partition` whose deadline is before `before_ms`, oldest
        first: one seek in RocksDB when none is due."""
        start, end = expiry_prefix(partition), expiry_end(partition, before_ms)
        store = self.table.data
        if isinstance(store, RocksDBStore) and store.use_rocksdict:
            return [marker_of_expiry(key) for key in self.keys_between(partition, start, end, limit)]
        known = self._next_due.get(partition)
        if known is not None and known >= before_ms:
            return []
        entries = sorted(key for key in store if key.startswith(start))
        due = [marker_of_expiry(key) for key in entries[:limit] if key < end]
        rest = entries[len(due) :]
        self._next_due[partition] = expiry_until(rest[0]) if rest else NONE_DUE
        return due


ACCOUNT_CACHE_ENTRIES = 200_000
"""Members and departures the worker keeps indexed across batches (~0.8 KB each, so ~160 MB
at the bound): the accounts used least recently are dropped beyond it, and read again from
the store on their next record (~2 s for an account of 100,000 members: bench/README.md)."""


class AccountTable(Table):
    """Accounts, each under many keys of its partition (scoring.accounts: a small aggregate
    under the account id, one key per member and per departure), and a cache of their
    indexes (`AccountState`), derived from those keys.

    A cached index is used only while the stored aggregate's position is the one it was
    stored with: after a rebalance gave the partition to another worker and back, or a
    restart, the account is read again from the store (recovered from the changelog)."""

    def __init__(
        self, table: Any, memory: RocksDBMemory | None = None, cached_entries: int = ACCOUNT_CACHE_ENTRIES
    ) -> None:
        super().__init__(table, memory)
        self.cached_entries = cached_entries
        self._cache: OrderedDict[str, tuple[AccountState, int]] = OrderedDict()  # with its entries when counted
        self._held = 0  # entries counted in the cache

    def load(self, account_id: str, partition: int, rules: Rules) -> AccountState:
        """The account's index, up to date with the store: from the cache, else read (and migrated from
        the one-value format of older versions: its entries are then all to be stored)."""
        aggregate = self.aggregate(account_id, partition)
        cached = self._uncache(account_id)
        if (
            cached is not None
            and aggregate is not None
            and cached.position == aggregate.position
            and cached.rules is rules
            and not aggregate.legacy
        ):
            state = cached
        else:
            state = restore(account_id, aggregate, self._entries(account_id, partition), rules)
        self._cache[account_id] = (state, len(state))
        self._held += len(state)
        return state

    def aggregate(self, account_id: str, partition: int | None = None) -> Aggregate | None:
        data = self.read(aggregate_key(account_id), partition)
        return None if data is None else aggregate_from_bytes(data)

    def store(self, partition: int, stored: list[tuple[AccountState, bytes | None]], outbox: Outbox) -> None:
        """Write each account's changed entries and its aggregate (`published`: the record
        published for it; None for an account without members, whose aggregate is deleted),
        as `put_many` writes; keep their indexes cached within the bound."""
        records: list[Record] = []
        for state, published in stored:
            records += ((departure_entry(partition, due, key), b"") for key, due in new_departures(state))
            records += changes(state, published)
        self.put_records(partition, records, outbox)
        for state, published in stored:
            cached = self._uncache(state.account_id)
            if cached is not None and published is not None:  # no aggregate to check against: read again next time
                self._cache[state.account_id] = (cached, len(cached))
                self._held += len(cached)
        while self._held > self.cached_entries and len(self._cache) > 1:
            self._held -= self._cache.popitem(last=False)[1][1]

    def expire_departures(self, partition: int, before_ms: int, limit: int, outbox: Outbox) -> int:
        """Delete up to `limit` departure markers of `partition` due before `before_ms`, with
        their index entries (scoring.expiry), as `put_records` writes; an entry whose marker
        was replaced since (the contact came back, or left again) goes alone. An account
        whose last marker goes leaves nothing behind. Returns the markers deleted."""
        records: list[Record] = []
        start, end = departures_range(partition, before_ms)
        for entry in self.keys_between(partition, start, end, limit):
            due, key = departure_of(entry)
            records.append((entry, None))
            value = self.read(key, partition)
            if value is None or departure_due(value) != due:
                continue
            records.append((key, None))
            account_id, marker = departure_owner(key)
            cached = self._cache.get(account_id)
            if cached is not None:
                cached[0].departed.pop(marker, None)
                if not len(cached[0]):
                    self._uncache(account_id)
        if records:
            self.put_records(partition, records, outbox)
        return sum(1 for key, _ in records if not key.startswith(start))

    def _uncache(self, account_id: str) -> AccountState | None:
        cached = self._cache.pop(account_id, None)
        if cached is None:
            return None
        self._held -= cached[1]
        return cached[0]

    def _entries(self, account_id: str, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """The account's entry keys and values: a range of its partition's RocksDB; in
        other stores (memory://, for tests) a scan of every key."""
        prefix = entries_prefix(account_id)
        store = self.table.data
        if isinstance(store, RocksDBStore) and store.use_rocksdict:
            cursor = store._db_for_partition(partition).iter()
            cursor.seek(prefix)
            while cursor.valid():
                key = cursor.key()
                if not key.startswith(prefix):
                    break
                yield key, cursor.value()
                cursor.next()
        else:
            for key, value in list(self.table.data.items()):
                if isinstance(key, bytes) and key.startswith(prefix):
                    yield key, value


# What one partition's database may hold in memory before it flushes (docs/guarantees.md#bounds):
# Faust's defaults (a 64 MB write buffer, up to 3, and a 2 GB cache) for each of a worker's
# databases let memtables and their write-ahead log grow with the writes until one reached
# 64 MB: the 30-minute soak's RSS rose 7-10 MiB a minute.
WRITE_BUFFER_BYTES = 8 * 1024 * 1024
WRITE_BUFFERS = 2
# A memtable takes memory in blocks of this size (RocksDB's default: an eighth of the write
# buffer). A database holds at least one block; with many databases under one budget a smaller
# block keeps what the idle ones hold small: 32 databases under a 16 MiB memtable limit
# peaked at 77 MB with 1 MiB blocks and at 33 MB with these (tests/unit/test_rocksdb_memory.py).
ARENA_BLOCK_BYTES = 256 * 1024


class RocksDBMemory:
    """One memory budget for all of a worker's databases (`LEADPULSE_ROCKSDB_MEMORY_BYTES`):
    a worker opens one database per table partition it owns or keeps as a standby, so a
    bound per database would grow with the partitions. One block cache of the budget is
    shared by all of them, and their memtables are charged to that cache and flushed once
    they take half of it (RocksDB's write buffer manager), so blocks and memtables together
    stay within about the budget however many partitions the worker holds (the manager's
    limit is soft: a write flushes its own database's memtable once all of them together are
    over it; docs/guarantees.md#bounds)."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.cache = rocksdict.Cache(budget_bytes)
        self.write_buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            budget_bytes // 2, False, self.cache
        )


class ErasingOptions(RocksDBOptions):
    """Faust's RocksDB options with bounded memory (the worker's `RocksDBMemory`, and at most
    WRITE_BUFFERS x WRITE_BUFFER_BYTES of memtables per database, so that its write-ahead log
    stays as small), and a MANIFEST that RocksDB starts anew at every change of its files. The
    MANIFEST logs each SST file's first and last key, and keeps the log until it outgrows
    `max_manifest_file_size` (1 GB by default): an erased contact's id, the boundary of a file
    long compacted away, would stay there. A new MANIFEST holds only the live files; it costs
    one small write per flush or compaction."""

    # Read by Faust's as_options; class attributes, as this class replaces Faust's on the
    # options object Faust made (Table.__init__ above), which sets none of them itself.
    write_buffer_size = WRITE_BUFFER_BYTES
    max_write_buffer_number = WRITE_BUFFERS
    memory: RocksDBMemory  # set by Table.__init__ on the options object

    def as_options(self) -> Any:
        options = super().as_options()
        options.set_max_manifest_file_size(1)
        options.set_write_buffer_manager(self.memory.write_buffers)
        options.set_arena_block_size(ARENA_BLOCK_BYTES)
        # Faust's table options again (bloom filter, binary-search index), with the shared
        # cache in place of the one it makes per database of `block_cache_size` (2 GB).
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, block_based=True)
        table.set_block_cache(self.memory.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(table)
        return options


def _purge(store: Any, partition: int, keys: list[bytes]) -> None:
    """RocksDB keeps a deleted value in its write-ahead log and SST files until a flush and
    a compaction of that key range: run both now (erasures are rare: only the admin's), so
    the worker's data folder keeps nothing of an erased contact (the deletion's own
    tombstone goes with the compaction to the bottom level)."""
    if not (isinstance(store, RocksDBStore) and store.use_rocksdict) or not keys:
        return
    db = store._db_for_partition(partition)
    db.flush(True)
    db.compact_range(min(keys), max(keys) + b"\x00", bottommost())


def bottommost() -> rocksdict.CompactOptions:
    """A manual compaction that rewrites the last level too: only there are deleted and
    overwritten values dropped."""
    options = rocksdict.CompactOptions()
    options.set_bottommost_level_compaction(rocksdict.BottommostLevelCompaction.force())
    return options


def _write_local(store: Any, partition: int, records: list[Record]) -> None:
    """RocksDB gets one write batch per partition (as Faust's own changelog recovery writes
    it; a put per key cost more: bench/README.md); other stores a plain assignment per key.
    A None value deletes the key, as a tombstone does when the changelog is replayed."""
    if isinstance(store, RocksDBStore) and store.use_rocksdict:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        store._db_for_partition(partition).write(batch)
    else:
        for key, value in records:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value

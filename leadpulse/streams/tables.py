"""The contact and account tables: Faust tables of id -> state bytes (scoring.state,
scoring.accounts).

Faust decides which local RocksDB partition and which changelog partition a write goes to
from the *current event*. A batch from `take_events` mixes partitions, so every access runs
inside `partition_of(event)` for an event of the key's own partition; otherwise a key would
be stored under another partition and restored wrongly after a rebalance.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Generic, TypeVar

import rocksdict
from faust.stores.rocksdb import Store as RocksDBStore
from faust.streams import _current_event
from faust.types import TP

from leadpulse.scoring.accounts import AccountState, account_from_bytes, account_to_bytes
from leadpulse.scoring.erasure import Erasure, is_marker, marker_bytes, marker_from_bytes, marker_key
from leadpulse.scoring.state import ContactState, from_bytes, to_bytes
from leadpulse.streams.outbox import Outbox

S = TypeVar("S")


@contextmanager
def partition_of(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class StateTable(Generic[S]):
    """A Faust table of states kept as bytes, written a partition's batch at a time."""

    def __init__(
        self, table: Any, decode: Callable[[bytes], S], encode: Callable[[S], bytes], key: Callable[[S], str]
    ) -> None:
        self.table = table
        self.decode, self.encode, self.key = decode, encode, key

    def get(self, key: str, partition: int | None = None) -> S | None:
        data = self.read(key.encode(), partition)
        return None if data is None else self.decode(data)

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

    def put_many(
        self, partition: int, states: Iterable[S], outbox: Outbox, erased: dict[str, Erasure] | None = None
    ) -> None:
        """Write the local store now and queue one changelog record per state in `outbox`;
        run in `partition_of` an event of `partition`. Faust's `table[key] = value` would send
        each changelog record on its own; the persisted offset (where recovery resumes) is
        set the way Faust sets it, once the broker has the records. An erased contact's
        record is deleted (a tombstone in the changelog) and its marker stored."""
        self.put_encoded(partition, ((self.key(state), self.encode(state)) for state in states), outbox, erased)

    def put_encoded(
        self,
        partition: int,
        encoded: Iterable[tuple[str, bytes]],
        outbox: Outbox,
        erased: dict[str, Erasure] | None = None,
    ) -> None:
        """`put_many` of states already encoded (key, bytes): a caller that checked their size
        against the changelog's record limit encodes each once. Every record is checked
        before anything is written: RecordTooLarge leaves the store and the outbox as they were."""
        changelog = self.table.changelog_topic.get_topic_name()
        records: list[tuple[bytes, bytes | None]] = []
        for erased_key, erasure in (erased or {}).items():  # first: a contact back after its grace is stored after
            records.append((erased_key.encode(), None))
            records.append((marker_key(erased_key), marker_bytes(erasure)))
        records.extend((key.encode(), value) for key, value in encoded)
        for key, value in records:
            outbox.limits.check(changelog, key, value)
        for key, value in records:
            outbox.add(changelog, partition, key, value)
        store = self.table.data
        _write_local(store, partition, records)
        outbox.on_delivered(changelog, partition, partial(store.set_persisted_offset, TP(changelog, partition)))

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


class ContactTable(StateTable[ContactState]):
    """Contacts, and the erasure markers kept among them (scoring.erasure) under keys no
    contact id has, so that a marker moves with its contact's partition."""

    def __init__(self, table: Any) -> None:
        super().__init__(table, from_bytes, to_bytes, lambda state: state.contact_id)

    def erasure(self, contact_id: str, partition: int | None = None) -> Erasure | None:
        data = self.read(marker_key(contact_id), partition)
        return None if data is None else marker_from_bytes(data)


class AccountTable(StateTable[AccountState]):
    def __init__(self, table: Any) -> None:
        super().__init__(table, account_from_bytes, account_to_bytes, lambda state: state.account_id)


def _write_local(store: Any, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
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

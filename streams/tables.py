"""The contact table: Faust table of contact id -> scoring.state bytes.

Faust decides which local RocksDB partition and which changelog partition a write goes to
from the *current event*. A batch from `take_events` mixes partitions, so every access runs
inside `partition_of(event)` for an event of the key's own partition; otherwise a key would
be stored under another partition and restored wrongly after a rebalance.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust.streams import _current_event

from scoring.state import ContactState, from_bytes, to_bytes


@contextmanager
def partition_of(event: Any) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class ContactTable:
    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, contact_id: str) -> ContactState | None:
        data = self.table.get(contact_id.encode())
        return None if data is None else from_bytes(data)

    def put(self, state: ContactState) -> None:
        self.table[state.contact_id.encode()] = to_bytes(state)

    def items(self) -> Iterator[tuple[str, ContactState]]:
        for key, data in self.table.items():
            yield key.decode(), from_bytes(data)

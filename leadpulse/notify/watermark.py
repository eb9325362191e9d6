"""Which offset of each partition may be committed: pure bookkeeping of the alerts read and
not yet settled.

An alert is settled once every destination it is routed to has delivered it, skipped it
(too old, cooling down) or has its failure record acknowledged on the delivery-failures
topic. Alerts settle out of order (one destination is down, another is not), so the
committable offset of a partition is that of its lowest unsettled alert, or one past the
last alert read when all are settled: a restart resumes at the first alert some destination
still owes, and re-sends only alerts at or after it (at-least-once, same webhook-id).

Memory: one entry per unsettled alert, never more than the service's in-flight cap, since
fetching pauses at the cap (service.py)."""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


@dataclass
class _Partition:
    pending: list[int] = field(default_factory=list)  # heap of the unsettled offsets, with settled ones left in
    settled: set[int] = field(default_factory=set)  # settled offsets still in the heap
    next_offset: int | None = None  # one past the last offset read
    committed: int | None = None  # the last offset handed out by `committable`


class Watermarks(Generic[P]):
    """Per partition: the offsets read and not yet settled."""

    def __init__(self) -> None:
        self._partitions: dict[P, _Partition] = {}
        self._unsettled = 0

    def __len__(self) -> int:
        """Unsettled alerts over every partition: what the in-flight cap bounds."""
        return self._unsettled

    def read(self, partition: P, offset: int) -> None:
        """An alert at `offset` was read and is not settled yet (offsets are read in order)."""
        state = self._partitions.setdefault(partition, _Partition())
        heapq.heappush(state.pending, offset)
        state.next_offset = offset + 1
        self._unsettled += 1

    def skip(self, partition: P, offset: int) -> None:
        """An offset that needs nothing (not an alert any destination takes): settled as read."""
        self.read(partition, offset)
        self.settle(partition, offset)

    def settle(self, partition: P, offset: int) -> None:
        state = self._partitions.get(partition)
        if state is None or offset in state.settled:
            return  # a partition dropped on revocation: its alerts are another consumer's now
        state.settled.add(offset)
        self._unsettled -= 1
        while state.pending and state.pending[0] in state.settled:
            state.settled.discard(heapq.heappop(state.pending))

    def committable(self) -> dict[P, int]:
        """The offset to commit for each partition whose position moved since the last call."""
        moved: dict[P, int] = {}
        for partition, state in self._partitions.items():
            position = state.pending[0] if state.pending else state.next_offset
            if position is not None and position != state.committed:
                moved[partition] = position
                state.committed = position
        return moved

    def drop(self, partition: P) -> None:
        """Forget a partition (revoked: its unsettled alerts are re-read by its next owner)."""
        state = self._partitions.pop(partition, None)
        if state is not None:
            self._unsettled -= len(state.pending) - len(state.settled)

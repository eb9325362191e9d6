"""When to look at a contact again without a new event: a min-heap of due times.

Each contact is entered at the time its temperature would next drop (engine.next_cooling_ms),
so a timer tick pops only the contacts that are due instead of scanning the whole table;
a contact rescheduled later leaves a stale heap entry that is skipped when popped.
"""

from __future__ import annotations

import heapq


class CoolingSchedule:
    def __init__(self) -> None:
        self._due: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []

    def __len__(self) -> int:
        return len(self._due)

    def set(self, contact_id: str, due_ms: int | None) -> None:
        """(Re)schedule a contact; None removes it (cold contacts cannot cool further)."""
        if due_ms is None:
            self._due.pop(contact_id, None)
            return
        if self._due.get(contact_id) == due_ms:
            return
        self._due[contact_id] = due_ms
        heapq.heappush(self._heap, (due_ms, contact_id))
        if len(self._heap) > 4 * len(self._due) + 1024:
            self._compact()

    def pop_due(self, now_ms: int, limit: int) -> list[str]:
        """Up to `limit` contacts due at `now_ms`, earliest first, removed from the schedule."""
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now_ms and len(due) < limit:
            at, contact_id = heapq.heappop(self._heap)
            if self._due.get(contact_id) == at:
                del self._due[contact_id]
                due.append(contact_id)
        return due

    def clear(self) -> None:
        self._due.clear()
        self._heap.clear()

    def _compact(self) -> None:
        self._heap = [(at, contact_id) for contact_id, at in self._due.items()]
        heapq.heapify(self._heap)

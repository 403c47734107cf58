"""Deadlines of requests in flight, earliest first. Pure code: no clock, no event loop.

A heap of ``(when, request_id)`` tuples, compared in C (asyncio's own timers compare in Python,
one ``TimerHandle.__lt__`` call per step of the heap: a timer per request cost the asyncio
client a fifth of its CPU). Forgetting a request is a dict removal: its entry stays in the heap
and is skipped when it comes up, and once stale entries outnumber the live ones the heap is
built again from the live ones, so it never holds more than about twice what is in flight.
"""

from __future__ import annotations

import heapq

#: stale entries the heap may hold beyond twice the live ones before it is built again
SLACK = 1024


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._when: dict[int, float] = {}

    def __len__(self) -> int:
        """Requests with a deadline (not the heap's size)."""
        return len(self._when)

    def add(self, request_id: int, when: float) -> None:
        """Set (or move) the deadline of ``request_id``."""
        self._when[request_id] = when
        heapq.heappush(self._heap, (when, request_id))
        if len(self._heap) > 2 * len(self._when) + SLACK:
            self._heap = [(w, r) for r, w in self._when.items()]
            heapq.heapify(self._heap)

    def forget(self, request_id: int) -> None:
        self._when.pop(request_id, None)

    def next(self) -> float | None:
        """The earliest deadline, or None when no request has one."""
        heap = self._heap
        while heap and self._when.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)  # answered, or its deadline moved
        return heap[0][0] if heap else None

    def due(self, now: float) -> list[int]:
        """The requests whose deadline is ``now`` or earlier, earliest first; forgotten."""
        expired: list[int] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, request_id = heapq.heappop(heap)
            if self._when.get(request_id) == when:
                del self._when[request_id]
                expired.append(request_id)
        return expired

    def heap_size(self) -> int:
        """Entries in the heap, stale ones included (for tests)."""
        return len(self._heap)

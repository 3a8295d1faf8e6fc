"""One heap of deadlines for many keys (e.g. 100,000 subscriptions), with lazy deletion.

The glue re-arms one `loop.call_at(queue.peek_time())`; when it fires, `pop_due(now)` gives
the keys whose deadline has passed and the glue asks each owner for its new
`next_deadline()`, then `set`s it again. Setting a key again supersedes its old entry; the
stale heap entry is skipped when it reaches the top. When stale entries outnumber live
ones the heap is rebuilt, so memory stays O(live keys).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["DeadlineQueue"]

K = TypeVar("K", bound=Hashable)


class DeadlineQueue(Generic[K]):
    """`key -> deadline`; earliest first, ties in insertion order."""

    def __init__(self) -> None:
        self._live: dict[K, tuple[float, int]] = {}
        self._heap: list[tuple[float, int, K]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: object) -> bool:
        return key in self._live

    def get(self, key: K) -> float | None:
        entry = self._live.get(key)
        return None if entry is None else entry[0]

    def set(self, key: K, deadline: float | None) -> None:
        """Schedule (or reschedule) `key`; None cancels it."""
        if deadline is None:
            self.cancel(key)
            return
        self._seq += 1
        self._live[key] = (deadline, self._seq)
        heapq.heappush(self._heap, (deadline, self._seq, key))
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def cancel(self, key: K) -> None:
        self._live.pop(key, None)

    def _compact(self) -> None:
        self._heap = [(d, s, k) for k, (d, s) in self._live.items()]
        heapq.heapify(self._heap)

    def _drop_stale(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            deadline, seq, key = heap[0]
            if live.get(key) == (deadline, seq):
                return
            heapq.heappop(heap)

    def peek(self) -> tuple[float, K] | None:
        """The earliest live (deadline, key), or None when empty."""
        self._drop_stale()
        if not self._heap:
            return None
        deadline, _, key = self._heap[0]
        return deadline, key

    def peek_time(self) -> float | None:
        top = self.peek()
        return None if top is None else top[0]

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose deadline is <= now, earliest first."""
        out: list[K] = []
        while (top := self.peek()) is not None and top[0] <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            out.append(key)
        return out

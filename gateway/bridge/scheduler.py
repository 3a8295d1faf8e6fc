"""One timer for every subscription deadline (refreshes, expiries, Timer N, throttles).

A `DeadlineQueue` (one heap, lazy deletion) holds `key -> wall-clock time`; one
`loop.call_at` is armed at the earliest deadline. When it fires, the due keys are handed to
`fire(keys, now)`, which asks each owner for its next deadline and `set`s it again. There is
no task or sleep per subscription, so 100,000 subscriptions cost one heap and one timer.

Times are wall-clock seconds (`time.time()`), the clock the subscription records are
written in, so deadlines read back from the store after a restart mean the same instant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from gateway.sip.deadlines import DeadlineQueue

__all__ = ["Scheduler"]

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

# call_at with a delay this large is pointless: re-check at least this often (a wall-clock
# step, e.g. NTP, then only shifts deadlines by up to this much).
_MAX_SLEEP = 60.0


class Scheduler(Generic[K]):
    """`set(key, at)` / `cancel(key)`; `fire(due_keys, now)` runs on the event loop."""

    def __init__(
        self,
        fire: Callable[[list[K], float], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fire = fire
        self.clock = clock
        self._queue: DeadlineQueue[K] = DeadlineQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, key: object) -> bool:
        return key in self._queue

    def get(self, key: K) -> float | None:
        return self._queue.get(key)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._rearm()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop = self._armed_for = None

    def set(self, key: K, at: float | None) -> None:
        """Schedule (or move, or with None cancel) `key`."""
        self._queue.set(key, at)
        if at is not None and (self._armed_for is None or at < self._armed_for):
            self._rearm()

    def cancel(self, key: K) -> None:
        self._queue.cancel(key)

    def _rearm(self) -> None:
        if self._loop is None:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        at = self._queue.peek_time()
        self._armed_for = at
        if at is None:
            return
        delay = min(max(0.0, at - self.clock()), _MAX_SLEEP)
        self._handle = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._handle = None
        self._armed_for = None
        now = self.clock()
        due = self._queue.pop_due(now)
        if due:
            try:
                self._fire(due, now)
            except Exception:  # the owner's boundary failed: keep the timer alive
                log.exception("subscription timer callback failed")
        self._rearm()

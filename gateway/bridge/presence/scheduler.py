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
import gc
import logging
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from gateway.sip.deadlines import DeadlineQueue

__all__ = ["BurstFreezer", "Scheduler", "collect_and_freeze"]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.scheduler")

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


def collect_and_freeze() -> int:
    """One full collection (what is garbage now is freed, not pinned), then everything
    still alive goes to the collector's permanent generation; how many objects are frozen.

    Earlier freezes (start-up, a restore, a previous burst) are undone first, so the
    collection also reclaims cycles among objects frozen then that have died since (a
    subscription ended after its burst was frozen): frozen cyclic garbage lives until
    the next freeze at most, never for the process lifetime."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class BurstFreezer:
    """`gc.freeze()` once a burst of long-lived objects settles (issue 11).

    Subscriptions accepted at run time (10,000 watchers subscribing) live for hours, and
    every full collection walks them again: in a 10,000-watcher fan-out, 6 full passes took
    2.5 s of the gateway's 3.8 s of CPU. A restore freezes what it built
    (`presence.bulk_load`); this does the same for a burst: after `min_count` `added()`
    calls, once none came for `settle` seconds, `freeze` runs (a full collection first, so
    only live objects are frozen; objects freed by reference counting are still freed,
    and cycles among frozen objects that die are reclaimed at the next freeze, which
    unfreezes first)."""

    def __init__(
        self,
        *,
        settle: float,
        min_count: int,
        freeze: Callable[[], int] = collect_and_freeze,
    ) -> None:
        self.settle = settle
        self.min_count = min_count
        self._freeze = freeze
        self.pending = 0  # added since the last freeze
        self.freezes = 0
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def added(self) -> None:
        """One long-lived object graph was built (on the event loop)."""
        self.pending += 1
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._last = self._loop.time()
        if self.pending >= self.min_count and self._handle is None:
            self._handle = self._loop.call_at(self._last + self.settle, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        assert self._loop is not None
        self._handle = None
        due = self._last + self.settle
        if self._loop.time() < due:  # more came meanwhile: wait until they stop
            self._handle = self._loop.call_at(due, self._check)
            return
        n, self.pending = self.pending, 0
        self.freezes += 1
        frozen = self._freeze()
        log.info("long-lived objects frozen", extra={"fields": {"added": n, "frozen": frozen}})

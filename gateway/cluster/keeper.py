"""Claiming and renewing the cluster's leases: the asyncio glue of gateway.cluster.lease.

`LeaseKeeper` claims each of its lease names through the store (`Store.claim_lease`, one
atomic statement) when `next_attempt` says so, and answers `holds(name)` from the last
answer and the clock. `on_gain(name, callback)` runs `callback()` when this instance
becomes the owner (start, or takeover after the owner's lease lapsed), so that a service
can pick up the work its predecessor left in the store. `stop()` releases what it holds,
so another instance takes over at its next attempt instead of after the lapse.

`SoloLeases` is the single-process answer (no `[cluster]`): every lease is held, always.
A StoreError while claiming counts as "not held" until the next attempt succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from gateway.cluster.lease import LeasePolicy, holds, next_attempt
from gateway.logs import event
from gateway.store.api import Lease, Store, StoreError

__all__ = ["OFFLINE_QUEUE", "REGISTRAR_EXPIRY", "LeaseKeeper", "Leases", "SoloLeases"]

log = logging.getLogger("gateway.cluster")

REGISTRAR_EXPIRY = "registrar-expiry"  # the registrar's binding expiry sweep
OFFLINE_QUEUE = "offline-queue"  # the offline queues' deliveries, retries and expiry


class Leases(Protocol):
    """What services ask: may this instance run the timer `name` now?"""

    def holds(self, name: str) -> bool: ...

    def on_gain(self, name: str, callback: Callable[[], None]) -> None: ...


class SoloLeases:
    """One process: it holds every lease."""

    def holds(self, name: str) -> bool:
        return True

    def on_gain(self, name: str, callback: Callable[[], None]) -> None:
        return None


class LeaseKeeper:
    def __init__(
        self,
        store: Store,
        instance_id: str,
        names: Iterable[str],
        policy: LeasePolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.instance_id = instance_id
        self.names = tuple(names)
        self.policy = policy
        self._clock = clock
        self._leases: dict[str, Lease | None] = dict.fromkeys(self.names)
        self._due: dict[str, float] = dict.fromkeys(self.names, 0.0)
        self._gain: dict[str, list[Callable[[], None]]] = {n: [] for n in self.names}
        self._task: asyncio.Task[None] | None = None

    def holds(self, name: str) -> bool:
        return holds(self._leases.get(name), self.instance_id, self._clock(), self.policy)

    def owner(self, name: str) -> str | None:
        lease = self._leases.get(name)
        return None if lease is None else lease.owner

    def on_gain(self, name: str, callback: Callable[[], None]) -> None:
        self._gain[name].append(callback)

    def tick(self) -> float:
        """Claim the leases that are due; returns when the next one is."""
        now = self._clock()
        for name in self.names:
            if self._due[name] > now:
                continue
            before = self.holds(name)
            try:
                lease: Lease | None = self._store.claim_lease(
                    name, self.instance_id, now, self.policy.ttl
                )
            except StoreError as exc:
                event(log, logging.ERROR, "lease not claimed", lease=name, error=str(exc))
                lease = self._leases[name] if self.holds(name) else None
                self._leases[name] = lease
                self._due[name] = now + self.policy.renew_every
                continue
            self._leases[name] = lease
            self._due[name] = next_attempt(lease, self.instance_id, now, self.policy)
            after = self.holds(name)
            if after != before:
                event(
                    log,
                    logging.INFO,
                    "lease taken" if after else "lease lost",
                    lease=name,
                    owner=None if lease is None else lease.owner,
                )
            if after and not before:
                for callback in list(self._gain[name]):
                    try:
                        callback()
                    except Exception:  # error boundary: one service must not stop the keeper
                        log.exception("lease callback failed", extra={"fields": {"lease": name}})
        return min(self._due.values(), default=now + self.policy.renew_every)

    async def start(self) -> None:
        self.tick()  # the first claim before the services start
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.tick() - self._clock()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for name in self.names:
            if self.holds(name):
                with contextlib.suppress(StoreError):
                    self._store.release_lease(name, self.instance_id)
            self._leases[name] = None

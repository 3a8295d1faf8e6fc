"""BurstFreezer (issue 11): gc.freeze() once a burst of subscriptions settles.

The freeze function is a recorder except in the last test; waits are bounded and wait for
conditions (the only time comparisons are lower bounds the event loop guarantees)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

from gateway.bridge.presence.scheduler import BurstFreezer, collect_and_freeze

LIMIT = 10.0


class Recorder:
    def __init__(self) -> None:
        self.at: list[float] = []

    def __call__(self) -> int:
        self.at.append(asyncio.get_running_loop().time())
        return 0


async def until(cond: Callable[[], object]) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(loop(), LIMIT)


async def test_a_small_burst_is_never_frozen() -> None:
    rec = Recorder()
    f = BurstFreezer(settle=0.01, min_count=5, freeze=rec)
    for _ in range(4):
        f.added()
    assert f._handle is None  # nothing armed below min_count
    await asyncio.sleep(0.05)
    assert rec.at == [] and f.pending == 4


async def test_freezes_once_after_the_burst_went_quiet() -> None:
    rec = Recorder()
    loop = asyncio.get_running_loop()
    f = BurstFreezer(settle=0.2, min_count=3, freeze=rec)
    for _ in range(3):
        f.added()
    assert rec.at == []  # never from within added()
    await asyncio.sleep(0.1)
    f.added()  # the burst goes on: the freeze moves after this one
    last = loop.time()
    await until(lambda: rec.at)
    assert rec.at[0] >= last + 0.2 - 0.01
    assert f.pending == 0 and f.freezes == 1
    await asyncio.sleep(0.3)
    assert len(rec.at) == 1  # nothing more added: no second freeze


async def test_the_next_burst_counts_from_zero() -> None:
    rec = Recorder()
    f = BurstFreezer(settle=0.01, min_count=2, freeze=rec)
    f.added()
    f.added()
    await until(lambda: rec.at)
    f.added()
    await asyncio.sleep(0.05)
    assert len(rec.at) == 1 and f.pending == 1
    f.added()
    await until(lambda: len(rec.at) == 2)


async def test_stop_cancels_a_pending_freeze() -> None:
    rec = Recorder()
    f = BurstFreezer(settle=0.01, min_count=1, freeze=rec)
    f.added()
    f.stop()
    await asyncio.sleep(0.05)
    assert rec.at == []


def test_collect_and_freeze_frees_garbage_and_freezes_the_living() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

    before = gc.get_freeze_count()
    alive = Node()
    garbage = Node()
    del garbage
    try:
        frozen = collect_and_freeze()
        assert frozen == gc.get_freeze_count() > before
        assert not any(o is alive for o in gc.get_objects())  # permanent: never walked
    finally:
        gc.unfreeze()  # back into the generations, where get_objects sees them
    nodes = [o for o in gc.get_objects() if type(o) is Node]
    # the cycle was collected before the freeze, not pinned in the permanent generation
    assert len(nodes) == 1 and nodes[0] is alive


def test_a_frozen_cycle_that_dies_is_reclaimed_at_the_next_freeze() -> None:
    import weakref

    class Node:
        def __init__(self) -> None:
            self.me = self  # only the collector frees it

    sub = Node()
    ref = weakref.ref(sub)
    try:
        collect_and_freeze()  # `sub` is alive: frozen with everything else
        del sub  # the subscription ends after its burst was frozen: cyclic garbage
        gc.collect()
        assert ref() is not None  # frozen objects are not walked, so not yet freed
        collect_and_freeze()  # the next freeze unfreezes first and collects
        assert ref() is None
    finally:
        gc.unfreeze()

"""gateway.heap: malloc_trim hands held free pages back; the app's trim loop runs it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from gateway import heap
from gateway.app import trim_heap

pytestmark = pytest.mark.skipif(not heap.available(), reason="glibc only")


def brk_rss() -> int:
    """Resident bytes of this process's main glibc heap ([heap] in smaps)."""
    rss, in_heap = 0, False
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5:
                in_heap = head[-1] == "[heap]"
            elif in_heap and head and head[0] == "Rss:":
                rss += int(head[1]) * 1024
    return rss


def test_trim_returns_free_pages_held_inside_the_heap() -> None:
    # 64 KiB buffers sit in the heap (below the mmap threshold); freeing every other one
    # leaves holes that the heap keeps resident: no automatic top trim can reach them
    chunks = [bytearray(64 * 1024) for _ in range(400)]
    del chunks[::2]
    held = heap.heap_stats()
    assert held is not None and held.free >= 150 * 64 * 1024
    before = brk_rss()
    assert heap.trim()
    after = brk_rss()
    assert before - after >= 100 * 64 * 1024, (before, after)
    # the bytes in use are untouched: trimming is not freeing
    now = heap.heap_stats()
    assert now is not None and abs(now.in_use - held.in_use) < 64 * 1024
    assert len(chunks) == 200 and all(len(c) == 64 * 1024 for c in chunks)


async def test_trim_loop_trims_at_its_interval(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.app")

    def trims() -> int:
        return sum(1 for r in caplog.records if r.getMessage() == "heap trimmed")

    task = asyncio.create_task(trim_heap(0.05))
    for _ in range(200):  # three rounds, however slow the machine (10 s at most)
        if trims() >= 3:
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert trims() >= 3
    fields = next(r for r in caplog.records if r.getMessage() == "heap trimmed").fields  # type: ignore[attr-defined]
    assert set(fields) == {"returned", "heap_free", "heap_in_use"}

"""The C heap under the Python allocator: glibc's counters, `malloc_trim`, live blocks.

RSS alone cannot tell a leak from memory an allocator keeps: a freed chunk in the
middle of glibc's heap stays resident. `mallinfo2()` separates the two (bytes in use,
bytes free inside the heap, bytes in mmapped chunks); `malloc_trim(0)` hands every
whole free page back to the kernel (glibc >= 2.8 walks all of each heap, not only its
top); `sys.getallocatedblocks()` counts the Python objects' small blocks (pymalloc
serves them from its own mmapped arenas, outside glibc's counters).

glibc-only; elsewhere (musl, macOS) `heap_stats()` returns None and `trim()` does
nothing, so callers need no platform checks. docs/reliability.md §6: why the gateway
trims.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass
from typing import Final


class _Mallinfo2(ctypes.Structure):
    # struct mallinfo2, <malloc.h>, glibc >= 2.33: ten size_t fields.
    _fields_ = [
        ("arena", ctypes.c_size_t),  # non-mmapped bytes obtained from the system
        ("ordblks", ctypes.c_size_t),  # free chunks
        ("smblks", ctypes.c_size_t),  # free fastbin chunks
        ("hblks", ctypes.c_size_t),  # mmapped chunks
        ("hblkhd", ctypes.c_size_t),  # bytes in mmapped chunks
        ("usmblks", ctypes.c_size_t),  # unused (always 0)
        ("fsmblks", ctypes.c_size_t),  # bytes in free fastbin chunks
        ("uordblks", ctypes.c_size_t),  # bytes in use (non-mmapped)
        ("fordblks", ctypes.c_size_t),  # free bytes (non-mmapped)
        ("keepcost", ctypes.c_size_t),  # releasable bytes at the top
    ]


@dataclass(frozen=True, slots=True)
class HeapStats:
    """One reading of glibc's heap, in bytes, plus the Python allocator's block count."""

    arena: int  # non-mmapped heap obtained from the kernel, all arenas
    in_use: int  # of which allocated
    free: int  # of which free (fragmentation, or room for the next burst)
    mmapped: int  # large allocations served by mmap, returned on free
    python_blocks: int  # sys.getallocatedblocks(): live pymalloc blocks


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallinfo2.restype = _Mallinfo2
        libc.mallinfo2.argtypes = []
        libc.malloc_trim.restype = ctypes.c_int
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc, or glibc < 2.33
        return None
    return libc


_LIBC: Final = _load()


def available() -> bool:
    """True where glibc's counters and `malloc_trim` can be used."""
    return _LIBC is not None


def heap_stats() -> HeapStats | None:
    """glibc's heap counters now (a walk over the arenas' free lists: cheap at our sizes)."""
    if _LIBC is None:
        return None
    info = _LIBC.mallinfo2()
    return HeapStats(
        arena=int(info.arena),
        in_use=int(info.uordblks),
        free=int(info.fordblks),
        mmapped=int(info.hblkhd),
        python_blocks=sys.getallocatedblocks(),
    )


def trim() -> bool:
    """Hand whole free heap pages back to the kernel; True when some memory was returned.
    ctypes drops the GIL for the call: run it off the event loop (asyncio.to_thread)."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(0))

"""A bounded TTL cache with LRU eviction; time is an argument, never read here (pure).

Positive and negative answers (RFC 2308) are both plain values with a TTL; the caller
decides what a value means. TTLs are clamped to `[0, max_ttl]` (and `max_negative_ttl`
for negative entries, RFC 2308 §5 recommends 1-3 hours at most); a TTL of 0 means "do
not cache" (RFC 1035 §3.2.1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["CacheStats", "TtlCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(slots=True)
class CacheStats:
    hits: int = 0
    misses: int = 0
    expired: int = 0  # misses because the entry's TTL had run out
    evicted: int = 0  # dropped to stay within the size bound


@dataclass(frozen=True, slots=True)
class _Entry(Generic[V]):
    value: V
    expires: float
    negative: bool


class TtlCache(Generic[K, V]):
    """`get(key, now)` / `put(key, value, ttl, now)`; at most `size` entries (LRU)."""

    def __init__(
        self, size: int, *, max_ttl: float = 86400.0, max_negative_ttl: float = 3600.0
    ) -> None:
        if size < 0:
            raise ValueError(f"cache size must be >= 0, not {size}")
        self.size = size
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.stats = CacheStats()
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """The live value for `key`, or None (missing or expired: expired ones are dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        if now >= entry.expires:
            del self._entries[key]
            self.stats.misses += 1
            self.stats.expired += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry.value

    def remaining(self, key: K, now: float) -> float | None:
        """Seconds `key` stays live (None if missing or expired); no effect on stats/LRU."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires:
            return None
        return entry.expires - now

    def put(self, key: K, value: V, ttl: float, now: float, *, negative: bool = False) -> bool:
        """Store `value` for `ttl` seconds (clamped); False when not stored (TTL 0, size 0)."""
        cap = self.max_negative_ttl if negative else self.max_ttl
        ttl = min(ttl, cap)
        if ttl <= 0 or self.size == 0:
            self._entries.pop(key, None)
            return False
        self._entries[key] = _Entry(value, now + ttl, negative)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
            self.stats.evicted += 1
        return True

    def purge(self, now: float) -> int:
        """Drop every expired entry; how many were dropped."""
        dead = [k for k, e in self._entries.items() if now >= e.expires]
        for k in dead:
            del self._entries[k]
        return len(dead)

    def clear(self) -> None:
        self._entries.clear()

"""`Memo`: the one bounded cache of the gateway's fast paths (pure, no I/O).

A fast path that remembers the result of a pure function of its key (a JID text that
parsed, a URI's address, a header name's canonical form, a trust decision) keeps it in a
`Memo`: successes only (an exception raised by `build` is not remembered: the same input
fails again, the same way), bounded by `limit` entries, and forgotten all at once when the
bound is reached, so that a peer sending ever new keys costs one `clear()` per `limit`
keys instead of an eviction per key. The results must be immutable: they are shared.

The hot lookup is `memo.peek(key)`, a plain `dict.get` bound once; `memo.get(key, build)`
is the convenient form. `memoize(limit)` wraps a one-argument pure function.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Memo", "memoize"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Successful results of a pure function of `K`, at most `limit`, cleared when full."""

    __slots__ = ("_data", "limit", "peek")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a memo holds at least one entry, not {limit}")
        self.limit = limit
        self._data: dict[K, V] = {}
        # `dict.get` of the live mapping: `clear()` empties it in place, never replaces it.
        self.peek: Callable[[K], V | None] = self._data.get

    def put(self, key: K, value: V) -> V:
        """Remember `value` for `key` (emptying the memo first when it is full)."""
        data = self._data
        if len(data) >= self.limit and key not in data:
            data.clear()
        data[key] = value
        return value

    def get(self, key: K, build: Callable[[K], V]) -> V:
        """The remembered value, or `build(key)` remembered; `build`'s exception propagates."""
        value = self._data.get(key)
        if value is None:
            value = self.put(key, build(key))
        return value

    def clear(self) -> None:
        self._data.clear()

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of what is remembered (for tables walked at stop, e.g. departures)."""
        return list(self._data.items())

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


def memoize(limit: int) -> Callable[[Callable[[K], V]], Callable[[K], V]]:
    """Decorate a pure one-argument function whose results are never None: a `Memo` in
    front of it (reachable as the wrapper's `memo` attribute, for tests and metrics)."""

    def wrap(fn: Callable[[K], V]) -> Callable[[K], V]:
        memo: Memo[K, V] = Memo(limit)
        peek, put = memo.peek, memo.put

        def cached(key: K) -> V:
            value = peek(key)
            if value is None:
                value = put(key, fn(key))
            return value

        cached.memo = memo  # type: ignore[attr-defined]
        cached.__wrapped__ = fn  # type: ignore[attr-defined]
        cached.__doc__ = fn.__doc__
        cached.__name__ = getattr(fn, "__name__", "cached")
        return cached

    return wrap

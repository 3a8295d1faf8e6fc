"""Token-bucket rate limits per source address and per user, pure (time is an argument).

Kinds: `register-failure` (failed REGISTER authentications: charged after a failure,
checked before processing), `message` and `subscribe` (charged per request). Each kind has
one bucket per source address (IPv6 sources are grouped by /64: one host usually owns a
whole /64) and one per user. A request is let through only if both buckets have a token;
otherwise the answer is 503 with `Retry-After` (the time until both refill one token,
rounded up), and the caller logs it.

Memory is bounded: at most `max_keys` buckets, least recently used evicted first. An
evicted bucket comes back full, so eviction can only be lenient, never lock anyone out.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["KINDS", "Kind", "Limit", "RateLimitConfig", "RateLimiter", "Verdict"]

Kind = Literal["register-failure", "message", "subscribe"]
KINDS: tuple[Kind, ...] = ("register-failure", "message", "subscribe")


@dataclass(frozen=True)
class Limit:
    """`burst` tokens, refilled at `rate` tokens per second; burst 0 disables the limit."""

    burst: float
    rate: float

    def __post_init__(self) -> None:
        if self.burst < 0 or self.rate <= 0:
            raise ValueError("need burst >= 0 and rate > 0")


@dataclass(frozen=True)
class RateLimitConfig:
    """Defaults: 10 failed REGISTERs per address then one per 30 s (5 per user, one per
    60 s); MESSAGE 50 then 10/s per address, 30 then 5/s per user; SUBSCRIBE 50 then 5/s
    per address, 20 then 2/s per user."""

    per_source: Mapping[Kind, Limit] = field(
        default_factory=lambda: {
            "register-failure": Limit(10, 1 / 30),
            "message": Limit(50, 10),
            "subscribe": Limit(50, 5),
        },
        hash=False,
    )
    per_user: Mapping[Kind, Limit] = field(
        default_factory=lambda: {
            "register-failure": Limit(5, 1 / 60),
            "message": Limit(30, 5),
            "subscribe": Limit(20, 2),
        },
        hash=False,
    )
    max_keys: int = 100_000
    ipv6_prefix: int = 64


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds for Retry-After when not allowed
    limited_by: str | None = None  # "source" or "user"


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp

    def refill(self, limit: Limit, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(limit.burst, self.tokens + (now - self.stamp) * limit.rate)
            self.stamp = now


class RateLimiter:
    def __init__(self, config: RateLimitConfig | None = None) -> None:
        self.config = config or RateLimitConfig()
        self._buckets: OrderedDict[tuple[str, str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def _source_key(self, source: str) -> str:
        try:
            addr = ipaddress.ip_address(source.strip("[]"))
        except ValueError:
            return source
        if isinstance(addr, ipaddress.IPv6Address):
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
            return str(ipaddress.IPv6Network((addr, self.config.ipv6_prefix), strict=False))
        return str(addr)

    def _keys(
        self, kind: Kind, source: str, user: str | None
    ) -> list[tuple[tuple[str, str, str], Limit]]:
        out: list[tuple[tuple[str, str, str], Limit]] = []
        limit = self.config.per_source.get(kind)
        if limit is not None and limit.burst > 0:
            out.append(((kind, "source", self._source_key(source)), limit))
        limit = self.config.per_user.get(kind)
        if user is not None and limit is not None and limit.burst > 0:
            out.append(((kind, "user", user), limit))
        return out

    def _bucket(self, key: tuple[str, str, str], limit: Limit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(limit.burst, now)
            while len(self._buckets) > self.config.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.refill(limit, now)
        return bucket

    def allowed(self, kind: Kind, *, source: str, user: str | None = None, now: float) -> Verdict:
        """Would a request pass now? Consumes nothing (for `register-failure`, ask before
        processing a REGISTER and `charge` after it failed)."""
        worst: tuple[float, str] | None = None
        for key, limit in self._keys(kind, source, user):
            bucket = self._buckets.get(key)
            if bucket is None:
                continue
            bucket.refill(limit, now)
            if bucket.tokens < 1:
                wait = (1 - bucket.tokens) / limit.rate
                if worst is None or wait > worst[0]:
                    worst = (wait, key[1])
        if worst is None:
            return Verdict(True)
        return Verdict(False, max(1, math.ceil(worst[0])), worst[1])

    def charge(self, kind: Kind, *, source: str, user: str | None = None, now: float) -> None:
        """Take one token from each bucket (never below zero)."""
        for key, limit in self._keys(kind, source, user):
            bucket = self._bucket(key, limit, now)
            bucket.tokens = max(0.0, bucket.tokens - 1)

    def check(self, kind: Kind, *, source: str, user: str | None = None, now: float) -> Verdict:
        """`allowed`, and if so `charge`: one call per MESSAGE or SUBSCRIBE."""
        verdict = self.allowed(kind, source=source, user=user, now=now)
        if verdict.allowed:
            self.charge(kind, source=source, user=user, now=now)
        return verdict

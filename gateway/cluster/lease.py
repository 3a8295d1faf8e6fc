"""Leases: which live instance runs a timer (issue 21, docs/cluster.md "Leases"). Pure.

A lease is a row of the store's `leases` table: a name ("registrar-expiry",
"offline-queue"), the instance id of its owner and the wall-clock time it lapses. Every
store applies `claim` atomically (one conditional upsert): an instance gets the lease when
it is free, already its own, or lapsed. The owner renews it every `renew_every` seconds;
it acts on it only while `holds` says so, which stops `margin` seconds before the lapse,
so that a paused owner stops before another instance may take over (clock skew between
machines must stay below `margin`). Another instance tries again at the lapse time: a
killed owner (kill -9, no release) is replaced at most `ttl` seconds after its last renewal.

`claim_lease(name, owner, now, ttl)` of every store returns the lease after the attempt:
`claim` is its rule (MemoryStore calls it; the SQL stores say it in one upsert).
Time is an input: every function takes `now`; the asyncio glue is gateway.cluster.keeper.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.api import Lease

__all__ = ["Lease", "LeasePolicy", "claim", "holds", "next_attempt"]


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    ttl: float = 15.0  # a renewal keeps the lease this long
    renew_every: float = 5.0  # the owner renews this often (below ttl - margin)
    margin: float = 3.0  # the owner stops acting this long before the lapse

    def __post_init__(self) -> None:
        if not 0 < self.renew_every < self.ttl - self.margin or self.margin < 0:
            raise ValueError(
                f"lease timing needs 0 < renew_every < ttl - margin: {self.renew_every},"
                f" {self.ttl}, {self.margin}"
            )


def claim(current: Lease | None, name: str, me: str, now: float, ttl: float) -> Lease | None:
    """The lease `me` gets by claiming at `now`: the store's compare-and-set rule.
    None: another instance holds it and it has not lapsed."""
    if current is None or current.owner == me or current.expires_at <= now:
        return Lease(name, me, now + ttl)
    return None


def holds(lease: Lease | None, me: str, now: float, policy: LeasePolicy) -> bool:
    """May `me` act on the lease now (owner, and not within `margin` of its lapse)?"""
    return lease is not None and lease.owner == me and now < lease.expires_at - policy.margin


def next_attempt(lease: Lease | None, me: str, now: float, policy: LeasePolicy) -> float:
    """When to claim again: the owner at its renewal time, another instance when the
    owner's lease lapses (or at the renewal period, whichever comes first)."""
    if lease is None or lease.owner == me:
        return now + policy.renew_every
    return max(now, min(lease.expires_at, now + policy.renew_every))

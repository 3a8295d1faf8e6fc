"""Leases of a cluster (issue 21, docs/cluster.md): the pure rules, the stores' atomic
claim (MemoryStore and SQLite here; PostgreSQL in tests/integration/test_cluster.py) and
the keeper's takeover when an owner stops renewing (its process was killed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cluster.keeper import LeaseKeeper, SoloLeases
from gateway.cluster.lease import LeasePolicy, claim, holds, next_attempt
from gateway.store.api import Lease, Store
from gateway.store.memory import MemoryStore
from gateway.store.sqlite import SqliteStore

pytestmark = pytest.mark.unit

POLICY = LeasePolicy(ttl=15.0, renew_every=5.0, margin=3.0)


def test_claim_free_mine_or_lapsed_only() -> None:
    assert claim(None, "x", "a", 100.0, 15.0) == Lease("x", "a", 115.0)
    mine = Lease("x", "a", 110.0)
    assert claim(mine, "x", "a", 105.0, 15.0) == Lease("x", "a", 120.0)  # renewal
    theirs = Lease("x", "b", 110.0)
    assert claim(theirs, "x", "a", 109.9, 15.0) is None  # live: refused
    assert claim(theirs, "x", "a", 110.0, 15.0) == Lease("x", "a", 125.0)  # lapsed


def test_holds_stops_margin_before_the_lapse() -> None:
    lease = Lease("x", "a", 115.0)
    assert holds(lease, "a", 100.0, POLICY)
    assert holds(lease, "a", 111.9, POLICY)
    assert not holds(lease, "a", 112.0, POLICY)  # within the margin: another may claim soon
    assert not holds(lease, "b", 100.0, POLICY)
    assert not holds(None, "a", 100.0, POLICY)


def test_next_attempt_owner_renews_others_wait_for_the_lapse() -> None:
    assert next_attempt(Lease("x", "a", 115.0), "a", 100.0, POLICY) == 105.0
    assert next_attempt(Lease("x", "b", 103.0), "a", 100.0, POLICY) == 103.0
    assert next_attempt(Lease("x", "b", 115.0), "a", 100.0, POLICY) == 105.0
    assert next_attempt(None, "a", 100.0, POLICY) == 105.0


def test_policy_rejects_renewals_that_could_lapse() -> None:
    with pytest.raises(ValueError, match="renew_every"):
        LeasePolicy(ttl=10.0, renew_every=8.0, margin=3.0)


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.floats(min_value=0.0, max_value=5.0)),
        max_size=40,
    )
)
def test_never_two_holders_at_once(steps: list[tuple[str, float]]) -> None:
    """Whatever order instances claim in, at any time at most one of them `holds`."""
    current: Lease | None = None
    now = 0.0
    for who, dt in steps:
        now += dt
        got = claim(current, "x", who, now, POLICY.ttl)
        if got is not None:
            current = got
        assert sum(holds(current, me, now, POLICY) for me in "abc") <= 1


def stores(tmp_path: Path) -> list[Store]:
    return [MemoryStore(), SqliteStore(tmp_path / "s.sqlite3")]


@pytest.mark.parametrize("kind", [0, 1], ids=["memory", "sqlite"])
def test_store_claim_is_the_pure_rule(tmp_path: Path, kind: int) -> None:
    store = stores(tmp_path)[kind]
    assert store.claim_lease("x", "a", 100.0, 15.0) == Lease("x", "a", 115.0)
    assert store.claim_lease("x", "b", 110.0, 15.0) == Lease("x", "a", 115.0)  # refused
    assert store.claim_lease("x", "a", 110.0, 15.0) == Lease("x", "a", 125.0)  # renewed
    assert store.claim_lease("x", "b", 125.0, 15.0) == Lease("x", "b", 140.0)  # lapsed
    store.release_lease("x", "a")  # not a's any more: nothing happens
    assert store.claim_lease("x", "a", 126.0, 15.0) == Lease("x", "b", 140.0)
    store.release_lease("x", "b")
    assert store.claim_lease("x", "a", 126.0, 15.0) == Lease("x", "a", 141.0)
    assert store.claim_lease("y", "b", 126.0, 15.0) == Lease("y", "b", 141.0)  # per name
    store.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keeper_takeover_after_the_owner_stops_renewing() -> None:
    store, clock = MemoryStore(), Clock()
    a = LeaseKeeper(store, "a", ("sweep",), POLICY, clock=clock)
    b = LeaseKeeper(store, "b", ("sweep",), POLICY, clock=clock)
    gained: list[str] = []
    b.on_gain("sweep", lambda: gained.append("b"))
    a.tick()
    b.tick()
    assert a.holds("sweep") and not b.holds("sweep") and b.owner("sweep") == "a"
    for _ in range(6):  # a renews, b keeps trying: nothing changes
        clock.now += POLICY.renew_every
        a.tick()
        b.tick()
        assert a.holds("sweep") and not b.holds("sweep")
    # a is killed (no release): it stops renewing; b waits for the lapse
    last = clock.now
    clock.now = last + POLICY.ttl - POLICY.margin
    assert not a.holds("sweep")  # a would have stopped acting by itself
    b.tick()
    assert not b.holds("sweep") and gained == []
    clock.now = last + POLICY.ttl
    b.tick()
    assert b.holds("sweep") and gained == ["b"]
    # the restarted instance (same id or a new one) does not take it back
    c = LeaseKeeper(store, "c", ("sweep",), POLICY, clock=clock)
    c.tick()
    assert not c.holds("sweep") and c.owner("sweep") == "b"


async def test_keeper_stop_releases_for_an_immediate_takeover() -> None:
    store, clock = MemoryStore(), Clock()
    a = LeaseKeeper(store, "a", ("sweep",), POLICY, clock=clock)
    await a.start()
    assert a.holds("sweep")
    await a.stop()
    assert not a.holds("sweep")
    b = LeaseKeeper(store, "b", ("sweep",), POLICY, clock=clock)
    b.tick()
    assert b.holds("sweep")


def test_keeper_store_failure_is_not_held() -> None:
    store, clock = MemoryStore(), Clock()
    a = LeaseKeeper(store, "a", ("sweep",), POLICY, clock=clock)
    a.tick()
    store.close()  # every call now raises StoreError
    clock.now += POLICY.renew_every
    a.tick()
    assert a.holds("sweep")  # still within what it was granted
    clock.now += POLICY.ttl
    a.tick()
    assert not a.holds("sweep")


def test_solo_holds_everything() -> None:
    assert SoloLeases().holds("anything")

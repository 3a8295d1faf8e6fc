"""Token-bucket rate limits: per source and per user, time as input, bounded memory."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.registrar.ratelimit import Limit, RateLimitConfig, RateLimiter, Verdict

SOURCE, USER = Limit(3, 1.0), Limit(2, 0.5)


def limiter(source: Limit = SOURCE, user: Limit = USER, **kw: int) -> RateLimiter:
    cfg = RateLimitConfig(
        per_source={"message": source, "register-failure": Limit(2, 1 / 30)},
        per_user={"message": user},
        **kw,
    )
    return RateLimiter(cfg)


def test_burst_then_refused_with_retry_after_then_refilled() -> None:
    rl = limiter()
    assert [rl.check("message", source="192.0.2.1", now=0.0).allowed for _ in range(4)] == [
        True, True, True, False,
    ]  # fmt: skip
    assert rl.check("message", source="192.0.2.1", now=0.0) == Verdict(False, 1, "source")
    assert rl.check("message", source="192.0.2.1", now=1.0).allowed  # one token back
    assert not rl.check("message", source="192.0.2.1", now=1.0).allowed
    assert rl.check("message", source="192.0.2.2", now=1.0).allowed  # other source


def test_user_bucket_and_longest_wait_reported() -> None:
    rl = limiter()
    assert rl.check("message", source="192.0.2.1", user="romeo", now=0.0).allowed
    assert rl.check("message", source="192.0.2.2", user="romeo", now=0.0).allowed
    v = rl.check("message", source="192.0.2.3", user="romeo", now=0.0)
    assert v == Verdict(False, 2, "user")  # 1 token at 0.5/s
    assert rl.check("message", source="192.0.2.3", user="juliet", now=0.0).allowed


def test_refused_requests_do_not_consume() -> None:
    rl = limiter(source=Limit(1, 1.0))
    assert rl.check("message", source="192.0.2.1", now=0.0).allowed
    for _ in range(100):
        assert not rl.check("message", source="192.0.2.1", now=0.5).allowed
    assert rl.check("message", source="192.0.2.1", now=1.0).allowed


def test_register_failures_checked_before_charged_after() -> None:
    rl = limiter()
    src = "198.51.100.4"
    for now in (0.0, 1.0):
        assert rl.allowed("register-failure", source=src, now=now).allowed
        rl.charge("register-failure", source=src, now=now)
    v = rl.allowed("register-failure", source=src, now=2.0)
    assert not v.allowed and v.retry_after == 28  # 30 s per token, 1 s refilled... at t=2
    assert rl.allowed("register-failure", source=src, now=31.0).allowed
    assert rl.allowed("subscribe", source=src, now=2.0).allowed  # other kind, no limit set


def test_ipv6_grouped_by_prefix_and_mapped_ipv4() -> None:
    rl = limiter(source=Limit(1, 1.0))
    assert rl.check("message", source="2001:db8:1:2::1", now=0.0).allowed
    assert not rl.check("message", source="2001:db8:1:2:ffff::9", now=0.0).allowed
    assert rl.check("message", source="2001:db8:1:3::1", now=0.0).allowed
    assert rl.check("message", source="192.0.2.9", now=0.0).allowed
    assert not rl.check("message", source="::ffff:192.0.2.9", now=0.0).allowed


def test_zero_burst_disables() -> None:
    rl = limiter(source=Limit(0, 1.0), user=Limit(0, 1.0))
    assert all(
        rl.check("message", source="192.0.2.1", user="u", now=0.0).allowed for _ in range(50)
    )
    assert len(rl) == 0


def test_memory_is_bounded_lru() -> None:
    rl = limiter(source=Limit(1, 0.001), max_keys=100)
    for n in range(1000):
        rl.check("message", source=f"10.0.{n // 256}.{n % 256}", now=0.0)
    assert len(rl) == 100
    # The most recent keys are kept: still refused.
    assert not rl.check("message", source="10.0.3.231", now=0.0).allowed
    # An evicted one comes back full (lenient, never a lock-out).
    assert rl.check("message", source="10.0.0.0", now=0.0).allowed


def test_bad_limits_refused() -> None:
    with pytest.raises(ValueError):
        Limit(1, 0)
    with pytest.raises(ValueError):
        Limit(-1, 1)


def test_defaults_cover_all_kinds() -> None:
    rl = RateLimiter()
    for kind in ("register-failure", "message", "subscribe"):
        assert rl.check(kind, source="192.0.2.1", user="u", now=0.0).allowed


@given(st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200))
@settings(max_examples=200)
def test_property_never_more_than_burst_plus_refill(gaps: list[float]) -> None:
    rl = limiter(source=Limit(3, 2.0))
    now, passed = 0.0, 0
    for gap in gaps:
        now += gap
        v = rl.check("message", source="192.0.2.1", now=now)
        passed += v.allowed
        if not v.allowed:
            assert v.retry_after >= 1
    assert passed <= 3 + 2.0 * now + 1e-9

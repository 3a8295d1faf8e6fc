"""The offline queue's pure policy (gateway/bridge/offline/policy.py, docs/offline.md):
quota and expiry with time as an input, and what each delivery outcome means; Hypothesis
for the invariants (quota never exceeded, delivery in store order whatever the outcomes)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.bridge.offline.policy import (
    Admitted,
    Delivered,
    OverQuota,
    QueuePolicy,
    Rejected,
    Retry,
    Usage,
    Wait,
    admit,
    after_attempt,
    backoff,
    split_expired,
)

pytestmark = pytest.mark.unit

POLICY = QueuePolicy(max_messages=3, max_bytes=100, max_age=60.0, retry_min=2.0, retry_max=30.0)


@dataclass(frozen=True)
class M:
    name: str
    size: int
    expires_at: float


def test_admit_sets_the_expiry_from_max_age() -> None:
    assert admit(POLICY, Usage(), 10, now=1000.0) == Admitted(1060.0)


def test_count_quota_names_the_limit() -> None:
    queue = [M("a", 1, 2000.0)] * 3
    verdict = admit(POLICY, Usage.of(queue), 1, now=1000.0)
    assert isinstance(verdict, OverQuota) and "3 messages" in verdict.text


def test_byte_quota_names_the_limit() -> None:
    verdict = admit(POLICY, Usage(1, 95), 6, now=1000.0)
    assert isinstance(verdict, OverQuota) and "100 bytes" in verdict.text
    assert isinstance(admit(POLICY, Usage(1, 95), 5, now=1000.0), Admitted)


def test_usage_follows_messages_in_and_out() -> None:
    assert Usage().add(10).add(5).remove(10) == Usage(1, 5)
    assert Usage().remove(3) == Usage(0, 0)


def test_split_expired_keeps_order_and_expires_at_the_deadline() -> None:
    queue = [M("a", 1, 10.0), M("b", 1, 5.0), M("c", 1, 20.0)]
    live, gone = split_expired(queue, 10.0)
    assert [m.name for m in live] == ["c"] and [m.name for m in gone] == ["a", "b"]


@pytest.mark.parametrize(
    ("status", "no_binding", "expected"),
    [
        (200, False, Delivered()),
        (202, False, Delivered()),
        (None, True, Wait()),
        (480, True, Wait()),
        (None, False, Retry(102.0)),
        (408, False, Retry(102.0)),
        (480, False, Retry(102.0)),
        (503, False, Retry(102.0)),
        (404, False, Rejected(404)),
        (415, False, Rejected(415)),
        (603, False, Rejected(603)),
    ],
)
def test_after_attempt(status: int | None, no_binding: bool, expected: object) -> None:
    assert after_attempt(POLICY, status, no_binding=no_binding, attempt=1, now=100.0) == expected


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(POLICY, n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff(POLICY, 10_000) == 30.0


policies = st.builds(
    QueuePolicy,
    max_messages=st.integers(1, 20),
    max_bytes=st.integers(1, 5000),
    max_age=st.floats(1.0, 1000.0),
)


@given(policies, st.lists(st.tuples(st.integers(0, 800), st.floats(0.0, 50.0)), max_size=60))
def test_admitting_never_exceeds_the_quota(
    policy: QueuePolicy, arrivals: list[tuple[int, float]]
) -> None:
    queue: list[M] = []
    now = 0.0
    for i, (size, step) in enumerate(arrivals):
        now += step
        queue = list(split_expired(queue, now)[0])  # the expiry timer removed them
        verdict = admit(policy, Usage.of(queue), size, now)
        if isinstance(verdict, Admitted):
            queue.append(M(str(i), size, verdict.expires_at))
        live, _ = split_expired(queue, now)
        assert len(live) <= policy.max_messages
        assert sum(m.size for m in live) <= policy.max_bytes


@given(st.lists(st.sampled_from([200, 480, 408, 503, 404, None, "gone"]), max_size=80))
def test_delivery_order_is_store_order_whatever_the_outcomes(outcomes: list[object]) -> None:
    """The head blocks the queue: a driver that follows the policy hands messages to the
    device, or rejects them, strictly in the order they were stored."""
    queue = [f"m{i}" for i in range(10)]
    settled: list[str] = []
    attempt = 0
    for raw in outcomes:
        if not queue:
            break
        attempt += 1
        gone = raw == "gone"
        status = None if gone or raw is None else int(str(raw))
        outcome = after_attempt(POLICY, status, no_binding=gone, attempt=attempt, now=0.0)
        if isinstance(outcome, Delivered | Rejected):
            settled.append(queue.pop(0))
            attempt = 0
    assert settled == [f"m{i}" for i in range(len(settled))]

"""gateway.overload.policy: the pure overload state machine (issue 27).

Table-driven cases for the marks, then Hypothesis properties over random sample streams:
it only enters on a high mark, only leaves after `hold` seconds of calm samples, never
changes state while every signal stays between its marks (no flapping), refuses exactly
while overloaded or at the pending bound, and counts every refusal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import OverloadConfig
from gateway.overload.policy import Load, OverloadPolicy

pytestmark = pytest.mark.unit

CFG = OverloadConfig(
    lag_high=0.5,
    lag_low=0.1,
    pending_high=100,
    pending_low=20,
    clients_high=300,
    clients_low=60,
    xmpp_backlog_high=1000,
    xmpp_backlog_low=100,
    udp_backlog_high=0.5,
    udp_backlog_low=0.1,
    stream_backlog_high=5000,
    stream_backlog_low=500,
    hold=2.0,
    recovery=2.0,
    retry_after=7,
)
CALM = Load()


@pytest.mark.parametrize(
    ("load", "reasons"),
    [
        (Load(), ()),
        (Load(lag=0.49), ()),
        (Load(lag=0.5), ("lag",)),
        (Load(pending=99), ()),
        (Load(pending=100), ("pending",)),
        (Load(clients=299), ()),
        (Load(clients=300), ("clients",)),
        (Load(xmpp_backlog=1000), ("xmpp_backlog",)),
        (Load(udp_backlog=0.5), ("udp_backlog",)),
        (Load(stream_backlog=4999), ()),
        (Load(stream_backlog=5000), ("stream_backlog",)),
        (Load(lag=1.0, udp_backlog=0.9), ("lag", "udp_backlog")),
        (Load(lag=0.4, pending=99, xmpp_backlog=999, udp_backlog=0.49), ()),
    ],
)
def test_entering_names_the_signals_at_their_high_mark(
    load: Load, reasons: tuple[str, ...]
) -> None:
    policy = OverloadPolicy(CFG)
    change = policy.observe(10.0, load)
    if not reasons:
        assert change is None and not policy.overloaded
    else:
        assert change is not None and change.overloaded and change.reasons == reasons
        assert policy.overloaded and policy.since == 10.0


@pytest.mark.parametrize(
    ("samples", "leaves_at"),
    [
        ([(1.0, CALM), (2.0, CALM), (3.0, CALM)], 3.0),  # calm from 1.0, hold 2 s
        ([(1.0, CALM), (2.0, Load(lag=0.2)), (3.0, CALM), (4.0, CALM), (5.0, CALM)], 5.0),
        ([(1.0, Load(pending=50)), (5.0, Load(pending=50))], None),  # between the marks
        ([(1.0, CALM), (2.9, CALM)], None),
        ([(1.0, Load(pending=20, lag=0.1, xmpp_backlog=100, udp_backlog=0.1)), (3.0, CALM)], 3.0),
        ([(1.0, CALM), (2.0, Load(stream_backlog=501)), (3.5, CALM)], None),
    ],
)
def test_leaving_needs_hold_seconds_of_calm(
    samples: list[tuple[float, Load]], leaves_at: float | None
) -> None:
    policy = OverloadPolicy(CFG)
    assert policy.observe(0.0, Load(lag=2.0)) is not None
    left = None
    for t, load in samples:
        change = policy.observe(t, load)
        if change is not None:
            assert not change.overloaded and left is None
            left = t
    assert left == leaves_at
    assert policy.overloaded is (leaves_at is None)


def test_decisions_and_counts() -> None:
    policy = OverloadPolicy(CFG)
    assert policy.admitted == 1.0
    assert policy.admit(0) is None and policy.admit_stanza(0)
    assert policy.admit(100) == 7  # the pending bound holds between samples
    assert policy.admit_stanza(100)  # stanzas have their own bound: our requests
    assert not policy.admit_stanza(300)
    assert policy.admit(99) is None
    policy.observe(1.0, Load(udp_backlog=0.7))  # entering: half admitted
    policy.observe(1.5, Load(udp_backlog=0.7))  # still high, recovery / 4 later: a quarter
    assert policy.admitted == 0.25
    assert [policy.admit(0) for _ in range(3)] == [7, 7, 7]
    assert policy.admit_stanza(0)  # the credit (0.25 a request) reaches 1 at the 4th
    assert policy.admit(0) == 7
    assert (policy.rejected_requests, policy.rejected_stanzas) == (5, 1)
    policy.observe(2.5, CALM)
    change = policy.observe(4.5, CALM)
    assert change is not None and not change.overloaded
    assert (change.rejected_requests, change.rejected_stanzas) == (4, 0)  # this period's
    assert policy.admit(0) is None


def test_disabled_admits_everything_and_never_changes_state() -> None:
    policy = OverloadPolicy(replace(CFG, enabled=False))
    assert policy.observe(1.0, Load(lag=9.0, pending=10**6)) is None
    assert policy.admit(10**6) is None and policy.admit_stanza(10**6)
    assert not policy.overloaded and policy.rejected_requests == 0


def test_a_clock_step_back_restarts_the_calm_period() -> None:
    policy = OverloadPolicy(CFG)
    policy.observe(10.0, Load(lag=1.0))
    assert policy.observe(11.0, CALM) is None
    assert policy.observe(5.0, CALM) is None  # before the calm start: starts again at 5
    assert policy.observe(6.0, CALM) is None
    assert policy.observe(7.0, CALM) is not None


# -- properties ---------------------------------------------------------------------------

loads = st.builds(
    Load,
    lag=st.floats(0, 1.0),
    pending=st.integers(0, 150),
    clients=st.integers(0, 400),
    xmpp_backlog=st.integers(0, 1500),
    udp_backlog=st.floats(0, 1.0),
    stream_backlog=st.integers(0, 8000),
)
between = st.builds(  # every signal strictly between its marks
    Load,
    lag=st.floats(0.11, 0.49),
    pending=st.integers(21, 99),
    clients=st.integers(61, 299),
    xmpp_backlog=st.integers(101, 999),
    udp_backlog=st.floats(0.11, 0.49),
    stream_backlog=st.integers(501, 4999),
)
steps = st.floats(0.01, 1.5)


@settings(derandomize=True, database=None, max_examples=300)
@given(st.lists(st.tuples(steps, loads), max_size=60))
def test_transitions_follow_the_marks(stream: list[tuple[float, Load]]) -> None:
    policy = OverloadPolicy(CFG)
    t = 0.0
    history: list[tuple[float, Load]] = []
    for dt, load in stream:
        t += dt
        was = policy.overloaded
        change = policy.observe(t, load)
        history.append((t, load))
        assert (change is not None) == (policy.overloaded != was)
        if change is None:
            continue
        if change.overloaded:  # entering: some signal at its high mark, named
            assert change.reasons and change.reasons == policy.high(load)
        else:  # leaving: all admitted, every sample of the last `hold` seconds was calm
            assert policy.admitted == 1.0
            calm_run = list(reversed(history))
            start = t
            for st_t, st_load in calm_run:
                if not policy.calm(st_load):
                    break
                start = st_t
            assert t - start >= CFG.hold
            assert policy.calm(load)


@settings(derandomize=True, database=None, max_examples=200)
@given(st.booleans(), st.lists(st.tuples(steps, between), max_size=60))
def test_no_flapping_between_the_marks(
    start_overloaded: bool, stream: list[tuple[float, Load]]
) -> None:
    policy = OverloadPolicy(CFG)
    if start_overloaded:
        policy.observe(0.0, Load(lag=1.0))
    t = 0.0
    for dt, load in stream:
        t += dt
        assert policy.observe(t, load) is None
        assert policy.overloaded is start_overloaded


@settings(derandomize=True, database=None, max_examples=200)
@given(st.lists(st.one_of(st.tuples(steps, loads), st.integers(0, 150)), max_size=80))
def test_refuses_at_the_bound_and_beyond_the_share(events: list[tuple[float, Load] | int]) -> None:
    policy = OverloadPolicy(CFG)
    t, refused = 0.0, 0
    for e in events:
        if isinstance(e, tuple):
            t += e[0]
            policy.observe(t, e[1])
            assert 0.0 <= policy.admitted <= 1.0
            assert policy.overloaded or policy.admitted == 1.0
            continue
        decision = policy.admit(e)
        assert decision in (None, CFG.retry_after)
        if e >= CFG.pending_high:
            assert decision is not None
        if not policy.overloaded and e < CFG.pending_high:
            assert decision is None
        refused += decision is not None
    assert policy.rejected_requests == refused


@settings(derandomize=True, database=None, max_examples=200)
@given(st.integers(0, 6), st.integers(1, 400))
def test_the_share_admitted_is_applied_evenly(halvings: int, n: int) -> None:
    policy = OverloadPolicy(CFG)
    policy.observe(0.0, Load(lag=1.0))  # 0.5
    policy.observe(0.2, CALM)  # +0.1: the share is 0.6 ...
    for i in range(halvings):  # ... halved per high sample, cuts spaced recovery / 4
        policy.observe(0.5 * (i + 1), Load(lag=1.0))
    share = policy.admitted
    admitted = sum(policy.admit(0) is None for _ in range(n))
    assert abs(admitted - n * share) <= 1


def test_aimd_share_while_overloaded() -> None:
    policy = OverloadPolicy(CFG)  # recovery 2 s (default)
    policy.observe(0.0, Load(lag=1.0))
    assert policy.overloaded and policy.admitted == 0.5
    policy.observe(0.1, Load(lag=1.0))  # too soon after the last cut (recovery / 4)
    assert policy.admitted == 0.5
    for t in (0.5, 0.7, 1.0, 1.5, 2.0):  # cuts at 0.5, 1.0, 1.5, 2.0
        policy.observe(t, Load(lag=1.0))
    assert policy.admitted == 1 / 32  # a refusal for 31 of 32
    assert [policy.admit(0) for _ in range(31)] == [7] * 31
    assert policy.admit(0) is None
    policy.observe(3.0, Load(pending=50))  # not high: +1 s / 2 s
    assert policy.admitted == 0.5 + 1 / 32
    policy.observe(3.1, Load(udp_backlog=0.6))  # high: halved
    assert policy.admitted == (0.5 + 1 / 32) / 2 and policy.overloaded
    policy.observe(5.1, Load(pending=50))  # back to 1, but between the marks: still on
    assert policy.admitted == 1.0 and policy.overloaded
    assert all(policy.admit(0) is None for _ in range(10))

"""gateway.fates: the bounded ring of message fates, its totals and the console's filter."""

from __future__ import annotations

import time

import pytest

from gateway.fates import Fate, FateFilter, FateRing, select

pytestmark = pytest.mark.unit


def _ring(limit: int = 3) -> FateRing:
    ring = FateRing(limit, wall=lambda: 5.0)
    ring.add(
        "sip_to_xmpp",
        "delivered",
        0.01,
        {
            "status": 200,
            "sender": "romeo@sip.x",
            "recipient": "juliet@x",
            "call_id": "c1",
            "stanza_id": "s1",
        },
    )
    ring.add(
        "xmpp_to_sip",
        "rejected",
        0.02,
        {
            "status": 404,
            "sender": "juliet@x/r",
            "recipient": "sip:tybalt@sip.x",
            "condition": "item-not-found",
        },
    )
    ring.add("sip_to_xmpp", "failed", 0.03, {"status": 503, "reason": "link down", "call_id": "C2"})
    return ring


def test_ring_keeps_the_last_n_and_counts_everything() -> None:
    ring = _ring(2)
    assert ring.limit == 2 and len(ring) == 2
    assert [f.seq for f in ring.newest_first()] == [3, 2]
    assert ring.totals() == (3, 2, pytest.approx(0.06))
    assert ring.last_seq() == 3
    newest = next(ring.newest_first())
    assert newest == Fate(
        3, 5.0, "sip_to_xmpp", "failed", 503, None, None, "C2", None, 0.03, "link down"
    )


def test_zero_keeps_nothing_but_still_counts() -> None:
    ring = _ring(0)
    assert len(ring) == 0 and ring.totals().messages == 3


@pytest.mark.parametrize(
    ("wanted", "seqs"),
    [
        (FateFilter(), [3, 2, 1]),
        (FateFilter(direction="sip_to_xmpp"), [3, 1]),
        (FateFilter(fate="rejected"), [2]),
        (FateFilter(text="TYBALT"), [2]),  # case-insensitive, recipient
        (FateFilter(text="c2"), [3]),  # an id
        (FateFilter(direction="xmpp_to_sip", fate="delivered"), []),
    ],
)
def test_filter(wanted: FateFilter, seqs: list[int]) -> None:
    assert [f.seq for f in select(_ring(), wanted, 10)] == seqs


def test_select_stops_at_the_limit() -> None:
    assert [f.seq for f in select(_ring(), FateFilter(), 2)] == [3, 2]


def test_add_is_cheap() -> None:
    """The fast-path cost of one fate (printed for the report; bounded loosely so that a
    slow shared CI machine does not fail it, yet an accidental O(n) append would)."""
    ring = FateRing(1000)
    fields = {"status": 200, "sender": "a@b", "recipient": "c@d", "call_id": "x", "stanza_id": "y"}
    n = 200_000
    start = time.perf_counter()
    for _ in range(n):
        ring.add("sip_to_xmpp", "delivered", 0.001, fields)
    per = (time.perf_counter() - start) / n
    print(f"FateRing.add: {per * 1e9:.0f} ns per fate")
    assert len(ring) == 1000
    assert per < 20e-6

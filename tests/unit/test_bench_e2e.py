"""Pure pieces of the end-to-end benchmarks: ramp, step verdicts, latency figures, the
bare baseline's canned I/O and the XMPP load generator's body parsing (no sockets, no
timings asserted)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bench import baseline, loadgen_xmpp
from bench.ramp import Criteria, Ramp, StepResult, latency_ms, saturated, throughput
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message


def _step(**over: Any) -> StepResult:
    good = StepResult(
        offered=1000.0, sent=4000, delivered=4000, errors=0, throughput=990.0,
        p50_ms=1.0, p99_ms=5.0, max_ms=9.0,
    )  # fmt: skip
    return replace(good, **over)


def test_step_verdicts() -> None:
    assert _step().passes()
    assert not _step(errors=1).passes()
    assert not _step(delivered=3999).passes()
    assert not _step(throughput=899.0).passes()  # under 90 % of the offered rate
    assert not _step(p99_ms=201.0).passes()
    assert not _step(sent=0, delivered=0).passes()
    assert _step(p99_ms=300.0).passes(Criteria(max_p99_ms=500.0))


def drive(ramp: Ramp, capacity: float) -> list[float]:
    """Run the ramp against a system that sustains exactly `capacity`."""
    tried: list[float] = []
    while (rate := ramp.next_rate()) is not None:
        tried.append(rate)
        ramp.record(rate, rate <= capacity)
    return tried


def test_ramp_climbs_then_bisects() -> None:
    ramp = Ramp(start=1000, factor=2.0, precision=1.1, max_steps=20)
    tried = drive(ramp, 5000)
    assert tried[:4] == [1000, 2000, 4000, 8000]
    assert 4000 <= ramp.sustained <= 5000
    assert ramp.lowest_fail / ramp.sustained <= 1.1


def test_ramp_goes_down_when_the_first_step_fails() -> None:
    ramp = Ramp(start=1000, factor=2.0, max_steps=20)
    tried = drive(ramp, 300)
    assert tried[:3] == [1000, 500, 250]
    assert 250 <= ramp.sustained <= 300


def test_ramp_gives_up_below_the_floor() -> None:
    ramp = Ramp(start=100, factor=2.0, floor=40, max_steps=20)
    assert drive(ramp, 0) == [100, 50]
    assert ramp.sustained == 0.0


@settings(max_examples=200)
@given(
    capacity=st.floats(min_value=0, max_value=1e6),
    start=st.floats(min_value=10, max_value=1e4),
    steps=st.integers(min_value=1, max_value=12),
)
def test_ramp_is_bounded_and_never_overstates(capacity: float, start: float, steps: int) -> None:
    ramp = Ramp(start=start, max_steps=steps)
    tried = drive(ramp, capacity)
    assert len(tried) <= steps
    assert ramp.sustained <= capacity
    assert all(r > 0 for r in tried)


def test_latency_and_throughput() -> None:
    pairs = [(10.0 + i / 100, 10.0 + i / 100 + 0.002) for i in range(100)]
    p50, p99, mx = latency_ms(pairs)
    assert math.isclose(p50, 2.0, abs_tol=1e-6) and math.isclose(mx, 2.0, abs_tol=1e-6)
    assert math.isclose(p99, 2.0, abs_tol=1e-6)
    # 100 messages from the first send (10.00) to the last arrival (10.992)
    assert math.isclose(throughput(pairs), 100 / 0.992, rel_tol=1e-9)
    assert all(math.isnan(v) for v in latency_ms([]))
    assert throughput([]) == 0.0


def test_saturated_names_the_busy_processes() -> None:
    got = saturated({"gateway": 9.5, "prosody": 2.0, "sipp": 8.6}, wall=10.0)
    assert [name for name, _ in got] == ["gateway", "sipp"]
    assert saturated({"gateway": 1.0}, wall=0.0) == []


MESSAGE = (
    b"MESSAGE sip:juliet0@localhost SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:romeo@sip.localhost>;tag=1\r\n"
    b"To: <sip:juliet0@localhost>\r\n"
    b"Call-ID: c1@127.0.0.1\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 22\r\n"
    b"\r\n"
    b"g=1 s=2 t=<1.5 & more>"
)


def test_baseline_answers_a_matching_200() -> None:
    resp = parse_message(baseline.canned_200(MESSAGE))
    req = parse_message(MESSAGE)
    assert isinstance(resp, SipResponse) and isinstance(req, SipRequest)
    assert resp.status == 200
    for name in ("Via", "From", "Call-ID", "CSeq"):
        assert resp.headers.get(name) == req.headers.get(name)
    assert resp.to is not None and resp.to.tag is not None


def test_baseline_stanza_and_message_carry_the_body() -> None:
    stanza = baseline.canned_stanza(MESSAGE, "sip.localhost", 7)
    assert b"to='juliet0@localhost'" in stanza and b"from='romeo@sip.localhost'" in stanza
    assert b"<body>g=1 s=2 t=&lt;1.5 &amp; more&gt;</body>" in stanza
    datagram = baseline.canned_message(b"g=3 s=4 t=5.5", b"romeo7", "sip.localhost", 9)
    req = parse_message(datagram)
    assert isinstance(req, SipRequest) and req.method == "MESSAGE"
    assert str(req.uri) == "sip:romeo7@sip.localhost" and req.body == b"g=3 s=4 t=5.5"


def test_handshake_digest_is_xep0114() -> None:
    # XEP-0114 §3: hex SHA-1 of stream id + secret (`printf 3BF96D32sunshine | sha1sum`)
    assert baseline.handshake_digest("3BF96D32", "sunshine") == (
        "8e2449516c688436d4ca76dad7e0c43ca1c20b18"
    )


def test_loadgen_reads_python_and_sipp_bodies() -> None:
    chunk = (
        b"<message from='romeo@sip.localhost' to='juliet0@localhost/b'>"
        b"<body>g=12 s=34 t=1795236130.624919</body></message>"
        b"<message from='romeo@sip.localhost'><body>g=3 s=4 t=2026-11-21\t04:42:10.624919"
        b"\t1795236130.500000\n</body></message>"
        b"<message type='error' from='x@y'><body>g=5 s=6 t=1.0</body></message>"
    )
    got, errors = loadgen_xmpp.parse_bodies(chunk, arrived=1795236131.0)
    assert errors == 1
    assert [(a.generator, a.seq, a.sent) for a in got] == [
        (12, 34, 1795236130.624919),
        (3, 4, 1795236130.5),
    ]
    assert all(a.arrived == 1795236131.0 for a in got)

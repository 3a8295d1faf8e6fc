"""gateway.msrp.endpoint: what an endpoint answers (RFC 4975 §5.4, §7), without sockets."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.msrp.endpoint import (
    Answered,
    Bound,
    Connection,
    Delivered,
    EndpointEvent,
    Outcome,
    Session,
    Unmatched,
    Write,
)
from gateway.msrp.framing import MsrpFramer
from gateway.msrp.message import MsrpRequest, MsrpResponse
from gateway.msrp.parser import parse_message
from gateway.msrp.uri import MsrpUri

A = MsrpUri.make("192.0.2.1", 2855, "alicesession")
B = MsrpUri.make("192.0.2.2", 2855, "bobsession")
_ids = itertools.count()


def _new_id() -> str:
    return f"id{next(_ids):06d}"


def _pair(chunk_size: int = 2048) -> tuple[Session, Session, Connection, Connection]:
    """Alice and Bob, each with a Connection seeing only its own session."""
    alice = Session((A,), chunk_size=chunk_size, new_id=_new_id)
    bob = Session((B,), chunk_size=chunk_size, new_id=_new_id)
    alice.remote_path, bob.remote_path = (B,), (A,)
    at_alice = Connection("conn-a", {A: alice}, MsrpFramer())
    at_bob = Connection("conn-b", {B: bob}, MsrpFramer())
    at_alice.bind(alice)
    return alice, bob, at_alice, at_bob


def _writes(events: list[EndpointEvent]) -> list[MsrpRequest | MsrpResponse]:
    return [parse_message(e.data) for e in events if isinstance(e, Write)]


def _feed_all(conn: Connection, data: list[bytes], now: float = 0.0) -> list[EndpointEvent]:
    out: list[EndpointEvent] = []
    for d in data:
        out += conn.feed(d, now)
    return out


def test_message_with_responses_and_success_report() -> None:
    alice, bob, at_alice, at_bob = _pair(chunk_size=10)
    mid, chunks = alice.send("text/plain", b"hello bob, three chunks", 0.0)
    assert len(chunks) == 3
    events = _feed_all(at_bob, chunks)
    assert [type(e) for e in events] == [Bound, Write, Write, Write, Delivered]
    assert bob.connection == "conn-b"  # the first request bound it (§5.4)
    oks = _writes(events)
    assert all(isinstance(r, MsrpResponse) and r.code == 200 for r in oks)
    delivered = events[-1]
    assert isinstance(delivered, Delivered) and delivered.message.body == b"hello bob, three chunks"
    # the 200s go back; nothing is decided until the REPORT (Success-Report: yes)
    assert _feed_all(at_alice, [e.data for e in events if isinstance(e, Write)]) == []
    report = bob.success_report(delivered.message)
    assert report is not None
    (outcome,) = at_alice.feed(report, 1.0)
    assert outcome == Outcome(alice, mid, 200, "OK") and outcome.ok
    assert alice.deadline is None


def test_failures_reach_the_sender() -> None:
    alice, bob, at_alice, at_bob = _pair()
    mid, chunks = alice.send("text/plain", b"x", 0.0)
    (delivered,) = [e for e in at_bob.feed(chunks[0], 0.0) if isinstance(e, Delivered)]
    failure = bob.failure_report(delivered.message, 415)
    assert failure is not None
    assert at_alice.feed(failure, 0.0) == [Outcome(alice, mid, 415, "Unsupported Media Type")]
    # a non-200 transaction response fails the message too
    mid, chunks = alice.send("text/plain", b"y", 0.0)
    tid = parse_message(chunks[0]).transaction_id
    resp = f"MSRP {tid} 413 Too big\r\nTo-Path: {A}\r\nFrom-Path: {B}\r\n-------{tid}$\r\n"
    assert at_alice.feed(resp.encode(), 0.0) == [Outcome(alice, mid, 413, "Too big")]
    # no response within transaction_timeout: 408; closing fails the rest with 481
    mid, _ = alice.send("text/plain", b"z", 0.0)
    assert alice.deadline == 30.0 and alice.expire(29.0) == []
    assert alice.expire(30.0) == [Outcome(alice, mid, 408, "no response to a chunk")]
    mid, _ = alice.send("text/plain", b"w", 31.0)
    assert alice.close() == [Outcome(alice, mid, 481, "session ended")]


def test_no_report_after_every_200_is_bounded() -> None:
    """A peer that ignores Success-Report: the outcome comes `report_timeout` after the
    last chunk's 200, as delivered without a report; nothing stays in flight."""
    alice, _, at_alice, at_bob = _pair(chunk_size=4)
    alice.report_timeout = 10.0
    mid, chunks = alice.send("text/plain", b"12345678", 0.0)
    oks = [e.data for e in _feed_all(at_bob, chunks) if isinstance(e, Write)]
    assert at_alice.feed(oks[0], 1.0) == [] and alice.deadline == 30.0  # one chunk open
    assert at_alice.feed(oks[1], 2.0) == [] and alice.deadline == 12.0
    assert alice.expire(11.9) == []
    assert alice.expire(12.0) == [Outcome(alice, mid, 200, "no success report", reported=False)]
    assert alice.deadline is None and alice.close() == []


def test_partial_success_report_waits() -> None:
    alice, _, at_alice, _ = _pair()
    mid, _ = alice.send("text/plain", b"0123456789", 0.0)
    report = (
        f"MSRP r0000001 REPORT\r\nTo-Path: {A}\r\nFrom-Path: {B}\r\nMessage-ID: {mid}\r\n"
        f"Byte-Range: 1-5/10\r\nStatus: 000 200 OK\r\n-------r0000001$\r\n"
    ).encode()
    assert at_alice.feed(report, 0.0) == []
    full = report.replace(b"1-5/10", b"1-10/10")
    assert at_alice.feed(full, 0.0) == [Outcome(alice, mid, 200, "OK")]


def test_session_matching_481_506_403() -> None:
    alice, bob, _, at_bob = _pair()
    _, chunks = alice.send("text/plain", b"hi", 0.0)
    stranger = MsrpUri.make("192.0.2.2", 2855, "nosuchsession")
    wrong = chunks[0].replace(str(B).encode(), str(stranger).encode())
    events = at_bob.feed(wrong, 0.0)
    (resp,) = _writes(events)
    assert isinstance(resp, MsrpResponse) and resp.code == 481
    assert events[-1] == Unmatched(481, str(stranger), "no such session")
    at_bob.feed(chunks[0], 0.0)  # binds bob to conn-b
    other = Connection("conn-c", {B: bob}, MsrpFramer())
    _, again = alice.send("text/plain", b"again", 0.0)
    events = other.feed(again[0], 0.0)
    assert [r.code for r in _writes(events) if isinstance(r, MsrpResponse)] == [506]
    mallory = MsrpUri.make("192.0.2.66", 2855, "mallory")
    _, forged = alice.send("text/plain", b"forged", 0.0)
    events = at_bob.feed(forged[0].replace(str(A).encode(), str(mallory).encode()), 0.0)
    assert [r.code for r in _writes(events) if isinstance(r, MsrpResponse)] == [403]


def test_unknown_method_oversized_and_fatal() -> None:
    _, bob, _, _ = _pair()
    conn = Connection("c", {B: bob}, MsrpFramer(max_chunk_size=1024))
    frob = f"MSRP f0000001 FROB\r\nTo-Path: {B}\r\nFrom-Path: {A}\r\n-------f0000001$\r\n"
    assert [r.code for r in _writes(conn.feed(frob.encode(), 0.0))] == [501]  # type: ignore[union-attr]
    big = (
        f"MSRP g0000001 SEND\r\nTo-Path: {B}\r\nFrom-Path: {A}\r\nMessage-ID: m0000001\r\n"
        f"Content-Type: text/plain\r\n\r\n{'x' * 5000}\r\n-------g0000001$\r\n"
    )
    assert [r.code for r in _writes(conn.feed(big.encode(), 0.0))] == [413]  # type: ignore[union-attr]
    assert conn.fatal is None
    conn.feed(b"GET / HTTP/1.1\r\n\r\n", 0.0)
    assert conn.fatal is not None
    slow = Connection("s", {B: bob}, MsrpFramer(partial_timeout=5.0))
    slow.feed(b"MSRP s0000001 SEND\r\nTo-Pa", 0.0)
    slow.expire(4.9)
    assert slow.fatal is None
    slow.expire(5.0)
    assert slow.fatal is not None and slow.fatal.status == 408


def test_responses_for_no_session_are_answered_events() -> None:
    conn = Connection("c", {}, MsrpFramer())
    resp = f"MSRP a0000001 200 OK\r\nTo-Path: {A}\r\nFrom-Path: {B}\r\n-------a0000001$\r\n"
    (event,) = conn.feed(resp.encode(), 0.0)
    assert isinstance(event, Answered) and event.response.code == 200


def test_relay_paths() -> None:
    """With a relay our a=path is relay, us; To-Path is relay then the peer's path."""
    relay = MsrpUri.make("192.0.2.9", 2855, "relayslot")
    s = Session((relay, A))
    s.remote_path = (B,)
    assert s.local == A and s.to_path == (relay, B)
    request = parse_message(s.bodiless_send())
    assert isinstance(request, MsrpRequest) and request.body is None
    assert request.to_path == (relay, B) and request.from_path == (A,)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    body=st.binary(min_size=1, max_size=3000),
    chunk_size=st.integers(1, 700),
    cuts=st.lists(st.integers(1, 400), max_size=30),
)
def test_any_chunking_and_any_segmentation_deliver_once(
    body: bytes, chunk_size: int, cuts: list[int]
) -> None:
    alice, _, _, at_bob = _pair(chunk_size=chunk_size)
    _, chunks = alice.send("application/octet-stream", body, 0.0)
    stream = b"".join(chunks)
    pieces, at = [], 0
    for cut in cuts:
        pieces.append(stream[at : at + cut])
        at += cut
    pieces.append(stream[at:])
    events = _feed_all(at_bob, [p for p in pieces if p])
    delivered = [e for e in events if isinstance(e, Delivered)]
    assert len(delivered) == 1 and delivered[0].message.body == body
    assert len(_writes(events)) == len(chunks)  # one 200 per chunk


_HOSTILE = st.sampled_from([
    b"\r\n", b"-------", b"$\r\n", b"+\r\n", b"#\r\n", b"MSRP ", b" SEND\r\n", b"To-Path: ",
    b"Byte-Range: 1-*/*\r\n", b"Message-ID: x\r\n", b"\r\n\r\n", b"\x00", b"\xff",
    b"Status: 000 200 OK\r\n", b" REPORT\r\n", b" 200 OK\r\n",
])  # fmt: skip


@st.composite
def _mutated_stream(draw: st.DrawFn) -> bytes:
    alice, _, _, _ = _pair(chunk_size=draw(st.integers(1, 64)))
    _, chunks = alice.send("text/plain", draw(st.binary(max_size=200)), 0.0)
    data = bytearray(b"".join(chunks))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        if draw(st.booleans()) and data:
            del data[at : at + draw(st.integers(1, 16))]
        else:
            data[at:at] = draw(_HOSTILE | st.binary(max_size=8))
    return bytes(data)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_mutated_stream(), st.lists(st.integers(1, 64), max_size=20))
def test_fuzz_connection_feed(data: bytes, cuts: list[int]) -> None:
    """Hostile streams: no exception escapes `feed`; every Write parses back; after a
    fatal error the caller closes (nothing more is fed)."""
    _, bob, _, _ = _pair()
    conn = Connection("fuzz", {B: bob}, MsrpFramer(max_chunk_size=256, max_header_size=512))
    at = 0
    for cut in [*cuts, len(data)]:
        piece, at = data[at : at + cut], at + cut
        if not piece or conn.fatal is not None:
            break
        for event in conn.feed(piece, 0.0):
            if isinstance(event, Write):
                assert isinstance(parse_message(event.data), MsrpRequest | MsrpResponse)
    if conn.fatal is None:  # the framer's bound: a head, a chunk, an end-line, one feed
        assert conn.framer.buffered <= 512 + 256 + 64 + max([*cuts, len(data)])

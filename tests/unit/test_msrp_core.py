"""The pure MSRP core (RFC 4975, RFC 4976): parser, serializer, framing, chunks, reports.

Round trips are property-tested (serialize/parse, chunk/reassemble with arbitrary bodies,
chunk sizes and orders, bodies holding "-------" and end-line look-alikes); hostile inputs
each give a defined error and a bounded buffer.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.msrp import reports
from gateway.msrp.chunks import (
    Aborted,
    Complete,
    Duplicate,
    Reassembler,
    abort_request,
    chunk_message,
    random_id,
)
from gateway.msrp.errors import LocalProtocolError, RemoteProtocolError
from gateway.msrp.framing import Frame, FramerEvent, MsrpFramer, Oversized
from gateway.msrp.message import (
    ByteRange,
    MsrpRequest,
    MsrpResponse,
    Status,
    contains_end_line,
    parse_byte_range,
)
from gateway.msrp.parser import parse_message
from gateway.msrp.serializer import serialize
from gateway.msrp.uri import MsrpUri, parse_uri

PROPS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ALICE = parse_uri("msrp://alicepc.example.com:7777/iau39soe2843z;tcp")
BOB = parse_uri("msrp://bob.example.com:8888/9di4eae923wzd;tcp")
RELAY = parse_uri("msrps://relay.example.net:2855/r1;tcp")


def send(
    body: bytes | None = b"hi",
    *,
    tid: str = "tid00001",
    headers: tuple[tuple[str, str], ...] = (("Message-ID", "m0000001"),),
    flag: str = "$",
) -> bytes:
    head = f"MSRP {tid} SEND\r\nTo-Path: {BOB}\r\nFrom-Path: {ALICE}\r\n"
    head += "".join(f"{n}: {v}\r\n" for n, v in headers)
    if body is None:
        return head.encode() + f"-------{tid}{flag}\r\n".encode()
    return (
        (head + "Content-Type: text/plain\r\n\r\n").encode()
        + body
        + (f"\r\n-------{tid}{flag}\r\n".encode())
    )


# -- parser ----------------------------------------------------------------------------------


def test_bodiless_send_and_empty_body_differ() -> None:
    bodiless = parse_message(send(None))
    empty = parse_message(send(b""))
    assert isinstance(bodiless, MsrpRequest) and bodiless.body is None
    assert bodiless.content_type is None
    assert isinstance(empty, MsrpRequest) and empty.body == b""
    assert empty.content_type == "text/plain"
    assert serialize(bodiless) == send(None) and serialize(empty) == send(b"")


def test_typed_views_and_defaults() -> None:
    msg = parse_message(send(headers=(("Message-ID", "m0000001"), ("Byte-Range", "1-*/*"))))
    assert isinstance(msg, MsrpRequest)
    assert msg.to_path == (BOB,) and msg.from_path == (ALICE,)
    assert msg.byte_range == ByteRange(1, None, None) and msg.complete
    assert not msg.success_report and msg.failure_report == "yes"  # §7.1.1 defaults
    assert msg.status is None and msg.use_path is None and msg.expires is None


def test_auth_request_of_rfc_4976() -> None:
    data = (
        f"MSRP a786hjs2 AUTH\r\nTo-Path: {RELAY}\r\nFrom-Path: {ALICE}\r\n"
        'Authorization: Digest username="alice", realm="example.net", nonce="x", '
        'response="0123456789abcdef0123456789abcdef"\r\nExpires: 600\r\n'
        "-------a786hjs2$\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, MsrpRequest) and msg.method == "AUTH" and msg.expires == 600
    assert (
        msg.get(
            "authorization",
        )
        is not None
        and serialize(msg) == data
    )
    ok = (
        f"MSRP a786hjs2 200 OK\r\nTo-Path: {ALICE}\r\nFrom-Path: {RELAY}\r\n"
        f"Use-Path: {RELAY}\r\nExpires: 600\r\n-------a786hjs2$\r\n"
    ).encode()
    answer = parse_message(ok)
    assert isinstance(answer, MsrpResponse) and answer.code == 200 and answer.comment == "OK"
    assert answer.get("Use-Path") == str(RELAY) and serialize(answer) == ok


def test_header_whitespace_is_liberal_and_names_any_case() -> None:
    data = send(headers=(("message-id", "m0000001"),)).replace(b"To-Path: ", b"to-path:\t ")
    msg = parse_message(data)
    assert isinstance(msg, MsrpRequest) and msg.message_id == "m0000001"
    assert msg.to_path == (BOB,)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (send(headers=()), 400),  # SEND without Message-ID (§7.1.1)
        (send(headers=(("Message-ID", "m0000001"), ("Byte-Range", "0-1/2"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Byte-Range", "3-1/2"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Byte-Range", "1-5/2"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Byte-Range", "1-x/2"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Byte-Range", "-1-2/2"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Success-Report", "maybe"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Failure-Report", "never"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Message-ID", "m0000002"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Expires", "soon"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Status", "0 200"))), 400),
        (send(headers=(("Message-ID", "m0000001"), ("Bad Name", "x"))), 400),
        (send(None, headers=(("Message-ID", "m0000001"), ("Content-Type", "text/plain"))), 400),
        (send(b"x").replace(b"text/plain\r\n", b"text/plain\r\nX: 1\r\n"), 400),
        (send().replace(b"To-Path: ", b"X-To-Path: "), 400),
        (send().replace(b"msrp://bob", b"http://bob"), 400),
        (send(b"h\xff\x00"), 200),  # the body is binary
        (send().replace(b"m0000001", b"m\xff"), 400),  # headers are UTF-8 (§9)
    ],
)  # fmt: skip
def test_malformed_requests_are_answered(data: bytes, status: int) -> None:
    if status == 200:
        assert isinstance(parse_message(data), MsrpRequest)
        return
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    err = info.value
    assert err.status == status and not err.fatal and err.transaction_id == "tid00001"
    answer = reports.error_response(err, BOB)
    if err.from_path:
        assert answer is not None and answer.code == status
        assert answer.to_path == (ALICE,) and parse_message(serialize(answer)) == answer


def test_report_rules_and_non_send_body_limit() -> None:
    report = (
        f"MSRP r0000001 REPORT\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\n"
        "Message-ID: m0000001\r\n{extra}-------r0000001$\r\n"
    )
    assert isinstance(parse_message(report.format(extra="Status: 000 200 OK\r\n").encode()),
                      MsrpRequest)  # fmt: skip
    for extra in ("", "Status: 000 200 OK\r\nSuccess-Report: no\r\n"):
        with pytest.raises(RemoteProtocolError) as info:
            parse_message(report.format(extra=extra).encode())
        assert reports.error_response(info.value, BOB) is None  # never answer a REPORT
    big = send(b"x" * 10241).replace(b" SEND\r\n", b" NICKNAME\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(big)
    assert info.value.status == 413 and info.value.method == "NICKNAME"
    unknown = parse_message(big.replace(b"x" * 10241, b"x"))
    assert isinstance(unknown, MsrpRequest) and unknown.method == "NICKNAME"  # 501: caller's


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"MSRP ab SEND\r\n-------ab$\r\n",  # ident is 4 to 32 characters
        b"MSRP abcd send\r\n-------abcd$\r\n",
        b"MSRP abcd 20 OK\r\n-------abcd$\r\n",
        send().replace(b"$\r\n", b"$"),  # no end-line
        send() + b"x",
    ],
)
def test_unframed_input_is_fatal(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.fatal
    assert reports.error_response(info.value) is None


def test_response_with_body_is_rejected_and_not_answered() -> None:
    data = f"MSRP abcd 200 OK\r\nTo-Path: {ALICE}\r\nFrom-Path: {BOB}\r\n\r\nx\r\n-------abcd$\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data.encode())
    assert info.value.method is None and reports.error_response(info.value, BOB) is None


# -- serializer ------------------------------------------------------------------------------


def test_build_refuses_what_the_parser_would_cut_elsewhere() -> None:
    with pytest.raises(LocalProtocolError):
        MsrpRequest.build("abcd1234", "SEND", [BOB], [ALICE], body=b"x-------abcd1234+y",
                          content_type="text/plain")  # fmt: skip
    with pytest.raises(LocalProtocolError):
        MsrpRequest.build("abcd1234", "SEND", [BOB], [ALICE], body=b"x")  # no Content-Type
    with pytest.raises(LocalProtocolError):
        MsrpRequest.build("abcd1234", "SEND", [BOB], [ALICE], [("X", "a\r\nb")])
    with pytest.raises(LocalProtocolError):
        MsrpRequest.build("ab", "SEND", [BOB], [ALICE])
    with pytest.raises(LocalProtocolError):  # would parse back without the space
        MsrpRequest.build("abcd1234", "AUTH", [BOB], [ALICE], [("X", " a")])
    with pytest.raises(LocalProtocolError):  # would not encode as UTF-8 (§9)
        MsrpRequest.build("abcd1234", "AUTH", [BOB], [ALICE], [("X", "\udcff")])
    with pytest.raises(LocalProtocolError):
        serialize(MsrpResponse("abcd1234", 200, "", (("To-Path", str(ALICE)),)))
    ok = MsrpRequest.build("abcd1234", "SEND", [BOB], [ALICE], [("Message-ID", "m0000001")],
                           body=b"-------abcd1234", content_type="text/plain")  # fmt: skip
    assert parse_message(serialize(ok)) == ok  # no flag after it: not an end-line


ident = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}", fullmatch=True)
uris = st.sampled_from([ALICE, BOB, RELAY, parse_uri("msrp://[2001:db8::1]:9/s;tcp")])
hvalues = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
                  max_size=30).map(str.strip)  # fmt: skip
tricky_bodies = st.lists(
    st.sampled_from([b"-------", b"\r\n", b"$", b"+", b"#", b"-", b"a", b"\r\n\r\n", b"\x00"])
    | st.binary(max_size=20),
    max_size=12,
).map(b"".join)


@st.composite
def requests(draw: st.DrawFn) -> MsrpRequest:
    tid = draw(ident)
    body = draw(st.none() | tricky_bodies)
    extra = draw(st.lists(st.tuples(st.sampled_from(["X-Foo", "Subject", "Ext"]), hvalues),
                          max_size=3))  # fmt: skip
    headers = [("Message-ID", draw(ident)), *extra]
    if draw(st.booleans()):
        start = draw(st.integers(1, 10**6))
        size = len(body or b"")
        end = draw(st.sampled_from([None, start - 1 + size]))
        total = draw(st.sampled_from([None, start - 1 + size + draw(st.integers(0, 9))]))
        headers.insert(1, ("Byte-Range", str(ByteRange(start, end, total))))
    to = draw(st.lists(uris, min_size=1, max_size=3))
    flag = draw(st.sampled_from(["$", "+", "#"]))
    ctype = None if body is None else "text/plain; charset=utf-8"
    try:
        return MsrpRequest.build(tid, "SEND", to, [ALICE], headers, body=body,
                                 content_type=ctype, flag=flag)  # fmt: skip
    except LocalProtocolError:
        return MsrpRequest.build(tid + "z" if len(tid) < 32 else "zzzz", "SEND", to, [ALICE],
                                 headers, body=None, flag=flag)  # fmt: skip


@PROPS
@given(requests())
def test_serialize_parse_round_trip(request: MsrpRequest) -> None:
    wire = serialize(request)
    again = parse_message(wire)
    assert again == request and serialize(again) == wire


@PROPS
@given(tricky_bodies, ident)
def test_contains_end_line_is_exact(body: bytes, tid: str) -> None:
    """Whether the body would end the request early, checked against the framer."""
    try:
        req = MsrpRequest.build(tid, "SEND", [BOB], [ALICE], [("Message-ID", "m0000001")],
                                body=body, content_type="a/b")  # fmt: skip
    except LocalProtocolError:
        assert contains_end_line(body, tid)
        return
    assert not contains_end_line(body, tid)
    events = MsrpFramer().feed(serialize(req), 0.0)
    assert events == [Frame(serialize(req))]


# -- framing ---------------------------------------------------------------------------------


def _feed_all(framer: MsrpFramer, data: bytes, cuts: list[int]) -> list[FramerEvent]:
    events: list[FramerEvent] = []
    at = 0
    for cut in sorted(cuts):
        events += framer.feed(data[at:cut], 1.0)
        at = cut
    return events + framer.feed(data[at:], 1.0)


@PROPS
@given(st.lists(requests(), min_size=1, max_size=4), st.data())
def test_framer_cuts_the_same_frames_whatever_the_chunking(
    msgs: list[MsrpRequest], data: st.DataObject
) -> None:
    stream = b"".join(serialize(m) for m in msgs)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    limit = data.draw(st.sampled_from([8, 64, 1 << 20]))
    whole = MsrpFramer(max_chunk_size=limit).feed(stream, 1.0)
    framer = MsrpFramer(max_chunk_size=limit)
    assert _feed_all(framer, stream, cuts) == whole and framer.buffered == 0
    assert len(whole) == len(msgs)
    for event, msg in zip(whole, msgs, strict=True):
        if isinstance(event, Frame):
            assert parse_message(event.data) == msg
        else:
            assert len(msg.body or b"") > limit and event.error.status == 413
            assert event.error.transaction_id == msg.transaction_id
            assert event.flag == msg.flag


def test_oversized_chunk_is_dropped_and_answered_413_with_bounded_memory() -> None:
    framer = MsrpFramer(max_chunk_size=100)
    data = send(b"x" * 10000, headers=(("Message-ID", "m0000001"), ("Byte-Range", "1-*/*")),
                flag="+")  # fmt: skip
    peak = 0
    events: list[FramerEvent] = []
    for i in range(0, len(data), 7):
        events += framer.feed(data[i : i + 7], 0.0)
        peak = max(peak, framer.buffered)
    assert peak < 400  # head (~130) + limit + an end-line + one feed
    [event] = events
    assert isinstance(event, Oversized) and event.flag == "+"
    answer = reports.error_response(event.error)
    assert answer is not None and answer.code == 413 and answer.comment == "Message Too Large"
    assert answer.to_path == (ALICE,) and answer.from_path == (BOB,)
    assert framer.feed(send(b"next"), 0.0) == [Frame(send(b"next"))]  # the stream survives


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"GET / HTTP/1.1\r\n", "not MSRP"),
        (b"MSRP " + b"a" * 2000, "overlong start line"),
        (b"MSRP abcd SEND\r\nTo-Path: " + b"x" * 20000, "overlong header section"),
        (b"MSRP abcd SEND\r\n" + b"H: v\r\n" * 4000, "too many header lines"),
        (b"\r\n\r\nMSRP abcd SEND\r\n", "garbage between messages"),
    ],
)
def test_hostile_framing_is_fatal_and_bounded(data: bytes, why: str) -> None:
    framer = MsrpFramer(max_header_size=16384)
    with pytest.raises(RemoteProtocolError) as info:
        for i in range(0, len(data), 512):
            framer.feed(data[i : i + 512], 0.0)
            assert framer.buffered < 16384 + 2048, why
    assert info.value.fatal, why
    with pytest.raises(RemoteProtocolError):
        framer.feed(b"MSRP", 0.0)  # closed for good


def test_slowloris_partial_message_expires() -> None:
    framer = MsrpFramer(partial_timeout=30.0)
    assert framer.deadline is None
    framer.feed(send(b"hello")[:40], 100.0)
    assert framer.deadline == 130.0
    framer.expire(129.0)
    framer.feed(send(b"hello")[40:60], 129.5)  # trickling does not move the deadline
    assert framer.deadline == 130.0
    with pytest.raises(RemoteProtocolError) as info:
        framer.expire(130.0)
    assert info.value.fatal and info.value.status == 408


def test_deadline_restarts_with_each_message() -> None:
    framer = MsrpFramer(partial_timeout=30.0)
    one, two = send(b"a"), send(b"b", tid="tid00002")
    assert framer.feed(one + two[:10], 5.0) == [Frame(one)]
    assert framer.deadline == 35.0  # the leftover bytes arrived at 5.0
    assert framer.feed(two[10:], 20.0) == [Frame(two)] and framer.deadline is None


def test_error_after_complete_frames_waits_in_error() -> None:
    framer = MsrpFramer()
    assert framer.feed(send() + b"JUNK\r\n", 0.0) == [Frame(send())]
    assert framer.error is not None and framer.error.fatal


# -- chunks ----------------------------------------------------------------------------------


@PROPS
@given(
    tricky_bodies | st.binary(max_size=1500),
    st.integers(1, 700),
    st.randoms(use_true_random=False),
    st.booleans(),
)
def test_chunk_and_reassemble_in_any_order(
    body: bytes, size: int, rnd: object, through_wire: bool
) -> None:
    size = max(size, len(body) // 40 + 1)  # at most ~40 chunks: keep the run short
    chunks = chunk_message(body, message_id="m0000001", to_path=[BOB], from_path=[ALICE],
                           content_type="text/plain", chunk_size=size,
                           headers=[("Success-Report", "yes")])  # fmt: skip
    assert len(chunks) == max(1, -(-len(body) // size))
    assert [c.flag for c in chunks] == ["+"] * (len(chunks) - 1) + ["$"]
    assert all(c.get("Success-Report") == "yes" for c in chunks)
    assert b"".join(c.body or b"" for c in chunks) == body
    if through_wire:
        stream = b"".join(serialize(c) for c in chunks)
        events = MsrpFramer().feed(stream, 0.0)
        chunks = [parse_message(e.data) for e in events if isinstance(e, Frame)]  # type: ignore[misc]
    order = list(chunks)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    r = Reassembler(max_message_size=4096)
    results = [r.receive(c, float(i)) for i, c in enumerate(order)]
    assert all(x is None for x in results[:-1]) and len(r) == 0
    done = results[-1]
    assert isinstance(done, Complete) and done.body == body and done.message_id == "m0000001"


def _chunk(tid: str, byte_range: str, body: bytes, flag: str) -> MsrpRequest:
    headers = [("Message-ID", "m0000001"), ("Byte-Range", byte_range)]
    return MsrpRequest.build(tid, "SEND", [BOB], [ALICE], headers, body=body,
                             content_type="a/b", flag=flag)  # type: ignore[arg-type]  # fmt: skip


def test_duplicated_chunks_are_accepted_conflicting_overlaps_are_not() -> None:
    body = bytes(range(256)) * 4
    a, b, c = chunk_message(body, message_id="m0000001", to_path=[BOB], from_path=[ALICE],
                            content_type="a/b", chunk_size=400)  # fmt: skip
    r = Reassembler()
    assert r.receive(a, 0) is None and r.receive(a, 1) is None  # a duplicate (§7.3.1)
    overlap = _chunk("over0001", f"300-500/{len(body)}", body[299:500], "+")
    assert r.receive(overlap, 2) is None
    conflict = _chunk("over0002", f"390-410/{len(body)}", b"Z" * 21, "+")
    with pytest.raises(RemoteProtocolError) as info:
        r.receive(conflict, 3)
    assert info.value.status == 400 and len(r) == 0  # the message is dropped
    answer = reports.error_response(info.value)
    assert answer is not None and answer.code == 400 and answer.transaction_id == "over0002"
    r = Reassembler()
    for chunk in (c, b, a):
        done = r.receive(chunk, 0)
    assert isinstance(done, Complete) and done.body == body
    assert r.receive(b, 1) == Duplicate("m0000001") and len(r) == 0  # delivered once


@pytest.mark.parametrize(
    ("ranges", "status"),
    [
        ([("1-10/20", b"x" * 10, "+"), ("11-20/30", b"y" * 10, "$")], 400),  # totals differ
        ([("11-20/20", b"y" * 10, "$"), ("21-25/*", b"z" * 5, "+")], 400),  # past the end
        ([("11-20/*", b"y" * 10, "+"), ("1-5/*", b"x" * 5, "$")], 400),  # end before data
        ([("1-10/5000", b"x" * 10, "+")], 413),  # declared total over the limit
        ([("4000-*/*", b"x" * 200, "+")], 413),  # a chunk reaching past the limit
    ],
)
def test_inconsistent_or_oversized_byte_ranges(
    ranges: list[tuple[str, bytes, str]], status: int
) -> None:
    r = Reassembler(max_message_size=4096)
    with pytest.raises(RemoteProtocolError) as info:
        for i, (br, body, flag) in enumerate(ranges):
            r.receive(_chunk(f"tid0000{i}", br, body, flag), 0.0)
    assert info.value.status == status and len(r) == 0


def test_partial_message_bounds_abort_and_expiry() -> None:
    r = Reassembler(max_partial=2, timeout=60.0)

    def first_chunk(mid: str) -> MsrpRequest:
        return MsrpRequest.build(random_id(), "SEND", [BOB], [ALICE],
                                 [("Message-ID", mid), ("Byte-Range", "1-3/10")],
                                 body=b"abc", content_type="a/b", flag="+")  # fmt: skip

    one, two = first_chunk("mid00001"), first_chunk("mid00002")
    assert r.receive(one, 0.0) is None and r.receive(two, 10.0) is None
    with pytest.raises(RemoteProtocolError) as info:
        r.receive(first_chunk("mid00003"), 11.0)
    assert info.value.status == 413
    abort = abort_request(one, 4)
    assert abort.flag == "#" and str(abort.byte_range) == "4-3/10" and abort.body == b""
    assert parse_message(serialize(abort)) == abort
    assert r.receive(abort, 12.0) == Aborted("mid00001", 3)
    assert r.deadline == 70.0 and r.expire(69.0) == []
    [gone] = r.expire(70.0)
    assert gone.message_id == "mid00002" and gone.received == 3 and len(r) == 0
    assert r.deadline is None


def test_empty_message_is_one_chunk_1_0_0() -> None:
    [only] = chunk_message(b"", message_id="m0000001", to_path=[BOB], from_path=[ALICE],
                           content_type="text/plain")  # fmt: skip
    assert str(only.byte_range) == "1-0/0" and only.body == b"" and only.flag == "$"
    r = Reassembler(recent=1)
    assert r.receive(only, 0.0) == Complete("m0000001", b"", "text/plain", only)
    assert r.receive(only, 0.0) == Duplicate("m0000001")


def test_chunk_ids_avoid_the_end_line_in_the_body() -> None:
    ids = iter(["abcd", "abcd", "efgh"])
    body = b"x\r\n-------abcd$\r\ny"
    [chunk] = chunk_message(body, message_id="m0000001", to_path=[BOB], from_path=[ALICE],
                            content_type="a/b", new_id=lambda: next(ids))  # fmt: skip
    assert chunk.transaction_id == "efgh"
    assert len(random_id()) == 16 and random_id() != random_id()


# -- reports ---------------------------------------------------------------------------------


def test_responses_follow_failure_report() -> None:
    msg = parse_message(send(headers=(("Message-ID", "m0000001"), ("Failure-Report", "partial"))))
    assert isinstance(msg, MsrpRequest)
    assert reports.response(msg, 200) is None  # no 200 with "partial" (§7.1.4)
    answer = reports.response(msg, 415)
    assert answer is not None and answer.comment == "Unsupported Media Type"
    report = reports.failure_report(msg, 415, new_id=lambda: "rep00001")
    assert report is not None and report.method == "REPORT"
    assert report.status == Status("000", 415, "Unsupported Media Type")
    assert str(report.byte_range) == "1-2/2" and report.to_path == (ALICE,)  # whole message
    assert parse_message(serialize(report)) == report


def test_response_paths_for_send_and_other_methods() -> None:
    via_relay = send().replace(
        f"From-Path: {ALICE}".encode(), f"From-Path: {RELAY} {ALICE}".encode()
    )
    msg = parse_message(via_relay)
    assert isinstance(msg, MsrpRequest)
    answer = reports.response(msg, 481, "No such session")
    assert answer is not None and answer.to_path == (RELAY,)  # previous hop only (§7.2)
    assert answer.comment == "No such session" and answer.flag == "$"
    auth = parse_message(via_relay.replace(b" SEND\r\n", b" AUTH\r\n"))
    assert isinstance(auth, MsrpRequest)
    answer = reports.response(auth, 200)
    assert answer is not None and answer.to_path == (RELAY, ALICE)  # the full path back


def test_byte_range_grammar() -> None:
    assert parse_byte_range("1-*/*") == ByteRange(1, None, None)
    assert str(parse_byte_range("138-148/148")) == "138-148/148"
    for bad in ("1-2", "a-2/3", "1 - 2/3", "1-2/3/4", "9" * 20 + "-*/*"):
        with pytest.raises(RemoteProtocolError):
            parse_byte_range(bad)
    with pytest.raises(LocalProtocolError):
        ByteRange(0, None, None)


def test_our_uri_type_is_used_in_paths() -> None:
    msg = parse_message(send())
    assert isinstance(msg, MsrpRequest) and all(isinstance(u, MsrpUri) for u in msg.to_path)

"""Fuzzing the SIP parser, the UAS checks and stream framing (issue 12, bounded for CI).

Inputs are generated messages (every header the core parses eagerly or lazily, compact
forms, folding, IPv6, quoted display names, bodies) and RFC 4475 vectors, then mutated
at the byte level and at the grammar level (a header value swapped for a hostile one, a
header duplicated or dropped, a line cut). Properties:

- only `SipError` subclasses escape parse_message, validate_request/validate_response,
  error_response, serialize and StreamFramer (RFC 4475 §1: a parser meets garbage);
- a request the parser accepts can be serialized and parsed back to an equal message
  (what we accept, we can forward);
- every `RemoteProtocolError` for a request either builds no answer (no Via, ACK) or an
  answer that serializes and parses back with the status the error carries;
- the framer cuts the same frames whatever the chunking, and never buffers beyond its
  bound plus one chunk.

The recorded long run (scripts/fuzz_long.py, docs/reliability.md) feeds a million inputs
through the same functions; here each test runs a few hundred derandomized examples.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
from pathlib import Path
from types import FrameType

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip.abnf import fold_re
from gateway.sip.errors import DropMessage, RemoteProtocolError, SipError
from gateway.sip.framing import Frame, FramerEvent, KeepAlivePing, KeepAlivePong, StreamFramer
from gateway.sip.message import SipMessage, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.validate import (
    GATEWAY_POLICY,
    error_response,
    validate_request,
    validate_response,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc4475"
SAMPLES = [
    (VECTORS / e["file"]).read_bytes()
    for e in json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))
]

# Reproducible in CI: a fixed example sequence, no example database.
FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- generated messages --------------------------------------------------------------------

METHODS = ["MESSAGE", "OPTIONS", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REGISTER", "INVITE",
           "ACK", "BYE", "CANCEL", "INFO", "X-NEW"]  # fmt: skip
tokens = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-.!%*_+`'~", min_size=1,
                 max_size=10)  # fmt: skip
hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    st.from_regex(r"127\.0\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    st.sampled_from(["[::1]", "[2001:db8::10]", "[fe80::1%25eth0]"]),
)
ports = st.none() | st.integers(0, 70000)


def _hostport(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


@st.composite
def sip_uris(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["sip", "sips", "SIP", "tel", "im", "pres", "mailto"]))
    user = draw(st.none() | st.from_regex(r"[a-z0-9%!~*'().+_-]{1,10}", fullmatch=True))
    params = "".join(
        f";{k}" + (f"={v}" if v else "")
        for k, v in draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["transport", "lr", "maddr", "gr", "ob", "x"]),
                    st.none() | tokens,
                ),
                max_size=3,
            )
        )
    )
    headers = draw(st.sampled_from(["", "", "?Subject=hi", "?a=b&c=d"]))
    userinfo = f"{user}@" if user else ""
    return f"{scheme}:{userinfo}{_hostport(draw(hosts), draw(ports))}{params}{headers}"


@st.composite
def name_addrs(draw: st.DrawFn) -> str:
    uri = draw(sip_uris())
    display = draw(st.sampled_from(["", '"Bob" ', '"a \\"q\\" b" ', "Alice ", '"" ', "é "]))
    tag = draw(st.sampled_from(["", ";tag=" + draw(tokens)]))
    if display or draw(st.booleans()):
        return f"{display}<{uri}>{tag}"
    return f"{uri}{tag}"


@st.composite
def vias(draw: st.DrawFn) -> str:
    transport = draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "udp"]))
    host = _hostport(draw(hosts), draw(ports))
    extra = draw(st.sampled_from(["", ";rport", ";received=192.0.2.1", ";maddr=224.2.0.1;ttl=1"]))
    one = f"SIP/2.0/{transport} {host};branch=z9hG4bK{draw(tokens)}{extra}"
    return one if draw(st.booleans()) else f"{one}, SIP/2.0/UDP {draw(hosts)};branch=z9hG4bKb"


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """A wire message, mostly well formed (compact names and folding included)."""
    method = draw(st.sampled_from(METHODS))
    body = draw(st.binary(max_size=60))
    headers: list[tuple[str, str]] = [
        ("Via", draw(vias())),
        ("From", draw(name_addrs())),
        ("To", draw(name_addrs())),
        ("Call-ID", draw(tokens) + "@" + draw(hosts)),
        ("CSeq", f"{draw(st.integers(0, 2**32))} {draw(st.sampled_from([method, 'BYE']))}"),
        ("Max-Forwards", str(draw(st.integers(0, 300)))),
    ]
    optional = [
        ("Contact", draw(st.sampled_from(["*", "<sip:c@h>;expires=60", "<sip:a@b>, <sip:c@d>"]))),
        ("Route", "<sip:p1@h;lr>, <sip:p2@h;lr>"),
        ("Record-Route", "<sip:rr@h;lr>"),
        (
            "Content-Type",
            draw(
                st.sampled_from(
                    [
                        "text/plain;charset=UTF-8",
                        "message/cpim",
                        "application/pidf+xml",
                        "multipart/mixed;b=x",
                        "application/x-unknown",
                    ]
                )
            ),
        ),
        ("Accept", draw(st.sampled_from(["application/pidf+xml", "*/*", "text/*;q=0.5"]))),
        ("Require", draw(st.sampled_from(["gruu", "100rel", "outbound, path"]))),
        ("Supported", "gruu, path"),
        ("Event", draw(st.sampled_from(["presence", "presence;id=1", "dialog.winfo"]))),
        ("Expires", str(draw(st.integers(0, 2**33)))),
        ("Subscription-State", "active;expires=60"),
        ("Content-Encoding", draw(st.sampled_from(["identity", "gzip"]))),
    ]
    headers += draw(st.lists(st.sampled_from(optional), max_size=5, unique_by=lambda h: h[0]))
    if draw(st.booleans()):
        headers.append(("Content-Length", str(len(body))))
    compact = {"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m",
               "Content-Type": "c", "Content-Length": "l", "Supported": "k",
               "Event": "o"}  # fmt: skip
    lines = []
    for long_name, value in draw(st.permutations(headers)):
        use_compact = long_name in compact and draw(st.integers(0, 4)) == 0
        name = compact[long_name] if use_compact else long_name
        sep = draw(st.sampled_from([": ", ":", " : ", ":\r\n "]))  # HCOLON, folding (§7.3.1)
        lines.append(f"{name}{sep}{value}")
    if draw(st.integers(0, 3)) == 0:
        start = f"SIP/2.0 {draw(st.integers(100, 699))} {draw(st.sampled_from(['OK', '', 'Ré']))}"
    else:
        start = f"{method} {draw(sip_uris())} SIP/2.0"
    return ("\r\n".join([start, *lines]) + "\r\n\r\n").encode() + body


# -- mutations -------------------------------------------------------------------------------

HOSTILE_VALUES = [
    "", " ", "\x00", "\xff", "9" * 40, "-1", "4294967296", "18446744073709551616",
    "<", ">", "<<<<sip:a@b>>>>", '"', '"unterminated', "\\", ";", ";;;;;;;;", ",,,,",
    "=", "sip:", "sip:@", "sip:[::1", "sip:[zz::1]", "sip:a@b:99999999999",
    "SIP/2.0/UDP", "SIP/2.0/UDP [::1", "SIP/2.0/UDP h;branch", "1 ", "1 INVITE extra",
    "*", "*, <sip:a@b>", "a" * 3000, ";x=" + '"' * 101, "%00%ff%", "é\u202e\ud800",
    "text/", "/plain", "text/plain;charset=", "presence;id", "0x10", "1e9",
]  # fmt: skip
TOKENS = [b"\r\n", b"\r\n\r\n", b" ", b"\t", b":", b";", b",", b'"', b"<", b">", b"%",
          b"\x00", b"\xff", b"\\", b"9" * 40, b"\r", b"\n", b"\r\n ", b"=", b"@"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "value"]))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "dup" and data:
            end = data.find(b"\r\n", pos)  # duplicate one header line (§3.3.8 singletons)
            start = data.rfind(b"\r\n", 0, pos)
            if 0 <= start < end:
                data[end:end] = data[start:end]
        elif kind == "value":
            colon = data.find(b":", pos)  # replace the value of the header at `pos`
            end = data.find(b"\r\n", colon)
            if 0 <= colon < end:
                data[colon + 1 : end] = draw(st.sampled_from(HOSTILE_VALUES)).encode(
                    "utf-8", "surrogatepass"
                )
        else:
            del data[pos:]
    return bytes(data)


inputs = st.one_of(
    messages(),
    mutated(messages()),
    mutated(st.sampled_from(SAMPLES)),
    st.binary(max_size=300),
)


def _process(data: bytes) -> None:
    """What the endpoint does with a datagram (SipEndpoint's receive path, pure part)."""
    try:
        msg = parse_message(data)
    except DropMessage:
        return
    except RemoteProtocolError as exc:
        _check_answer(exc)
        return
    if isinstance(msg, SipResponse):
        with contextlib.suppress(DropMessage):
            validate_response(msg)
        return
    try:
        validate_request(msg, GATEWAY_POLICY, size=len(data))
    except RemoteProtocolError as exc:
        _check_answer(exc)
        return
    # accepted requests can be forwarded: serialize -> parse gives the same request
    _assert_round_trip(msg)


def _key(m: SipMessage) -> tuple[object, ...]:
    """What a round trip must keep: all but Content-Length, which serialize always writes
    from the body (RFC 3261 §20.14)."""
    start = (m.method, m.uri) if isinstance(m, SipRequest) else (m.status, m.reason)
    headers = [(n, v) for n, v in m.headers if n != "Content-Length"]
    return (type(m), start, headers, m.body)


def _assert_round_trip(msg: SipMessage) -> None:
    again = parse_message(serialize(msg))
    assert _key(again) == _key(msg)


def _check_answer(exc: RemoteProtocolError) -> None:
    """The answer (if any) carries the error's status and serializes; its header fields
    are the request's, copied verbatim, so they need not parse again."""
    answer = error_response(exc)
    if answer is None:
        return
    assert answer.status == exc.status
    assert serialize(answer).startswith(f"SIP/2.0 {exc.status} ".encode())


@FUZZ
@given(inputs)
def test_datagrams_are_parsed_answered_or_dropped(data: bytes) -> None:
    _process(data)


@FUZZ
@given(messages())
def test_generated_requests_are_forwardable_or_answered(data: bytes) -> None:
    """No SipError at all from the checks downstream of a successful parse: a message we
    parsed either passes §8.2 or is answered with a status, and round-trips."""
    try:
        msg = parse_message(data)
    except SipError:
        return
    if isinstance(msg, SipRequest):
        try:
            validate_request(msg, GATEWAY_POLICY)
        except RemoteProtocolError as exc:
            assert 400 <= exc.status <= 699
            _check_answer(exc)
            return
    _assert_round_trip(msg)


@FUZZ
@given(st.integers(1, 8), st.integers(0, 4))
def test_oversized_header_section_is_513(kib: int, extra: int) -> None:
    """Oversized headers: 513 (datagram), fatal 513 on a stream; never an exception else."""
    line = "X-Pad: " + "a" * 1000 + "\r\n"
    head = (
        "OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKo\r\n"
        "From: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\nCall-ID: o\r\n"
        "CSeq: 1 OPTIONS\r\n"
    )
    data = (head + line * (kib + extra) + "Content-Length: 0\r\n\r\n").encode()
    limit = kib * 1000
    try:
        parse_message(data, max_header_size=limit)
        raise AssertionError("a header section over the bound was accepted")
    except RemoteProtocolError as exc:
        assert exc.status == 513
        # the bounded parser stops before reading Via, so there is nobody to answer
        # (the endpoint drops it; a datagram over max_message_size with a readable head
        # gets its 513 from the endpoint, tests/unit/test_endpoint_policy.py)
        assert error_response(exc) is None
    framer = StreamFramer(max_message_size=limit)
    try:
        framer.feed(data)
        raise AssertionError("the framer buffered beyond its bound")
    except RemoteProtocolError as exc:
        assert exc.fatal and exc.status == 513


# -- stream framing ----------------------------------------------------------------------------


def _feed_all(framer: StreamFramer, chunks: list[bytes]) -> tuple[list[FramerEvent], bool]:
    """Events until the first framing error; (events, failed). Checks the buffer bound."""
    events: list[FramerEvent] = []
    for chunk in chunks:
        try:
            events += framer.feed(chunk)
        except RemoteProtocolError as exc:
            assert exc.fatal
            return events, True
        if framer.error is not None:
            assert framer.error.fatal
            return events, True
        assert framer.buffered <= framer.max_message_size + len(chunk)
    return events, False


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        parts.append(
            draw(
                st.one_of(
                    messages(),
                    mutated(messages()),
                    st.sampled_from([b"\r\n", b"\r\n\r\n", b"\r\n\r\n\r\n"]),
                    st.sampled_from(SAMPLES),
                )
            )
        )
    return b"".join(parts)


@FUZZ
@given(streams(), st.lists(st.integers(1, 200), min_size=1, max_size=30))
def test_framing_does_not_depend_on_chunking(stream: bytes, cuts: list[int]) -> None:
    whole, whole_failed = _feed_all(StreamFramer(2048), [stream])
    chunks, pos, i = [], 0, 0
    while pos < len(stream):
        size = cuts[i % len(cuts)]
        chunks.append(stream[pos : pos + size])
        pos, i = pos + size, i + 1
    pieces, pieces_failed = _feed_all(StreamFramer(2048), chunks)
    # keep-alives may differ (a CRLF seen alone is a pong, RFC 5626 §3.5.1), frames and
    # framing errors may not
    assert pieces_failed == whole_failed
    assert _frames(pieces) == _frames(whole)
    for event in pieces:
        assert isinstance(event, Frame | KeepAlivePing | KeepAlivePong)
        if isinstance(event, Frame):
            _process(event.data)


def _frames(events: list[FramerEvent]) -> list[bytes]:
    return [e.data for e in events if isinstance(e, Frame)]


@FUZZ
@given(st.binary(max_size=600), st.integers(64, 1024))
def test_framer_on_random_bytes(data: bytes, bound: int) -> None:
    framer = StreamFramer(bound)
    _feed_all(framer, [data[i : i + 37] for i in range(0, len(data), 37)])


# -- regressions found by the fuzzers ----------------------------------------------------------


def test_header_octets_that_are_not_utf8_are_a_400() -> None:
    """Found by the wire fuzzer (tests/integration/test_fuzz_wire_netns.py): a Call-ID
    with a raw 0xDD octet passed the UAS checks as a surrogate escape, became an XMPP
    <thread> that slixmpp could not encode (after the MESSAGE was answered 200), and a
    subscription the SQLite store could not write."""
    data = (
        b"MESSAGE sip:juliet@localhost SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKu\r\n"
        b"From: <sip:romeo@sip.localhost>;tag=f\r\nTo: <sip:juliet@localhost>\r\n"
        b"Call-ID: fz@127.0.\xdd.1\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    try:
        validate_request(msg, GATEWAY_POLICY)
        raise AssertionError("accepted")
    except RemoteProtocolError as exc:
        assert exc.status == 400 and "Call-ID" in exc.message
    fine = parse_message(data.replace(b"\xdd", "é".encode()))
    assert isinstance(fine, SipRequest)
    validate_request(fine, GATEWAY_POLICY)  # UTF-8 is fine


RFC_FOLD = re.compile(r"[ \t]*\r\n[ \t]+")  # LWS as RFC 3261 §7.3.1 writes it


@FUZZ
@given(st.lists(st.sampled_from([" ", "\t", "\r\n", "\r", "\n", "a", "\r\n ", ":"]), max_size=40))
def test_fold_re_matches_the_rfc_form(pieces: list[str]) -> None:
    """Found by scripts/fuzz_long.py: the RFC form of LWS is quadratic on a long run of
    white space that no CRLF follows; abnf.fold_re is linear and must unfold the same."""
    text = "".join(pieces)
    assert fold_re.sub(" ", text) == RFC_FOLD.sub(" ", text)


def test_fold_re_on_a_megabyte_of_tabs_terminates() -> None:
    """A hang guard, not a speed test: the quadratic form needs minutes for this input,
    the linear one milliseconds; the alarm only fires on the former."""

    def hang(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("fold_re did not finish: superlinear again")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        fold_re.sub(" ", "x" + "\t" * 1_000_000 + "\r" + "\t" * 10)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)

"""Fuzzing the MSRP parser, framer and reassembler (issue 18; bounded like test_fuzz_sip).

Inputs are the RFC 4975 vectors and generated messages, mutated at the byte level and at
the grammar level (a header value swapped for a hostile one, a line duplicated or cut, an
end-line look-alike inserted). Properties:

- only `MsrpError` subclasses escape parse_message, MsrpFramer.feed, Reassembler.receive
  and reports.error_response;
- what the parser accepts re-serializes to bytes it parses back to an equal message;
- every non-fatal `RemoteProtocolError` either builds no answer or one that serializes
  and parses back with the status the error carries;
- the framer gives the same events whatever the chunking, and its buffer stays under its
  bounds plus one feed.

Each test runs a few hundred derandomized examples.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.msrp import reports
from gateway.msrp.chunks import Reassembler
from gateway.msrp.errors import MsrpError, RemoteProtocolError
from gateway.msrp.framing import Frame, FramerEvent, MsrpFramer, Oversized
from gateway.msrp.message import MsrpRequest
from gateway.msrp.parser import parse_message
from gateway.msrp.serializer import serialize

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "msrp"
SAMPLES = [
    (VECTORS / e["file"]).read_bytes()
    for e in json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))
]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

tids = st.from_regex(r"[a-z0-9][a-z0-9.\-+%=]{3,10}", fullmatch=True)
uris = st.sampled_from([
    "msrp://a.example.com:7777/s1;tcp", "msrps://[::1]:2855/x+y=/z;tcp",
    "msrp://b.example.com:1;tcp", "MSRP://u@C.example:9/Q;TCP;p=1",
])  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    tid = draw(tids)
    to = " ".join(draw(st.lists(uris, min_size=1, max_size=3)))
    lines = [f"To-Path: {to}", f"From-Path: {draw(uris)}"]
    optional = [
        ("Message-ID", draw(tids)),
        ("Byte-Range", draw(st.sampled_from(["1-*/*", "1-5/5", "3-4/10", "1-0/0", "2-1/*"]))),
        ("Success-Report", draw(st.sampled_from(["yes", "no"]))),
        ("Failure-Report", draw(st.sampled_from(["yes", "no", "partial"]))),
        ("Status", draw(st.sampled_from(["000 200 OK", "000 413", "001 999 x"]))),
        ("Use-Path", draw(uris)),
        ("Expires", str(draw(st.integers(0, 2**33)))),
        ("WWW-Authenticate", 'Digest realm="r", nonce="n"'),
    ]
    lines += [f"{n}: {v}" for n, v in draw(st.lists(st.sampled_from(optional), max_size=5))]
    kind = draw(st.integers(0, 3))
    flag = draw(st.sampled_from("$+#"))
    if kind == 0:
        start = f"MSRP {tid} {draw(st.integers(0, 999)):03d} {draw(st.sampled_from(['OK', 'é']))}"
        return ("\r\n".join([start, *lines]) + f"\r\n-------{tid}{flag}\r\n").encode()
    method = draw(st.sampled_from(["SEND", "REPORT", "AUTH", "NICKNAME"]))
    start = f"MSRP {tid} {method}"
    if kind == 1:
        return ("\r\n".join([start, *lines]) + f"\r\n-------{tid}{flag}\r\n").encode()
    body = draw(st.binary(max_size=40) | st.sampled_from([b"-------", f"-------{tid}".encode()]))
    head = "\r\n".join([start, *lines, "Content-Type: text/plain"]) + "\r\n\r\n"
    return head.encode() + body + f"\r\n-------{tid}{flag}\r\n".encode()


HOSTILE = ["", " ", "\x00", "\xff", "9" * 40, "-1", "*", "1-*", "0-0/0", "1-2/1", "a" * 3000,
           "msrp://", "msrp://[::1];tcp", "msrp://h:99999/s;tcp", "000", "000 2000",
           "yes ", "é\u202e", "-------"]  # fmt: skip
TOKENS = [b"\r\n", b"\r\n\r\n", b" ", b":", b"\x00", b"\xff", b"-------", b"$", b"+", b"#",
          b"\r", b"\n", b"MSRP ", b"\r\n-------"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup", "value"]))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 16))]
        elif kind == "dup" and data:
            end = data.find(b"\r\n", pos)
            start = data.rfind(b"\r\n", 0, pos)
            if 0 <= start < end:
                data[end:end] = data[start:end]
        elif kind == "value":
            colon = data.find(b":", pos)
            end = data.find(b"\r\n", colon)
            if 0 <= colon < end:
                data[colon + 2 : end] = draw(st.sampled_from(HOSTILE)).encode()
        else:
            del data[pos:]
    return bytes(data)


inputs = st.one_of(
    messages(), mutated(messages()), mutated(st.sampled_from(SAMPLES)), st.binary(max_size=200)
)


def _check_error(err: RemoteProtocolError) -> None:
    answer = reports.error_response(err)
    if answer is None:
        return
    assert answer.code == err.status and not err.fatal
    assert parse_message(serialize(answer)) == answer


@FUZZ
@given(inputs)
def test_parse_answers_or_accepts(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except RemoteProtocolError as err:
        _check_error(err)
        return
    except MsrpError:
        return
    again = parse_message(serialize(msg))
    assert again == msg
    if isinstance(msg, MsrpRequest) and msg.method == "SEND":
        try:
            Reassembler(max_message_size=64).receive(msg, 0.0)
        except RemoteProtocolError as err:
            _check_error(err)


@FUZZ
@given(st.lists(inputs, min_size=1, max_size=4).map(b"".join), st.data())
def test_framer_on_hostile_streams(stream: bytes, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    limits = {"max_chunk_size": 16, "max_header_size": 256, "max_start_line": 64}

    def run(pieces: list[bytes]) -> tuple[list[FramerEvent], bool]:
        framer = MsrpFramer(**limits)  # type: ignore[arg-type]
        events: list[FramerEvent] = []
        try:
            for piece in pieces:
                events += framer.feed(piece, 0.0)
                assert framer.buffered <= 64 + 256 + 16 + 64 + len(piece)
                if framer.error is not None:
                    return events, True
        except RemoteProtocolError as err:
            assert err.fatal
            return events, True
        return events, False

    bounds = [0, *cuts, len(stream)]
    pieces = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    whole = run([stream])
    assert run(pieces) == whole
    for event in whole[0]:
        if isinstance(event, Oversized):
            _check_error(event.error)
        else:
            assert isinstance(event, Frame)
            try:
                parse_message(event.data)
            except RemoteProtocolError as err:
                _check_error(err)

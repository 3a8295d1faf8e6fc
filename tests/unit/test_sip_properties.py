"""Properties: parse(serialize(m)) == m, and mutated RFC 4475 vectors raise only SipError."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.errors import SipError
from gateway.sip.framing import Frame, StreamFramer
from gateway.sip.message import Headers, SipMessage, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.uri import SipUri
from gateway.sip.validate import GATEWAY_POLICY, validate_request, validate_response

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc4475"
SAMPLES = [
    (VECTORS / e["file"]).read_bytes()
    for e in json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))
]

tokens = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-.!%*_+`'~", min_size=1, max_size=12
)
hosts = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True)
users = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()&=+$,;?/", min_size=1, max_size=12)
values = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\x7f"),
    max_size=30,
).map(lambda s: s.strip(" \t"))
pchars = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/:&+$", min_size=1, max_size=10)
uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | users,
    host=hosts,
    port=st.none() | st.integers(1, 65535),
    params=st.lists(st.tuples(pchars, st.none() | pchars), max_size=3).map(tuple),
)


@st.composite
def messages(draw: st.DrawFn) -> SipMessage:
    method = draw(st.sampled_from(["MESSAGE", "OPTIONS", "SUBSCRIBE", "X-NEW"]))
    body = draw(st.binary(max_size=40))
    headers = [
        ("Via", f"SIP/2.0/UDP {draw(hosts)};branch=z9hG4bK{draw(tokens)}"),
        ("From", f"<{draw(uris)}>;tag={draw(tokens)}"),
        ("To", f"<{draw(uris)}>"),
        ("Call-ID", draw(tokens)),
        ("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"),
        *draw(st.lists(st.tuples(tokens.map(lambda t: "X-" + t), values), max_size=4)),
        ("Content-Length", str(len(body))),
    ]
    if draw(st.booleans()):
        return SipRequest(method, draw(uris), Headers(headers), body)
    reason = draw(values.filter(lambda s: "\r" not in s and "\n" not in s))
    return SipResponse(draw(st.integers(100, 699)), reason, Headers(headers), body)


@settings(max_examples=300, deadline=None)
@given(messages())
def test_parse_serialize_round_trip(m: SipMessage) -> None:
    wire = serialize(m)
    assert parse_message(wire) == m
    assert serialize(parse_message(wire)) == wire
    assert StreamFramer().feed(wire) == [Frame(wire)]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [b"\r\n", b" ", b":", b";", b",", b'"', b"<", b"%", b"\x00", b"\xff", b"9" * 40]
                )
            )
        elif kind == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            del data[pos:]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_mutations_raise_only_sip_errors(data: bytes) -> None:
    try:
        m = parse_message(data)
        if isinstance(m, SipRequest):
            validate_request(m, GATEWAY_POLICY)
        else:
            validate_response(m)
        serialize(m)
    except SipError:
        pass
    with contextlib.suppress(SipError):
        StreamFramer(4096).feed(data)

"""gateway.sip.coding: Content-Encoding of request bodies (RFC 3261 §20.12) undone for the TU."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.coding import decode_body, encodings_of
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from gateway.sip.validate import GATEWAY_POLICY, UasPolicy, validate_request

pytestmark = pytest.mark.unit


def message(body: bytes, coding: str | None, ctype: str = "message/imdn+xml") -> SipRequest:
    head = [
        "MESSAGE sip:juliet@localhost SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
        "Max-Forwards: 70",
        "From: <sip:romeo@sip.localhost>;tag=a",
        "To: <sip:juliet@localhost>",
        "Call-ID: c1",
        "CSeq: 1 MESSAGE",
        f"Content-Type: {ctype}",
    ]
    if coding is not None:
        head.append(f"Content-Encoding: {coding}")
    head.append(f"Content-Length: {len(body)}")
    req = parse_message(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    assert isinstance(req, SipRequest)
    return req


DOC = b"<imdn xmlns='urn:ietf:params:xml:ns:imdn'><message-id>x</message-id></imdn>" * 3


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("gzip", gzip.compress),
    ],
)
def test_decoded_for_the_tu(coding: str, encode: object) -> None:
    body = encode(DOC)  # type: ignore[operator]
    req = message(body, coding)
    out = decode_body(req, 65535)
    assert out.body == DOC
    assert "Content-Encoding" not in out.headers
    assert out.headers.get("Content-Length") == str(len(DOC))
    assert out.content_type is not None and out.content_type.mime == "message/imdn+xml"
    assert out.call_id == "c1" and out.method == "MESSAGE"


def test_codings_undone_in_reverse_order() -> None:
    req = message(gzip.compress(zlib.compress(DOC)), "deflate, gzip")
    assert encodings_of(req) == ["deflate", "gzip"]
    assert decode_body(req, 65535).body == DOC


def test_no_coding_is_the_same_request() -> None:
    req = message(DOC, None)
    assert decode_body(req, 65535) is req


@pytest.mark.parametrize(
    ("coding", "body", "status"),
    [
        ("deflate", b"not deflate at all", 400),
        ("gzip", zlib.compress(DOC), 400),
        ("deflate", zlib.compress(DOC)[:-6], 400),  # truncated
        ("deflate", zlib.compress(b"\0" * 1_000_000), 413),  # ~1 KB that inflates to 1 MB
        ("gzip", gzip.compress(b"a" * 70_000), 413),
        ("br", b"x", 415),
    ],
)
def test_bad_or_oversize_bodies_are_refused(coding: str, body: bytes, status: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(message(body, coding), 65535)
    assert info.value.status == status


def test_bomb_costs_at_most_the_limit() -> None:
    """The decompressor is asked for limit + 1 bytes, never for the whole output."""
    bomb = zlib.compress(b"\0" * 50_000_000)
    with pytest.raises(RemoteProtocolError) as info:
        decode_body(message(bomb, "deflate"), 1000)
    assert info.value.status == 413


@given(st.binary(max_size=3000), st.sampled_from(["deflate", "gzip"]))
def test_round_trip(data: bytes, coding: str) -> None:
    body = zlib.compress(data) if coding == "deflate" else gzip.compress(data)
    req = message(body, coding, "text/plain")
    assert decode_body(req, 65535).body == data or (not data and not body)


def test_policy_accepts_what_the_decoder_undoes() -> None:
    validate_request(message(zlib.compress(DOC), "deflate"), GATEWAY_POLICY)
    plain = UasPolicy(methods=GATEWAY_POLICY.methods, content_types=GATEWAY_POLICY.content_types)
    with pytest.raises(RemoteProtocolError) as info:
        validate_request(message(zlib.compress(DOC), "deflate"), plain)
    assert info.value.status == 415
    assert ("Accept-Encoding", "identity") in info.value.extra_headers

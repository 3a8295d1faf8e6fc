"""Parser and serializer behaviour beyond the RFC 4475 vectors (RFC 3261 §7, §18.3)."""

from __future__ import annotations

import pytest

from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.uri import SipUri

BASE = (
    "MESSAGE sip:bob@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/TCP pc.example.net;branch=z9hG4bK776asdhds;rport\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@example.com>\r\n"
    "From: <sip:alice@example.net>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710\r\n"
    "CSeq: 314159 MESSAGE\r\n"
    "Content-Type: text/plain\r\n"
    "Timestamp: 54\r\n"
    "Content-Length: 5\r\n\r\nhello"
)


def msg(text: str = BASE) -> SipRequest:
    m = parse_message(text.encode())
    assert isinstance(m, SipRequest)
    return m


def test_basic_request() -> None:
    m = msg()
    assert m.uri == SipUri(user="bob", host="example.com") and m.body == b"hello"
    assert m.from_tag == "1928301774" and m.to_tag is None and m.call_id == "a84b4c76e66710"
    assert m.top_via is not None and m.top_via.rport_requested


def test_leading_crlf_ignored() -> None:  # RFC 3261 §7.5
    assert msg("\r\n\r\n" + BASE) == msg()


def test_trailing_octets_ignored_and_short_body_rejected() -> None:  # §18.3
    assert msg(BASE + "garbage").body == b"hello"
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(BASE[:-1].encode())
    assert info.value.status == 400


def test_method_is_case_sensitive() -> None:  # RFC 3261 §7.1
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(BASE.replace("MESSAGE sip", "message sip").encode())
    # "message" is not MESSAGE: an unknown method whose CSeq mismatches -> 501 (RFC 4475 §3.1.2.18)
    assert info.value.status == 501


def test_percent_not_interpreted_outside_uris() -> None:
    m = msg(BASE.replace("a84b4c76e66710", "a%41b"))
    assert m.call_id == "a%41b"


def test_header_section_bound() -> None:
    big = BASE.replace("Timestamp: 54", "X-Big: " + "a" * 5000)
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(big.encode(), max_header_size=4096)
    assert info.value.status == 513
    assert msg(big).headers.get("X-Big") == "a" * 5000


def test_bare_lf_in_header_rejected() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_message(BASE.replace("Timestamp: 54\r\n", "Timestamp: 54\nX: 1\r\n").encode())


@pytest.mark.parametrize(
    "first",
    ["SIP/2.0 1000 Big", "SIP/2.0 99 Small", "SIP/2.0 abc OK", "SIP/3.0 200 OK", "SIP/2.0  200 OK"],
)
def test_bad_status_lines_dropped(first: str) -> None:
    with pytest.raises(DropMessage):
        parse_message(f"{first}\r\nContent-Length: 0\r\n\r\n".encode())


def test_response_without_reason_space_accepted() -> None:  # liberal, RFC 4475 §3.1.1.13
    resp = parse_message(b"SIP/2.0 180\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(resp, SipResponse) and (resp.status, resp.reason) == (180, "")


def test_make_response_rfc3261_8_2_6() -> None:
    req = msg(BASE.replace("Via: SIP", "Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\nVia: SIP", 1))
    resp = make_response(req, 200, to_tag="xyz", headers=[("Contact", "<sip:gw@example.org>")])
    assert resp.reason == "OK"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.to_tag == "xyz" and resp.from_tag == "1928301774"
    assert resp.cseq == req.cseq and resp.call_id == req.call_id
    assert "Timestamp" not in resp.headers and resp.headers.get("Contact") == "<sip:gw@example.org>"
    trying = make_response(req, 100, to_tag="xyz")
    assert trying.to_tag is None and trying.headers.get("Timestamp") == "54"  # §8.2.6.1
    tagged = msg(BASE.replace("Bob <sip:bob@example.com>", "<sip:bob@example.com>;tag=old"))
    assert make_response(tagged, 200, to_tag="new").to_tag == "old"


def test_serialize_canonical() -> None:
    m = msg(BASE.replace("Call-ID:", "i:").replace("Content-Length: 5", "l: 5"))
    wire = serialize(m.replace(body=b"hi"))
    assert b"\r\nCall-ID: a84b4c76e66710\r\n" in wire
    assert wire.endswith(b"Content-Length: 2\r\n\r\nhi")
    resp = SipResponse(486, "Busy Here", Headers([("CSeq", "1 INVITE")]))
    assert (
        serialize(resp) == b"SIP/2.0 486 Busy Here\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )


def test_messages_are_immutable() -> None:
    m = msg()
    with pytest.raises(AttributeError):
        m.method = "BYE"  # type: ignore[misc]
    changed = m.with_headers(m.headers.set("Max-Forwards", "69"))
    assert changed.max_forwards == 69 and m.max_forwards == 70


@pytest.mark.parametrize("data", [b"\r\n", b"\r\n\r\n", b"\r\n\r\n\r\n"])
def test_crlf_only_datagram_is_a_malformed_request_line(data: bytes) -> None:
    """Only the CRLFs ignored before a start-line (§7.5): 400, never a crash (the mypyc
    build raised SystemError here before the header end was kept at or after its start)."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    assert info.value.status == 400 and "Request-Line" in str(info.value)

"""Typed header views (RFC 3261 §20, §25; RFC 3581; RFC 5627; RFC 6665 §8.4) and Headers."""

from __future__ import annotations

import pytest

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import (
    AuthHeader,
    canonical_name,
    parse_accept,
    parse_auth,
    parse_content_type,
    parse_cseq,
    parse_delta_seconds,
    parse_event,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_subscription_state,
    parse_token_list,
    parse_via,
    split_comma,
)
from gateway.sip.message import Headers
from gateway.sip.uri import SipUri

# RFC 3261 §7.3.3 / §20 and RFC 6665 §8.4 compact forms
COMPACT = {
    "i": "Call-ID", "f": "From", "t": "To", "v": "Via", "m": "Contact", "l": "Content-Length",
    "c": "Content-Type", "s": "Subject", "k": "Supported", "e": "Content-Encoding",
    "o": "Event", "u": "Allow-Events", "r": "Refer-To", "b": "Referred-By", "x": "Session-Expires",
}  # fmt: skip


@pytest.mark.parametrize(("short", "long"), COMPACT.items())
def test_compact_forms(short: str, long: str) -> None:
    assert canonical_name(short) == long
    assert canonical_name(short.upper()) == long
    assert canonical_name(long.upper()) == long


def test_unknown_names_kept_verbatim() -> None:
    assert canonical_name("X-Foo") == "X-Foo"
    assert (
        canonical_name("cseq") == "CSeq"
        and canonical_name("WWW-authenticate") == "WWW-Authenticate"
    )


def test_split_comma_respects_quotes_and_brackets() -> None:
    value = '"a, b" <sip:x@y;p=1,2>;q=1 , <sip:z@w>'
    assert split_comma(value) == ['"a, b" <sip:x@y;p=1,2>;q=1', "<sip:z@w>"]


def test_via_rfc3581_and_params() -> None:
    (via,) = parse_via("SIP/2.0/udp client.example.com:5060;rport;branch=z9hG4bK74bf9;ttl=16")
    assert (via.transport, via.host, via.port, via.branch) == (
        "UDP",
        "client.example.com",
        5060,
        "z9hG4bK74bf9",
    )
    assert via.rport_requested and via.rport is None and via.ttl == 16 and via.rfc3261_branch
    filled = via.with_received("192.0.2.1", 9988)  # RFC 3581 §4
    assert filled.received == "192.0.2.1" and filled.rport == 9988
    assert str(filled) == (
        "SIP/2.0/UDP client.example.com:5060;rport=9988;branch=z9hG4bK74bf9;ttl=16"
        ";received=192.0.2.1"
    )
    assert parse_via(str(filled)) == [filled]


def test_via_ipv6_and_multiple() -> None:
    vias = parse_via(
        "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bKa;maddr=[2001:db8::1], SIP/2.0/TLS h"
    )
    assert [v.host for v in vias] == ["[2001:db8::9]", "h"]
    assert vias[0].maddr == "[2001:db8::1]" and vias[1].port is None


@pytest.mark.parametrize(
    "bad",
    [
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP h;;",
        "SIP/2.0/UDP h;branch=",
        "SIP/2.0/UDP h:99999",
    ],
)
def test_via_malformed(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_via(bad)


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Alice \\"A\\"" <sip:alice@atlanta.com;gr=x>;tag=1928301774;expires=60')
    assert na.display_name == 'Alice "A"' and na.tag == "1928301774" and na.expires == 60
    assert na.gr == "x"  # RFC 5627: gr inside <>
    outside = parse_name_addr("<sip:juliet@example.com>;gr=yn0")  # DIGEST §0: accept outside
    assert outside.gr == "yn0"
    bare = parse_name_addr("sip:bob@biloxi.com;tag=a6c85cf")
    assert (
        bare.display_name is None
        and bare.tag == "a6c85cf"
        and bare.uri == SipUri(user="bob", host="biloxi.com")
    )
    tokens = parse_name_addr("Bob Smith <sip:bob@b>")
    assert tokens.display_name == "Bob Smith"
    assert parse_name_addr(str(na)) == na


def test_contact_instance_and_q() -> None:
    (c1, c2) = parse_name_addr_list(
        '<sip:a@b>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";q=0.7,'
        " <sip:c@d>;q=x"
    )
    assert c1.instance == "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>" and c1.q == 0.7
    assert c2.q is None


@pytest.mark.parametrize(
    "bad", ['"open <sip:a@b>', "a, b <sip:a@b>", "< sip:a@b >", "<sip:a@b>;;", "sip:a@b?x=y"]
)
def test_name_addr_malformed(bad: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_name_addr(bad)


def test_cseq_32_bit() -> None:
    assert parse_cseq("0009  INVITE").seq == 9
    assert parse_cseq("4294967295 ACK").seq == 2**32 - 1
    for bad in ("4294967296 ACK", "1", "x INVITE", "-1 INVITE", "9" * 5000 + " ACK"):
        with pytest.raises(RemoteProtocolError):
            parse_cseq(bad)


def test_max_forwards() -> None:
    assert parse_max_forwards("0068") == 68
    assert parse_max_forwards("255") == 255
    assert parse_max_forwards("300") is None  # RFC 4475 §3.1.2.4: treat as absent
    with pytest.raises(RemoteProtocolError):
        parse_max_forwards("-1")


def test_delta_seconds() -> None:  # RFC 3261 §20.19
    assert parse_delta_seconds("3600") == 3600
    assert parse_delta_seconds("0") == 0
    assert parse_delta_seconds("1" * 100) == 3600
    assert parse_delta_seconds("soon") == 3600


def test_content_type_and_accept() -> None:
    ct = parse_content_type('Multipart/Mixed ; boundary="xyz";charset=UTF-8')
    assert (ct.mime, ct.boundary, ct.charset) == ("multipart/mixed", "xyz", "utf-8")
    ranges = parse_accept(["application/sdp;level=1, text/*", "*/*;q=0.1"])
    assert [r.mime for r in ranges] == ["application/sdp", "text/*", "*/*"]
    assert ranges[1].matches("TEXT/plain") and not ranges[0].matches("text/plain")
    assert parse_accept([""]) == []
    with pytest.raises(RemoteProtocolError):
        parse_content_type("text")


def test_token_lists() -> None:
    assert parse_token_list(["100rel, timer", "path", ""]) == ["100rel", "timer", "path"]
    with pytest.raises(RemoteProtocolError):
        parse_token_list(["a b"])


def test_event_rfc6665() -> None:
    ev = parse_event("presence.winfo;id=123;other=x")
    assert ev.package == "presence.winfo" and ev.id == "123"
    assert ev.matches(parse_event("presence.winfo ; id=123"))
    assert not ev.matches(parse_event("presence.winfo"))  # id never matches no-id
    assert not parse_event("presence").matches(parse_event("Presence"))  # byte-wise
    with pytest.raises(RemoteProtocolError):
        parse_event("presence;")


def test_subscription_state() -> None:
    st = parse_subscription_state("Active;expires=600")
    assert (st.state, st.expires, st.reason) == ("active", 600, None)
    term = parse_subscription_state("terminated;reason=Probation;retry-after=30")
    assert (term.state, term.reason, term.retry_after) == ("terminated", "probation", 30)


def test_auth_header() -> None:
    ch = parse_auth(
        'Digest realm="atlanta.com", qop="auth,auth-int", nonce="8452\\"cd",'
        " algorithm=MD5, stale=FALSE"
    )
    assert ch.scheme == "Digest" and ch.get("REALM") == "atlanta.com"
    assert ch.get("qop") == "auth,auth-int" and ch.get("nonce") == '8452"cd'
    assert ch.quoted == frozenset({"realm", "qop", "nonce"})
    assert parse_auth(str(ch)) == ch
    opaque = parse_auth("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
    assert opaque == AuthHeader("Basic", {}, frozenset(), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==")


def test_headers_model() -> None:
    h = Headers([("v", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b, SIP/2.0/UDP c"), ("x-a", " 1 ")])
    assert h.items()[0] == ("Via", "SIP/2.0/UDP a") and h.get("X-A") == "1"
    assert h.get_all("VIA") == ("SIP/2.0/UDP a", "SIP/2.0/UDP b, SIP/2.0/UDP c")
    assert h.values("v") == ("SIP/2.0/UDP a", "SIP/2.0/UDP b", "SIP/2.0/UDP c")
    assert "via" in h and "Route" not in h and h.count("Via") == 2
    assert h.prepend("Via", "SIP/2.0/TCP z").get("Via") == "SIP/2.0/TCP z"
    assert h.set("Via", "only").get_all("Via") == ("only",)
    assert h.set("Via", "only").items()[0] == ("Via", "only")  # replaced in place
    assert h.remove("via").items() == (("x-a", "1"),)
    assert h.remove_first("Via").get("Via") == "SIP/2.0/UDP b, SIP/2.0/UDP c"
    assert h.add("Route", "<sip:p>").items()[-1] == ("Route", "<sip:p>")
    assert h == Headers(h.items()) and hash(h) == hash(Headers(h.items()))
    with pytest.raises(LocalProtocolError):
        Headers([("Bad Name", "x")])
    with pytest.raises(LocalProtocolError):
        Headers([("X", "a\r\nInjected: 1")])


def test_via_received_takes_a_bare_ipv6_address() -> None:
    """RFC 3261 §25.1: via-received = "received" EQUAL (IPv4address / IPv6address); the
    IPv6address form has no brackets (RFC 5118 §4.5)."""
    from gateway.sip.headers import parse_via

    via = parse_via("SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3;received=2001:db8::9:255")[0]
    assert via.received == "2001:db8::9:255"
    assert via.branch == "z9hG4bKas3"
    assert parse_via(str(via))[0] == via

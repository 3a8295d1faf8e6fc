"""URI parsing and RFC 3261 §19.1.4 comparison (the RFC's own examples)."""

from __future__ import annotations

import pytest

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri, uri_equal

# RFC 3261 §19.1.4: "The URIs within each of the following sets are equivalent"
EQUAL = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
]
# "... are not equivalent"
UNEQUAL = [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    # further rules of the same section
    ("sip:alice@atlanta.com", "sips:alice@atlanta.com"),
    ("sip:alice@atlanta.com", "sip:atlanta.com"),
    ("sip:alice:pw@atlanta.com", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;maddr=1.2.3.4", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;user=phone", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;ttl=1", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;method=INVITE", "sip:alice@atlanta.com"),
    ("sip:alice@atlanta.com;lr=on", "sip:alice@atlanta.com;lr=off"),
    ("sip:m%26m@x.example", "sip:m&m@x.example"),  # reserved chars stay distinct
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_rfc3261_19_1_4_equal(a: str, b: str) -> None:
    assert uri_equal(parse_uri(a), parse_uri(b))
    assert uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(("a", "b"), UNEQUAL)
def test_rfc3261_19_1_4_unequal(a: str, b: str) -> None:
    assert not uri_equal(parse_uri(a), parse_uri(b))
    assert not uri_equal(parse_uri(b), parse_uri(a))


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.com",
        "sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=x&priority=urgent",
        "sip:[2001:db8::1]:5070;maddr=[2001:db8::2]",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:alice@atlanta.com;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        "tel:+1-201-555-0123;phone-context=example.com",
        "im:alice@example.com",
        "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_components_and_accessors() -> None:
    uri = parse_uri("sips:a%20b@[2001:DB8::1]:5061;transport=TLS;maddr=x.example;lr;gr=res1")
    assert isinstance(uri, SipUri)
    assert (uri.user, uri.user_decoded, uri.host, uri.port) == (
        "a%20b",
        "a b",
        "[2001:DB8::1]",
        5061,
    )
    assert uri.host_bare == "2001:db8::1"
    assert (uri.transport, uri.maddr, uri.lr, uri.gr, uri.secure) == (
        "tls",
        "x.example",
        True,
        "res1",
        True,
    )
    assert uri.aor == "sips:a%20b@[2001:db8::1]"
    assert parse_uri("sip:u@h;user=Phone").is_phone  # type: ignore[union-attr]


def test_scheme_case_folded_for_sip_only() -> None:
    assert parse_uri("SIP:a@b").scheme == "sip"
    assert parse_uri("Im:a@b") == AbsoluteUri("Im", "a@b")
    assert uri_equal(parse_uri("Im:a@b"), parse_uri("im:a@b"))


def test_tel() -> None:
    tel = parse_uri("tel:+1-201-555-0123")
    assert tel == TelUri("+1-201-555-0123")
    assert isinstance(tel, TelUri) and tel.is_global
    assert uri_equal(tel, parse_uri("tel:+1(201)5550123"))


def test_with_params() -> None:
    uri = parse_uri("sip:a@b;transport=udp;lr")
    assert isinstance(uri, SipUri)
    assert (
        str(uri.with_params(("transport", "tcp"), ("gr", "x"))) == "sip:a@b;lr;transport=tcp;gr=x"
    )
    assert str(uri.without_params("LR")) == "sip:a@b;transport=udp"


@pytest.mark.parametrize(
    "text",
    [
        "<sip:user@example.com>",  # RFC 4475 §3.1.2.7
        "sip:user@example.com; lr",  # §3.1.2.8
        "sip:",
        "sip:user@",
        "sip:a@b:99999",
        "sip:a@b;=x",
        "sip:a@b?noequals",
        "sip:a b@c",
        "tel:",
        "no-colon",
        "1abc:x",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_constructor_checks() -> None:
    with pytest.raises(LocalProtocolError):
        SipUri(scheme="http", host="x")
    with pytest.raises(LocalProtocolError):
        SipUri(host="")
    with pytest.raises(LocalProtocolError):
        SipUri(host="x", port=70000)

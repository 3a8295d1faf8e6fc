"""MSRP URIs: the §9 grammar and the §6.1 comparison rules (RFC 4975)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.msrp.errors import LocalProtocolError, RemoteProtocolError
from gateway.msrp.uri import MsrpUri, parse_uri


def test_parse_the_rfc_example() -> None:
    uri = parse_uri("msrp://host.example.com:8493/asfd34;tcp")
    assert (uri.scheme, uri.host, uri.port, uri.session_id, uri.transport) == (
        "msrp",
        "host.example.com",
        8493,
        "asfd34",
        "tcp",
    )
    assert not uri.secure and str(uri) == "msrp://host.example.com:8493/asfd34;tcp"


@pytest.mark.parametrize(
    "text",
    [
        "msrps://bob@[2001:db8::1]:2855/a+b=c/d;tcp;foo=bar;flag",
        "MSRP://Relay.Example.COM;tcp",
        "msrp://192.0.2.1:2855/s1;tcp",
        "msrp://h%41st.example:1/x;tls",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "msrp://host.example.com:8493/asfd34",  # no transport (§9: ";" transport required)
        "sip://host.example.com:8493/asfd34;tcp",
        "msrp://192.0.2.1/s1;tcp",  # numeric address without a port (§6)
        "msrp://[::1]/s1;tcp",
        "msrp://host:99999/s;tcp",
        "msrp://user:secret@host:1/s;tcp",  # no password in userinfo (§6)
        "msrp://host:1/s!;tcp",
        "msrp://host:1/s;tcp;",
        "msrp://[zz::1]:1/s;tcp",
        "",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uri(text)


def test_comparison_rules() -> None:
    a = parse_uri("msrp://Host.Example.com:7777/iau39;tcp")
    assert a == parse_uri("MSRP://host.example.COM:7777/iau39;TCP")  # 1, 2, 5: no case
    assert a == parse_uri("msrp://alice@host.example.com:7777/iau39;tcp")  # userinfo ignored
    assert a == parse_uri("msrp://host.%45xample.com:7777/iau39;tcp")  # %45 = E, unreserved
    assert a == parse_uri("msrp://host.example.com:7777/iau39;tcp;x=1")  # params not compared
    assert a != parse_uri("msrp://host.example.com/iau39;tcp")  # 3: explicit vs no port
    assert a != parse_uri("msrp://host.example.com:7778/iau39;tcp")
    assert a != parse_uri("msrp://host.example.com:7777/IAU39;tcp")  # 4: session-id case
    assert a != parse_uri("msrp://host.example.com:7777;tcp")  # 4: absent session-id
    assert a != parse_uri("msrps://host.example.com:7777/iau39;tcp")
    assert a != parse_uri("msrp://host.example.com:7777/iau39;sctp")  # 5: transport
    v6 = parse_uri("msrp://[2001:DB8:0::1]:1/s;tcp")
    assert v6 == parse_uri("msrp://[2001:db8::1]:1/s;tcp")  # address equivalence
    assert hash(v6) == hash(parse_uri("msrp://[2001:db8::1]:1/s;tcp"))
    assert a.same_as(parse_uri("msrp://HOST.example.com:7777/iau39;tcp"))
    assert a != "msrp://Host.Example.com:7777/iau39;tcp"


def test_make_checks_through_the_parser() -> None:
    uri = MsrpUri.make("gw.example.org", 2855, "abc123", scheme="msrps")
    assert str(uri) == "msrps://gw.example.org:2855/abc123;tcp" and uri.secure
    with pytest.raises(LocalProtocolError):
        MsrpUri.make("192.0.2.1", None, "abc")
    with pytest.raises(LocalProtocolError):
        MsrpUri.make("gw.example.org", 1, "bad id")


hosts = st.from_regex(r"[a-zA-Z][a-zA-Z0-9-]{0,8}(\.[a-zA-Z0-9]{1,6}){0,2}", fullmatch=True)
sessions = st.from_regex(r"[A-Za-z0-9\-._~+=/]{1,20}", fullmatch=True)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(hosts, st.none() | st.integers(0, 65535), st.none() | sessions, st.booleans())
def test_parse_str_round_trip_and_case_rules(
    host: str, port: int | None, session: str | None, secure: bool
) -> None:
    uri = MsrpUri.make(host, port, session, scheme="msrps" if secure else "msrp")
    again = parse_uri(str(uri))
    assert again == uri and str(again) == str(uri)
    shouted = parse_uri(str(uri).replace(host, host.swapcase(), 1).replace("msrp", "MSRP", 1))
    assert shouted == uri

"""Pure endpoint helpers (gateway/sip/ua.py): §18.1.1 transport choice, the headers a
UAC adds, the OPTIONS answer, IP literals."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.message import Headers, SipRequest
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.ua import (
    MAX_DATAGRAM,
    SizePlan,
    format_host,
    ip_literal,
    options_response,
    plan_transport,
    prepare_request,
    too_big_for_udp,
)
from gateway.sip.uri import parse_uri
from gateway.sip.validate import GATEWAY_POLICY

pytestmark = pytest.mark.unit


# ---------------------------------------------------------------- §18.1.1


@pytest.mark.parametrize(
    ("size", "mtu", "big"),
    [
        (1300, None, False),
        (1301, None, True),
        (1300, 1500, False),
        (1301, 1500, True),
        (1000, 1200, False),
        (1001, 1200, True),  # within 200 bytes of a small path MTU
        (8000, 9000, False),  # a jumbo-frame path MTU allows more than 1300
    ],
)
def test_too_big_for_udp(size: int, mtu: int | None, big: bool) -> None:
    assert too_big_for_udp(size, mtu) is big


def test_small_requests_keep_the_target_transport() -> None:
    for t in ("udp", "tcp", "tls"):
        assert plan_transport(t, 500, max_message_size=65535) == SizePlan(t, None)


def test_reliable_targets_never_change_for_size() -> None:
    assert plan_transport("tls", 60000, max_message_size=65535) == SizePlan("tls", None)


def test_large_udp_request_goes_over_tcp_with_udp_fallback() -> None:
    assert plan_transport("udp", 2000, max_message_size=65535) == SizePlan("tcp", "udp")


def test_no_udp_fallback_when_it_does_not_fit() -> None:
    assert plan_transport("udp", 2000, max_message_size=1500) == SizePlan("tcp", None)
    big = MAX_DATAGRAM + 1
    assert plan_transport("udp", big, max_message_size=1 << 20) == SizePlan("tcp", None)


def test_large_path_mtu_does_not_lift_the_message_size_limit() -> None:
    assert plan_transport("udp", 1501, max_message_size=1500, path_mtu=9000) == SizePlan(
        "tcp", None
    )


def test_udp_only_targets() -> None:
    assert plan_transport("udp", 2000, max_message_size=65535, allow_tcp=False) == SizePlan(
        "udp", None
    )
    assert plan_transport("udp", 2000, max_message_size=1500, allow_tcp=False) is None


@settings(max_examples=200)
@given(
    size=st.integers(1, 200_000),
    mtu=st.one_of(st.none(), st.integers(576, 9000)),
    limit=st.integers(1500, 1 << 20),
    allow_tcp=st.booleans(),
)
def test_plan_never_sends_oversize_datagrams(
    size: int, mtu: int | None, limit: int, allow_tcp: bool
) -> None:
    plan = plan_transport("udp", size, max_message_size=limit, path_mtu=mtu, allow_tcp=allow_tcp)
    if plan is None:
        assert size > min(limit, MAX_DATAGRAM)
        return
    if plan.transport == "udp" or plan.fallback == "udp":
        assert size <= min(limit, MAX_DATAGRAM)
    if size <= min(limit, MAX_DATAGRAM) and not too_big_for_udp(size, mtu):
        assert plan == SizePlan("udp", None)  # small enough: stays on UDP


# ---------------------------------------------------------------- UAC headers


def _request(**extra: str) -> SipRequest:
    headers = [
        ("From", "<sip:a@example.org>;tag=1"),
        ("To", "<sip:b@example.org>"),
        ("Call-ID", "abc"),
        ("CSeq", "1 MESSAGE"),
        *extra.items(),
    ]
    return SipRequest("MESSAGE", parse_uri("sip:b@example.org"), Headers(headers), b"hi")


def test_prepare_request_adds_via_max_forwards_user_agent() -> None:
    req = prepare_request(
        _request(),
        transport="tcp",
        host="192.0.2.1",
        port=5060,
        branch="z9hG4bKx1",
        user_agent="gw/1",
    )
    via = req.top_via
    assert via is not None
    assert (via.transport, via.host, via.port, via.branch) == (
        "TCP",
        "192.0.2.1",
        5060,
        "z9hG4bKx1",
    )
    assert via.rport_requested and via.rport is None
    assert req.max_forwards == 70
    assert req.headers.get("User-Agent") == "gw/1"
    assert req.headers.items()[0][0] == "Via"  # the new top Via comes first
    wire = parse_message(serialize(req))
    assert isinstance(wire, SipRequest) and wire.content_length == 2


def test_prepare_request_keeps_existing_values_and_vias() -> None:
    base = _request(**{"Max-Forwards": "5", "User-Agent": "theirs"})
    base = base.with_headers(base.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKold"))
    req = prepare_request(base, transport="udp", host="::1", port=5062, branch="z9hG4bKnew")
    assert [v.branch for v in req.vias] == ["z9hG4bKnew", "z9hG4bKold"]
    assert req.vias[0].host == "[::1]"
    assert req.max_forwards == 5 and req.headers.get("User-Agent") == "theirs"


def test_options_response() -> None:
    req = _request()
    resp = options_response(req, GATEWAY_POLICY, to_tag="t1", server="gw")
    assert resp.status == 200 and resp.to_tag == "t1"
    assert set(resp.allow) == GATEWAY_POLICY.methods
    assert resp.accept is not None
    assert {a.mime for a in resp.accept} == set(GATEWAY_POLICY.content_types)
    assert set(resp.supported) == GATEWAY_POLICY.extensions
    assert resp.headers.get("Server") == "gw"
    assert resp.call_id == "abc" and resp.cseq is not None and resp.cseq.method == "MESSAGE"


# ---------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("host", "ip"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("example.com", None),
        ("", None),
        ("[example.com]", None),
        ("1.2.3", None),
    ],
)
def test_ip_literal(host: str, ip: str | None) -> None:
    assert ip_literal(host) == ip


def test_format_host() -> None:
    assert format_host("::1") == "[::1]"
    assert format_host("[::1]") == "[::1]"
    assert format_host("127.0.0.1") == "127.0.0.1"

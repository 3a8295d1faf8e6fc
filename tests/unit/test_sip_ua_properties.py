"""Response construction, request preparation and the UAS syntax check against RFC 3261
(issue 25: replaces the old-body oracle of issue 11 for make_response, prepare_request and
_check_syntax). Requests are generated with the header lines the rules look at."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip import ua
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import (
    REASON_PHRASES,
    Headers,
    SipRequest,
    make_response,
    make_response_from_headers,
)
from gateway.sip.parser import parse_message
from gateway.sip.uri import parse_uri
from gateway.sip.validate import MANDATORY_REQUEST_HEADERS, _check_syntax

UA = settings(max_examples=150, deadline=None)
tags = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(st.sampled_from(["MESSAGE", "SUBSCRIBE", "OPTIONS", "X-NEW"]))
    vias = [
        f"SIP/2.0/UDP 192.0.2.{i}:5060;branch=z9hG4bK{i}" for i in range(draw(st.integers(1, 3)))
    ]
    to_tag = draw(st.none() | tags)
    pairs: list[tuple[str, str]] = [("Via", v) for v in vias]
    pairs += [
        ("From", f"<sip:alice@example.com>;tag={draw(tags)}"),
        ("To", "<sip:bob@example.org>" + ("" if to_tag is None else f";tag={to_tag}")),
        ("Call-ID", f"{draw(tags)}@192.0.2.10"),
        ("CSeq", f"{draw(st.integers(0, 2**31))} {method}"),
    ]
    pairs += draw(
        st.lists(
            st.sampled_from(
                [("Max-Forwards", "70"), ("User-Agent", "x"), ("Timestamp", "54"),
                 ("Subject", "hi"), ("Contact", "<sip:alice@192.0.2.10>")]
            ),
            max_size=3,
            unique=True,
        )
    )  # fmt: skip
    return SipRequest(
        method, parse_uri("sip:bob@example.org"), Headers(draw(st.permutations(pairs)))
    )


@UA
@given(requests(), st.sampled_from([100, 180, 200, 404, 486, 699]), st.none() | tags)
def test_response_copies_what_8_2_6_2_says(
    req: SipRequest, status: int, to_tag: str | None
) -> None:
    """§8.2.6.2: Via (all, in order), From, Call-ID and CSeq copied; To copied, with our tag
    added unless it has one or the status is 100; §8.2.6.1: a 100 copies Timestamp."""
    extra = [("Server", "gw")]
    for resp in (
        make_response(req, status, to_tag=to_tag, headers=extra),
        make_response_from_headers(req.headers, status, to_tag=to_tag, headers=extra),
    ):
        h = resp.headers
        assert (resp.status, resp.reason) == (status, REASON_PHRASES.get(status, ""))
        assert h.get_all("Via") == req.headers.get_all("Via")
        for name in ("From", "Call-ID", "CSeq"):
            assert h.get(name) == req.headers.get(name)
        to = req.headers.get("To")
        assert to is not None
        if to_tag is not None and status != 100 and req.to_tag is None:
            assert h.get("To") == f"{to};tag={to_tag}"
            assert resp.to_tag == to_tag
        else:
            assert h.get("To") == to
        assert h.get("Timestamp") == (req.headers.get("Timestamp") if status == 100 else None)
        assert h.get("Server") == "gw"
        assert h.get("Subject") is None and h.get("Contact") is None  # nothing else copied


@UA
@given(requests(), st.sampled_from(["udp", "tcp", "TLS"]), st.sampled_from(["192.0.2.1", "::1"]),
       st.none() | st.sampled_from(["gw/1.0"]))  # fmt: skip
def test_prepare_request(req: SipRequest, transport: str, host: str, agent: str | None) -> None:
    """Our Via on top with rport (RFC 3581 §3), the transport upper-cased (§18.1.1);
    Max-Forwards 70 and User-Agent only when absent (§8.1.1.6); the rest unchanged."""
    out = ua.prepare_request(
        req, transport=transport, host=host, port=5060, branch="z9hG4bKx", user_agent=agent
    )
    top = out.vias[0]
    assert (top.transport, top.port, top.branch, top.rport_requested) == (
        transport.upper(), 5060, "z9hG4bKx", True,
    )  # fmt: skip
    assert top.host == ua.format_host(host)
    assert out.headers.get_all("Via")[1:] == req.headers.get_all("Via")
    assert out.headers.get("Max-Forwards") == req.headers.get("Max-Forwards", "70")
    assert out.headers.get("User-Agent") == req.headers.get("User-Agent", agent)
    assert [p for p in out.headers if p[0] not in ("Via", "Max-Forwards", "User-Agent")] == [
        p for p in req.headers if p[0] not in ("Via", "Max-Forwards", "User-Agent")
    ]
    assert Headers(out.headers.items()) == out.headers  # what the public constructor makes
    assert (out.method, out.uri, out.body) == (req.method, req.uri, req.body)


@UA
@given(requests(), st.data())
def test_check_syntax_missing_mandatory_header_is_400(req: SipRequest, data: Any) -> None:
    """§8.2.2 / RFC 4475 §3.3.1: To, From, CSeq, Call-ID, Max-Forwards, Via are required."""
    full = SipRequest(req.method, req.uri, req.headers.set("Max-Forwards", "70"))
    _check_syntax(full)
    name = data.draw(st.sampled_from(sorted(MANDATORY_REQUEST_HEADERS)))
    broken = SipRequest(req.method, req.uri, full.headers.remove(name))
    with pytest.raises(RemoteProtocolError, match="missing") as info:
        _check_syntax(broken)
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("name", "value"),
    [("Contact", "<bad"), ("Content-Type", "nonsense"), ("Event", "@"), ("Require", "a b"),
     ("Contact", "*"), ("Subject", "caf\udce9")],
)  # fmt: skip
def test_check_syntax_malformed_present_header_is_400(name: str, value: str) -> None:
    base = (
        b"MESSAGE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nMax-Forwards: 70\r\n"
        b"To: <sip:b@c>\r\nFrom: <sip:a@c>;tag=1\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n"
    )
    req = parse_message(base + b"Content-Length: 0\r\n\r\n")
    assert isinstance(req, SipRequest)
    _check_syntax(req)
    bad = SipRequest(req.method, req.uri, req.headers.add(name, value))
    with pytest.raises(RemoteProtocolError) as info:
        _check_syntax(bad)
    assert info.value.status == 400


@pytest.mark.parametrize("status", [200, 404])
def test_with_headers_is_replace(status: int) -> None:
    req = parse_message(
        b"MESSAGE sip:b@c SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"To: <sip:b@c>\r\nFrom: <sip:a@c>;tag=1\r\nCall-ID: x\r\nCSeq: 1 MESSAGE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(req, SipRequest)
    headers = req.headers.add("X", "y")
    assert req.with_headers(headers) == dataclasses.replace(req, headers=headers)
    resp = make_response(req, status)
    assert resp.with_headers(headers) == dataclasses.replace(resp, headers=headers)
    assert "to" not in req.with_headers(headers).__dict__

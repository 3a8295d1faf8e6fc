"""UAS request checks in RFC 3261 §8.2 order, response drop rules (§8.1.3.3)."""

from __future__ import annotations

import pytest

from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.validate import (
    GATEWAY_POLICY,
    UasPolicy,
    error_response,
    validate_request,
    validate_response,
)

CORE = [
    ("Via", "SIP/2.0/UDP h;branch=z9hG4bKa"),
    ("To", "<sip:bob@example.com>"),
    ("From", "<sip:alice@example.net>;tag=1"),
    ("Call-ID", "c1"),
    ("CSeq", "1 MESSAGE"),
    ("Max-Forwards", "70"),
]


def req(
    method: str = "MESSAGE", uri: str = "sip:bob@example.com", extra=(), body: bytes = b""
) -> SipRequest:  # type: ignore[no-untyped-def]
    headers = [(n, v.replace("MESSAGE", method)) for n, v in CORE]
    return SipRequest(method, parse_uri(uri), Headers([*headers, *extra]), body)


def status_of(
    r: SipRequest, policy: UasPolicy = GATEWAY_POLICY, size: int | None = None
) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        validate_request(r, policy, size=size)
    return info.value


def test_valid_message_passes() -> None:
    validate_request(req(extra=[("Content-Type", "message/cpim")], body=b"x"), GATEWAY_POLICY)


# RFC 3261 §8.2: each check and its response, table-driven
CASES = [
    ("405 known method not offered", req("REFER"), 405, "Allow"),
    ("501 unknown method", req("FOO"), 501, "Allow"),
    ("416 URI scheme", req(uri="im:bob@example.com"), 416, None),
    ("420 Require", req(extra=[("Require", "100rel, path")]), 420, "Unsupported"),
    ("415 Content-Type", req(extra=[("Content-Type", "image/png")], body=b"x"), 415, "Accept"),
    ("415 Content-Encoding", req(extra=[("c", "text/plain"), ("e", "br")], body=b"x"),
     415, "Accept-Encoding"),
    ("406 SUBSCRIBE Accept", req("SUBSCRIBE", extra=[("o", "presence"), ("Accept", "text/plain")]),
     406, "Warning"),
    ("400 Contact * outside REGISTER", req(extra=[("Contact", "*")]), 400, None),
    ("400 bad Route", req(extra=[("Route", "sip:a@b, ,")]), 400, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "request_", "status", "header"), CASES, ids=[c[0] for c in CASES]
)
def test_rfc3261_8_2_checks(
    label: str, request_: SipRequest, status: int, header: str | None
) -> None:
    err = status_of(request_)
    assert err.status == status
    if header is not None:
        assert header in dict(err.extra_headers)
    reply = error_response(err, to_tag="t")
    assert reply is not None and reply.status == status and reply.to_tag == "t"
    assert reply.headers.get("CSeq") == request_.headers.get("CSeq")


def test_unsupported_lists_only_unknown_tags() -> None:
    err = status_of(req(extra=[("Require", "path, foo")]))
    assert err.extra_headers == (("Unsupported", "foo"),)


def test_require_ignored_for_ack_and_cancel() -> None:
    validate_request(req("ACK", extra=[("Require", "foo")]), GATEWAY_POLICY)


def test_order_method_before_scheme() -> None:  # §8.2.1 precedes §8.2.2
    assert status_of(req("FOO", uri="im:x@y")).status == 501


def test_size_limit() -> None:
    assert status_of(req(), size=70000).status == 513


def test_accept_wildcard_ok_and_register_star() -> None:
    validate_request(
        req("SUBSCRIBE", extra=[("Event", "presence"), ("Accept", "application/*")]), GATEWAY_POLICY
    )
    validate_request(req("REGISTER", extra=[("Contact", "*"), ("Expires", "0")]), GATEWAY_POLICY)


def test_error_response_never_for_ack() -> None:
    err = status_of(req("ACK", uri="im:x@y"))
    assert err.status == 416 and error_response(err) is None


def resp(*vias: str, extra=()) -> SipResponse:  # type: ignore[no-untyped-def]
    core = [(n, v) for n, v in CORE if n not in ("Via", "Max-Forwards")]
    return SipResponse(200, "OK", Headers([*(("Via", v) for v in vias), *core, *extra]))


def test_validate_response() -> None:
    validate_response(
        resp("SIP/2.0/UDP h;branch=z9hG4bKa", extra=[("Retry-After", "10 (x);duration=5")])
    )
    for bad in (
        resp(),
        resp("SIP/2.0/UDP h;branch=z9hG4bKa", "SIP/2.0/UDP 255.255.255.255"),
        resp("SIP/2.0/UDP h", extra=[("Retry-After", "9" * 30)]),
        resp("SIP/2.0/UDP h", extra=[("Warning", '1812 overture "x"')]),
    ):
        with pytest.raises(DropMessage):
            validate_response(bad)


def test_policy_headers() -> None:
    policy = UasPolicy(
        methods=frozenset({"OPTIONS", "MESSAGE"}), content_types=frozenset({"text/plain"})
    )
    assert policy.allow_header == ("Allow", "MESSAGE, OPTIONS")
    assert policy.accept_header == ("Accept", "text/plain")
    assert isinstance(req().uri, SipUri)

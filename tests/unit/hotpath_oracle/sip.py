"""The old bodies of the gateway/sip functions given fast paths in round 4 (issue 11),
written over the public API whose slow paths did not change: `prepare_request` (three
`Headers` constructions and `dataclasses.replace`), `make_response_from_headers` (re-checks
every copied pair, parses To again) and `_check_syntax` (computes every view)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from gateway.sip import ua
from gateway.sip import validate as new_validate
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import (
    REASON_PHRASES,
    HeaderPair,
    Headers,
    SipRequest,
    SipResponse,
    _has_tag,
)
from gateway.sip.uri import SipUri


def old_prepare_request(
    request: SipRequest,
    *,
    transport: str,
    host: str,
    port: int,
    branch: str,
    user_agent: str | None = None,
) -> SipRequest:
    via = f"SIP/2.0/{transport.upper()} {ua.format_host(host)}:{port};branch={branch};rport"
    headers = request.headers.prepend("Via", via)
    if "Max-Forwards" not in headers:
        headers = headers.add("Max-Forwards", "70")
    if user_agent and "User-Agent" not in headers:
        headers = headers.add("User-Agent", user_agent)
    return dataclasses.replace(request, headers=headers)


def old_make_response_from_headers(
    request_headers: Headers,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[HeaderPair] = (),
    body: bytes = b"",
) -> SipResponse:
    out: list[HeaderPair] = [("Via", v) for v in request_headers.get_all("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request_headers.get(name)
        if value is None:
            continue
        if name == "To" and to_tag is not None and status != 100 and not _has_tag(value):
            value = f"{value};tag={to_tag}"
        out.append((name, value))
    if status == 100 and (ts := request_headers.get("Timestamp")) is not None:
        out.append(("Timestamp", ts))
    out.extend(headers)
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "")
    return SipResponse(status, phrase, Headers(out), body)


def old_check_syntax(req: SipRequest) -> None:
    missing = [n for n in new_validate.MANDATORY_REQUEST_HEADERS if n not in req.headers]
    if missing:
        raise RemoteProtocolError("missing " + ", ".join(missing))
    for name, value in req.headers:
        if new_validate._UNDECODED.search(value):
            raise RemoteProtocolError(f"{name} header is not UTF-8")
    if isinstance(req.uri, SipUri) and req.uri.headers:
        raise RemoteProtocolError("header components in the Request-URI")
    _ = (req.contacts, req.routes, req.record_routes, req.content_type, req.accept)
    _ = (req.require, req.proxy_require, req.supported, req.event)
    if req.contact_star and (req.method != "REGISTER" or req.expires != 0):
        raise RemoteProtocolError("Contact: * outside REGISTER with Expires: 0")

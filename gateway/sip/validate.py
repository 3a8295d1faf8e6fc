"""UAS request checks (RFC 3261 §8.2) and UAC response sanity checks (§8.1.3.3).

`validate_request` runs the §8.2 checks in the RFC's order and raises `RemoteProtocolError`
carrying the final response to send; `validate_response` raises `DropMessage` for responses
an endpoint must discard. Both are pure and driven by a frozen `UasPolicy`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gateway.sip.coding import CODINGS, encodings_of
from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.headers import MAX_UINT32
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response_from_headers
from gateway.sip.parser import KNOWN_METHODS
from gateway.sip.uri import SipUri

__all__ = [
    "GATEWAY_POLICY",
    "UasPolicy",
    "check_forwarding",
    "error_response",
    "validate_request",
    "validate_response",
]

# Mandatory in every request (RFC 3261 §8.1.1). Max-Forwards is also mandatory there, but
# RFC 2543 peers omit it and RFC 4475 §3.4.1 asks us to accept that.
MANDATORY_REQUEST_HEADERS = ("To", "From", "CSeq", "Call-ID", "Via")
MANDATORY_RESPONSE_HEADERS = ("To", "From", "CSeq", "Call-ID", "Via")
# surrogateescape's range: the octets 0x80-0xFF that were not part of valid UTF-8
_UNDECODED = re.compile(r"[\udc80-\udcff]")  # re parses the escapes (mypyc refuses surrogates)


@dataclass(frozen=True)
class UasPolicy:
    """What this UAS implements. `response_types` maps a method to the body types it can
    produce for it (the Accept check, RFC 3261 §8.2.3 / RFC 6665 §8.3.1: 406)."""

    methods: frozenset[str]
    extensions: frozenset[str] = frozenset()
    content_types: frozenset[str] = frozenset()
    uri_schemes: frozenset[str] = frozenset({"sip", "sips"})
    response_types: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    max_message_size: int = 65535
    warn_agent: str = "gateway"
    # content codings of request bodies undone before the TU (gateway.sip.coding, §20.12)
    content_codings: frozenset[str] = frozenset({"identity"})
    # body types refused with a telling 415 Reason-Phrase (media type -> phrase)
    refused_reasons: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )

    @property
    def allow_header(self) -> tuple[str, str]:
        return ("Allow", ", ".join(sorted(self.methods)))

    @property
    def accept_header(self) -> tuple[str, str]:
        return ("Accept", ", ".join(sorted(self.content_types)))


# The gateway's default: pager-mode IM (RFC 3428), presence (RFC 6665/3856/3903), OPTIONS,
# REGISTER (bindings for SIP users of the gateway) and INVITE sessions for later MSRP chat
# (RFC 7573). INFO, PRACK, UPDATE and REFER are not implemented (-> 405 with Allow).
GATEWAY_POLICY = UasPolicy(
    methods=frozenset(
        {"MESSAGE", "SUBSCRIBE", "NOTIFY", "OPTIONS", "REGISTER", "PUBLISH"}
        | {"INVITE", "ACK", "BYE", "CANCEL"}
    ),
    extensions=frozenset({"path", "gruu", "outbound"}),
    content_types=frozenset(
        {
            "text/plain",
            "text/html",
            "message/cpim",
            "message/imdn+xml",
            "application/pidf+xml",
            "application/im-iscomposing+xml",
            "application/sdp",
            "multipart/mixed",
            "multipart/alternative",
            "multipart/related",
            "application/vnd.gsma.rcs-ft-http+xml",  # file links (RCC.07; docs/pager.md)
        }
    ),
    response_types=MappingProxyType(
        {
            "INVITE": frozenset({"application/sdp"}),
            "SUBSCRIBE": frozenset({"application/pidf+xml"}),
        }
    ),
    content_codings=CODINGS,
    # S/MIME (RFC 5751) and PGP/MIME (RFC 3156): XMPP cannot carry them (issue 17, docs/pager.md;
    # the same phrases as mappings.encryption.sip_reason, for such a body inside CPIM)
    refused_reasons=MappingProxyType(
        {
            "application/pkcs7-mime": "Encrypted Content Cannot Reach XMPP",
            "application/x-pkcs7-mime": "Encrypted Content Cannot Reach XMPP",
            "multipart/encrypted": "Encrypted Content Cannot Reach XMPP",
            "multipart/signed": "Signed Content Not Relayed To XMPP",
            "application/pkcs7-signature": "Signed Content Not Relayed To XMPP",
            "application/x-pkcs7-signature": "Signed Content Not Relayed To XMPP",
        }
    ),
)


def validate_request(req: SipRequest, policy: UasPolicy, *, size: int | None = None) -> None:
    """RFC 3261 §8.2 in order; `size` is the wire size when known (513 check, §18.1.1).
    The error raised carries `req.headers` so `error_response` can answer it."""
    try:
        _validate(req, policy, size)
    except RemoteProtocolError as exc:
        exc.headers, exc.method = req.headers, req.method
        raise


def _validate(req: SipRequest, policy: UasPolicy, size: int | None) -> None:
    if size is not None and size > policy.max_message_size:
        raise RemoteProtocolError("message too large", 513)
    _check_syntax(req)
    # §8.2.1 method inspection: 501 for unknown methods, 405 for known ones we do not do
    if req.method not in policy.methods:
        status = 405 if req.method in KNOWN_METHODS else 501
        raise RemoteProtocolError(f"method {req.method}", status, None, (policy.allow_header,))
    # §8.2.2.1 To and Request-URI: 416 for a scheme we do not understand
    if req.uri.scheme.lower() not in policy.uri_schemes:
        raise RemoteProtocolError(f"URI scheme {req.uri.scheme}", 416)
    # §10.3: a REGISTER's To is the address-of-record and must be SIP/SIPS (RFC 4475 §3.3.4)
    if req.method == "REGISTER" and not (req.to is not None and isinstance(req.to.uri, SipUri)):
        raise RemoteProtocolError("address-of-record is not a SIP or SIPS URI")
    # §8.2.2.3 Require (not for ACK/CANCEL): 420 with Unsupported
    if req.method not in ("ACK", "CANCEL"):
        missing = [t for t in req.require if t.lower() not in policy.extensions]
        if missing:
            raise RemoteProtocolError(
                "unsupported extension", 420, None, (("Unsupported", ", ".join(missing)),)
            )
    _check_content(req, policy)


def _check_syntax(req: SipRequest) -> None:
    """400 for missing mandatory headers (RFC 4475 §3.3.1), headers in the Request-URI
    (§19.1.5, RFC 4475 §3.1.2.11), octets that are not UTF-8 in a header field and
    malformed lazily parsed header fields (§3.1.2.13)."""
    missing = [n for n in MANDATORY_REQUEST_HEADERS if n not in req.headers]
    if missing:
        raise RemoteProtocolError("missing " + ", ".join(missing))
    # The parser keeps undecodable octets as surrogate escapes; RFC 3261 §7.3.1 / §25.1
    # header fields are UTF-8 (TEXT-UTF8) or ASCII, and neither XMPP nor the store can
    # carry such text (found by the wire fuzzer: a Call-ID became an unsendable <thread>).
    for name, value in req.headers:
        if not value.isascii() and _UNDECODED.search(value):
            raise RemoteProtocolError(f"{name} header is not UTF-8")
    if isinstance(req.uri, SipUri) and req.uri.headers:
        raise RemoteProtocolError("header components in the Request-URI")
    # Parse the lazy views in this order; a view whose header is absent cannot fail, so it
    # is left for later (issue 11: most requests carry few of these headers).
    present = set(req.headers.keys())
    for key, view in _CHECKED_VIEWS:
        if key in present:
            getattr(req, view)
    if "contact" in present and req.contact_star and (req.method != "REGISTER" or req.expires != 0):
        raise RemoteProtocolError("Contact: * outside REGISTER with Expires: 0")


# (lookup key of the header, the view over it) checked by _check_syntax, in its order
_CHECKED_VIEWS = tuple(
    (Headers._key(name), view)
    for name, view in (
        ("Contact", "contacts"),
        ("Route", "routes"),
        ("Record-Route", "record_routes"),
        ("Content-Type", "content_type"),
        ("Accept", "accept"),
        ("Require", "require"),
        ("Proxy-Require", "proxy_require"),
        ("Supported", "supported"),
        ("Event", "event"),
    )
)


def _check_content(req: SipRequest, policy: UasPolicy) -> None:
    # §8.2.3: 415 with Accept for a body type we cannot process; Content-Encoding likewise
    ct = req.content_type
    if req.body and ct is not None and ct.mime not in policy.content_types:
        reason = policy.refused_reasons.get(ct.mime)
        raise RemoteProtocolError(f"content type {ct.mime}", 415, reason, (policy.accept_header,))
    coded = req.body and "Content-Encoding" in req.headers
    if coded and any(c not in policy.content_codings for c in encodings_of(req)):
        accepted = ", ".join(sorted(policy.content_codings))
        raise RemoteProtocolError("content encoding", 415, None, (("Accept-Encoding", accepted),))
    # §8.2.3 / RFC 6665 §8.3.1: Accept that lists nothing we could answer with -> 406
    produce = policy.response_types.get(req.method)
    accept = req.accept
    if produce and accept is not None and not any(r.matches(t) for r in accept for t in produce):
        warning = f'399 {policy.warn_agent} "no acceptable body type in Accept"'
        raise RemoteProtocolError("nothing acceptable", 406, None, (("Warning", warning),))


def check_forwarding(req: SipRequest) -> None:
    """Before relaying a request onwards (gateway as proxy/B2BUA): Max-Forwards 0 is a
    483 (RFC 3261 §16.3 step 2, RFC 4475 §3.3.11). A UAS consuming it locally skips this."""
    if req.max_forwards == 0:
        raise RemoteProtocolError("Max-Forwards exhausted", 483)


def validate_response(resp: SipResponse) -> None:
    """Endpoint (UAC) checks; raises `DropMessage` for responses to discard silently:
    missing mandatory headers, more than one Via (RFC 3261 §8.1.3.3, RFC 4475 §3.3.10),
    overlarge Retry-After or malformed warn-code (RFC 4475 §3.1.2.5)."""
    missing = [n for n in MANDATORY_RESPONSE_HEADERS if n not in resp.headers]
    if missing:
        raise DropMessage("response lacks " + ", ".join(missing))
    if len(resp.vias) != 1:
        raise DropMessage(f"response with {len(resp.vias)} Via values at an endpoint")
    retry = resp.headers.get("Retry-After")
    if retry is not None:
        digits = retry.split("(", 1)[0].split(";", 1)[0].strip(" \t")
        if not digits.isdigit() or len(digits) > 10 or int(digits) > MAX_UINT32:
            raise DropMessage(f"bad Retry-After {retry!r}")
    for warning in resp.headers.values("Warning"):
        code = warning.split(" ", 1)[0]
        if len(code) != 3 or not code.isdigit():
            raise DropMessage(f"bad warn-code in {warning!r}")


def error_response(
    exc: RemoteProtocolError, *, method: str | None = None, to_tag: str | None = None
) -> SipResponse | None:
    """The response answering a request rejected with `exc`, built from the header fields the
    parser could read; None when no response can be sent (no Via, or the request was ACK)."""
    headers = exc.headers
    method = method or exc.method
    if headers is None or "Via" not in headers or method == "ACK":
        return None
    return make_response_from_headers(
        headers, exc.status, exc.reason, to_tag=to_tag, headers=exc.extra_headers
    )

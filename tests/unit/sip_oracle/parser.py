"""Parse one complete SIP message from bytes (RFC 3261 §7, §18.3; RFC 4475 behaviour).

`parse_message` is meant for a UDP datagram or a frame cut by `framing.StreamFramer`.
Requests that break the grammar raise `RemoteProtocolError` carrying the status to answer
with (400, 505, 501, 513) and, when possible, the header fields read so far. Broken
responses raise `DropMessage`: a response is never answered (RFC 4475 §3.1.2.5, §3.1.2.19).
Nothing but `SipError` subclasses escapes (property-tested with random mutations).
"""

from __future__ import annotations

from gateway.sip.errors import DropMessage, RemoteProtocolError, SipError
from tests.unit.sip_oracle.abnf import fold_re, header_name_re, request_line_re, status_line_re
from tests.unit.sip_oracle.headers import COMPACT_FORMS, SINGLETON_HEADERS, canonical_name
from tests.unit.sip_oracle.message import Headers, SipMessage, SipRequest, SipResponse
from tests.unit.sip_oracle.uri import parse_uri

__all__ = ["DEFAULT_MAX_HEADER_SIZE", "KNOWN_METHODS", "parse_content_length", "parse_message"]

DEFAULT_MAX_HEADER_SIZE = 32 * 1024
SIP_VERSION = "SIP/2.0"

# Methods defined by RFC 3261 and its extensions (3262, 3311, 3428, 3515, 3903, 6086, 6665).
# A CSeq mismatch on any other method is answered 501, not 400 (RFC 4475 §3.1.2.18).
KNOWN_METHODS = frozenset(
    [
        "INVITE",
        "ACK",
        "OPTIONS",
        "BYE",
        "CANCEL",
        "REGISTER",
        "PRACK",
        "UPDATE",
        "INFO",
        "MESSAGE",
        "REFER",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
    ]
)

_CRLF = "\r\n"


def parse_content_length(value: str, *, fatal: bool = False) -> int:
    """Content-Length = 1*DIGIT; negative, non-numeric or absurd values are a framing error
    (RFC 4475 §3.1.2.3: never use such a value as a counter or index)."""
    v = value.strip(" \t")
    if not v or not v.isascii() or not v.isdigit() or len(v.lstrip("0")) > 10:
        raise RemoteProtocolError(f"invalid Content-Length {value!r}", fatal=fatal)
    return int(v)


def _split_headers(lines: list[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Split header lines into (canonical name, value); returns the pairs that could be read
    and the first problem found (best effort, so an error response can copy Via/CSeq...)."""
    pairs: list[tuple[str, str]] = []
    problem: str | None = None
    compact = COMPACT_FORMS
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.rstrip(" \t")  # HCOLON = *( SP / HTAB ) ":" SWS
        if not sep or header_name_re.fullmatch(name) is None:
            problem = problem or f"malformed header line {line[:60]!r}"
            continue
        if "\r" in value or "\n" in value:
            problem = problem or f"bare CR or LF in header {name}"
            continue
        canon = compact[name] if len(name) == 1 and name in compact else canonical_name(name)
        pairs.append((canon, value.strip(" \t")))
    return pairs, problem


def parse_message(
    data: bytes,
    *,
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE,
    allow: tuple[str, ...] = (),
) -> SipMessage:
    """Parse a complete message (datagram semantics, RFC 3261 §18.3):

    - Content-Length absent: the body is the rest of the data (RFC 4475 §3.4.1);
    - body shorter than Content-Length: 400 (§3.1.2.2); longer: extra octets ignored (§3.1.1.8);
    - duplicate singleton headers: 400 (§3.3.8); CSeq method != method: 400, or 501 for an
      unknown method (§3.1.2.17-18; `allow` goes into that 501); SIP/2.0 only: 505 (§3.1.2.16);
    - header section larger than `max_header_size`: 513.
    """
    start = 0
    while data.startswith(b"\r\n", start):  # CRLFs before the start-line are ignored (§7.5)
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end < 0:
        if not data.endswith(b"\r\n"):
            raise RemoteProtocolError("no end of header section")
        end = len(data) - 2  # lenient: datagram ends right after the last header line
        body_start = len(data)
    else:
        body_start = end + 4
    if end - start > max_header_size:
        raise RemoteProtocolError("header section too large", 513)
    head = data[start:end].decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = fold_re.sub(" ", head)  # unfold LWS (RFC 3261 §7.3.1)
    lines = head.split(_CRLF)
    is_response = lines[0][:4].upper() == "SIP/"
    try:
        if is_response:
            return _parse_response(lines, data, body_start)
        return _parse_request(lines, data, body_start, allow)
    except DropMessage:
        raise
    except SipError as exc:
        if is_response:
            raise DropMessage(f"malformed response: {exc}") from exc
        raise


def _body(headers: Headers, data: bytes, body_start: int) -> bytes:
    lengths = headers.get_all("Content-Length")
    if len(lengths) > 1:
        raise RemoteProtocolError("multiple Content-Length values", fatal=True)
    rest = len(data) - body_start
    if not lengths:
        return data[body_start:]  # UDP without Content-Length: the rest (§18.3)
    length = parse_content_length(lengths[0], fatal=True)
    if length > rest:
        raise RemoteProtocolError(f"body shorter than Content-Length {length}")
    return data[body_start : body_start + length]


def _check_singletons(headers: Headers) -> None:
    seen: set[str] = set()
    for name, _ in headers:
        if name in SINGLETON_HEADERS:
            if name in seen:
                raise RemoteProtocolError(f"duplicate {name} header")
            seen.add(name)


def _parse_request(
    lines: list[str], data: bytes, body_start: int, allow: tuple[str, ...]
) -> SipRequest:
    m = request_line_re.fullmatch(lines[0])
    pairs, problem = _split_headers(lines[1:])
    headers = Headers._trusted(tuple(pairs))
    try:
        if m is None:
            raise RemoteProtocolError(f"malformed Request-Line {lines[0][:80]!r}")
        method, target, version = m.groups()
        if version != SIP_VERSION:
            raise RemoteProtocolError(f"unsupported version {version}", 505)
        if problem is not None:
            raise RemoteProtocolError(problem)
        body = _body(headers, data, body_start)  # first: framing errors are fatal on streams
        _check_singletons(headers)
        request = SipRequest(method, parse_uri(target), headers, body)
        # eager views: everything the transaction layer needs must be well-formed
        cseq = request.cseq
        _ = (request.vias, request.from_, request.to, request.max_forwards)
        if cseq is not None and cseq.method != method:
            if method not in KNOWN_METHODS:
                extra = (("Allow", ", ".join(allow)),) if allow else ()
                raise RemoteProtocolError("unknown method, CSeq mismatch", 501, None, extra)
            raise RemoteProtocolError(f"CSeq method {cseq.method} != {method}")
    except RemoteProtocolError as exc:
        exc.headers = headers
        exc.method = None if m is None else m.group(1)
        raise
    return request


def _parse_response(lines: list[str], data: bytes, body_start: int) -> SipResponse:
    m = status_line_re.fullmatch(lines[0])
    if m is None:
        raise DropMessage(f"malformed Status-Line {lines[0][:80]!r}")
    version, code, reason = m.groups()
    if version != SIP_VERSION or len(code) != 3 or not 100 <= int(code) <= 699:
        raise DropMessage(f"bad Status-Line {lines[0][:80]!r}")
    pairs, problem = _split_headers(lines[1:])
    if problem is not None:
        raise DropMessage(problem)
    headers = Headers._trusted(tuple(pairs))
    body = _body(headers, data, body_start)
    _check_singletons(headers)
    response = SipResponse(int(code), reason or "", headers, body)
    _ = (response.cseq, response.vias, response.from_, response.to)
    return response

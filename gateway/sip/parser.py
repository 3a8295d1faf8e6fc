"""Parse one complete SIP message from bytes (RFC 3261 §7, §18.3; RFC 4475 behaviour).

`parse_message` is meant for a UDP datagram or a frame cut by `framing.StreamFramer`.
Requests that break the grammar raise `RemoteProtocolError` carrying the status to answer
with (400, 505, 501, 513) and, when possible, the header fields read so far. Broken
responses raise `DropMessage`: a response is never answered (RFC 4475 §3.1.2.5, §3.1.2.19).
Nothing but `SipError` subclasses escapes (property-tested with random mutations).
"""

from __future__ import annotations

from gateway.memo import Memo
from gateway.sip.abnf import fold_re, header_name_re, request_line_re, status_line_re
from gateway.sip.errors import DropMessage, RemoteProtocolError, SipError
from gateway.sip.headers import (
    COMPACT_FORMS,
    LIST_HEADERS,
    SINGLETON_HEADERS,
    CSeq,
    canonical_name,
    parse_cseq,
    parse_max_forwards,
    parse_name_addr,
    parse_via,
)
from gateway.sip.message import Headers, SipMessage, SipRequest, SipResponse
from gateway.sip.uri import parse_uri

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


# Fast path (issue 11): exact spelling of a header name -> (canonical name, lower-case key).
# Only names that `_split_headers` accepts as they stand (a token, nothing to strip) go in,
# so a hit gives the same pair. A bounded `Memo`: a peer sending ever new names empties it
# (the names of RFC 3261 and its extensions are learnt again at their next use).
_NAMES: Memo[str, tuple[str, str]] = Memo(1024)


def _learn(name: str) -> tuple[str, str] | None:
    if header_name_re.fullmatch(name) is None:
        return None  # empty, trailing white space, bad characters: the general path decides
    canon = COMPACT_FORMS.get(name) if len(name) == 1 else None
    canon = canon or canonical_name(name)
    return _NAMES.put(name, (canon, canon.lower()))


for _name in (*COMPACT_FORMS, *COMPACT_FORMS.values(), *SINGLETON_HEADERS, *LIST_HEADERS):
    _learn(_name)


def _split_fast(lines: list[str]) -> tuple[Headers, list[str]] | None:
    """`_split_headers` for the usual case: every line `name: value` with a plain name and
    no bare CR/LF (the caller checked the whole head). None: use the general path."""
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    add_name, add_key, add_value = names.append, keys.append, values.append
    get = _NAMES.peek
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        known = get(name) or _learn(name)
        if known is None:
            return None
        add_name(known[0])
        add_key(known[1])
        add_value(value.strip(" \t"))
    return Headers._trusted_keyed(tuple(zip(names, values, strict=True)), tuple(keys)), values


def _split(lines: list[str], clean: bool) -> tuple[Headers, list[str], str | None]:
    """Headers, their values in order, and the first problem (see `_split_headers`)."""
    fast = _split_fast(lines) if clean else None
    if fast is not None:
        return fast[0], fast[1], None
    pairs, problem = _split_headers(lines[1:])
    return Headers._trusted(tuple(pairs)), [v for _, v in pairs], problem


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
        # lenient: datagram ends right after the last header line; never before `start`
        # (b"\r\n" alone): mypyc's bytes slice raises SystemError on end < start (issue 27)
        end = max(len(data) - 2, start)
        body_start = len(data)
    else:
        body_start = end + 4
    if end - start > max_header_size:
        raise RemoteProtocolError("header section too large", 513)
    head = data[start:end].decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = fold_re.sub(" ", head)  # unfold LWS (RFC 3261 §7.3.1)
    lines = head.split(_CRLF)
    # no CR or LF but the line ends: the fast header split applies
    clean = head.count("\n") == len(lines) - 1 == head.count("\r")
    is_response = lines[0][:4].upper() == "SIP/"
    try:
        if is_response:
            return _parse_response(lines, clean, data, body_start)
        return _parse_request(lines, clean, data, body_start, allow)
    except DropMessage:
        raise
    except SipError as exc:
        if is_response:
            raise DropMessage(f"malformed response: {exc}") from exc
        raise


def _body(headers: Headers, data: bytes, body_start: int) -> bytes:
    keys = headers._keys
    count = keys.count("content-length")
    if count > 1:
        raise RemoteProtocolError("multiple Content-Length values", fatal=True)
    rest = len(data) - body_start
    if not count:
        return data[body_start:]  # UDP without Content-Length: the rest (§18.3)
    length = parse_content_length(headers._items[keys.index("content-length")][1], fatal=True)
    if length > rest:
        raise RemoteProtocolError(f"body shorter than Content-Length {length}")
    return data[body_start : body_start + length]


def _check_singletons(headers: Headers) -> None:
    keys = headers._keys
    if len(set(keys)) == len(keys):
        return  # no name twice
    seen: set[str] = set()
    for name, _ in headers:
        if name in SINGLETON_HEADERS:
            if name in seen:
                raise RemoteProtocolError(f"duplicate {name} header")
            seen.add(name)


def _views(msg: SipMessage, values: list[str], request: bool) -> CSeq | None:
    """Parse the views the transaction layer needs, in the order the lazy views would be
    read (cseq, vias, from_, to[, max_forwards]), and cache them on `msg`."""
    keys = msg.headers._keys
    cache = msg.__dict__
    cseq = cache["cseq"] = parse_cseq(values[keys.index("cseq")]) if "cseq" in keys else None
    count = keys.count("via")
    if count == 1:
        cache["vias"] = tuple(parse_via(values[keys.index("via")]))
    else:
        cache["vias"] = tuple(
            x for k, raw in zip(keys, values, strict=True) if k == "via" for x in parse_via(raw)
        )
    cache["from_"] = parse_name_addr(values[keys.index("from")]) if "from" in keys else None
    cache["to"] = parse_name_addr(values[keys.index("to")]) if "to" in keys else None
    if request:
        v = values[keys.index("max-forwards")] if "max-forwards" in keys else None
        cache["max_forwards"] = None if v is None else parse_max_forwards(v)
    return cseq


def _parse_request(
    lines: list[str], clean: bool, data: bytes, body_start: int, allow: tuple[str, ...]
) -> SipRequest:
    m = request_line_re.fullmatch(lines[0])
    headers, values, problem = _split(lines, clean)
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
        # method matched the token rule: SipRequest's own check would pass
        request = SipRequest._trusted(method, parse_uri(target), headers, body)
        # eager views: everything the transaction layer needs must be well-formed
        cseq = _views(request, values, True)
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


def _parse_response(lines: list[str], clean: bool, data: bytes, body_start: int) -> SipResponse:
    m = status_line_re.fullmatch(lines[0])
    if m is None:
        raise DropMessage(f"malformed Status-Line {lines[0][:80]!r}")
    version, code, reason = m.groups()
    if version != SIP_VERSION or len(code) != 3 or not 100 <= int(code) <= 699:
        raise DropMessage(f"bad Status-Line {lines[0][:80]!r}")
    headers, values, problem = _split(lines, clean)
    if problem is not None:
        raise DropMessage(problem)
    body = _body(headers, data, body_start)
    _check_singletons(headers)
    # status in range, reason without CR/LF (status_line_re): SipResponse's checks pass
    response = SipResponse._trusted(int(code), reason or "", headers, body)
    _views(response, values, False)
    return response

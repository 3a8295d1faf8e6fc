"""Content codings of request bodies (RFC 3261 §20.12; the codings are HTTP's, RFC 9110
§8.4.1): `decode_body` undoes `deflate` and `gzip` before the transaction user sees the
request, within a bound on the decoded size.

`deflate` is the zlib format (RFC 1950) wrapping a deflate stream (RFC 1951); a raw deflate
stream without the wrapper is accepted too, as HTTP clients have long had to (some senders
got it wrong). Codings listed in one Content-Encoding are undone in reverse order. The
decoded body never grows past `limit` bytes: the decompressor is asked for at most
`limit + 1` bytes, so a small body that inflates enormously (a "zip bomb") costs at most
that much memory and is refused 413 (§21.4.11).
"""

from __future__ import annotations

import zlib
from typing import Final

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.message import SipRequest

__all__ = ["CODINGS", "decode_body", "encodings_of"]

CODINGS: Final = frozenset({"identity", "deflate", "gzip"})  # what `decode_body` undoes
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def encodings_of(req: SipRequest) -> list[str]:
    """The codings of the body in the order they were applied (lower-case, no identity)."""
    out: list[str] = []
    for value in req.headers.values("Content-Encoding"):
        out.extend(c for c in (p.strip().lower() for p in value.split(",")) if c)
    return [c for c in out if c != "identity"]


def decode_body(req: SipRequest, limit: int) -> SipRequest:
    """`req` with its body decoded and Content-Encoding removed; `req` itself when it has no
    coding to undo. RemoteProtocolError: 400 for a body that does not decode, 413 when the
    decoded body would exceed `limit` bytes, 415 for a coding not in `CODINGS`."""
    if not req.body or "Content-Encoding" not in req.headers:
        return req  # the usual case, answered by one lookup
    codings = encodings_of(req)
    if not codings:
        return req
    body = req.body
    for coding in reversed(codings):
        if coding not in _WBITS:
            raise RemoteProtocolError(
                f"content coding {coding}", 415, None, (("Accept-Encoding", _ACCEPTED),)
            )
        body = _inflate(body, coding, limit)
    headers = req.headers.remove("Content-Encoding")
    if "Content-Length" in headers:
        headers = headers.set("Content-Length", str(len(body)))
    return SipRequest(req.method, req.uri, headers, body)


_ACCEPTED: Final = ", ".join(sorted(CODINGS))


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    try:
        return _inflate_with(data, _WBITS[coding], limit)
    except zlib.error:
        if coding != "deflate":
            raise RemoteProtocolError(f"body is not valid {coding}", 400) from None
    try:  # a raw deflate stream, without the zlib wrapper
        return _inflate_with(data, -zlib.MAX_WBITS, limit)
    except zlib.error:
        raise RemoteProtocolError("body is not valid deflate", 400) from None


def _inflate_with(data: bytes, wbits: int, limit: int) -> bytes:
    d = zlib.decompressobj(wbits)
    out = d.decompress(data, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise RemoteProtocolError(f"decoded body larger than {limit} bytes", 413)
    out += d.flush()
    if len(out) > limit:
        raise RemoteProtocolError(f"decoded body larger than {limit} bytes", 413)
    if not d.eof:
        raise zlib.error("truncated stream")
    return out

"""SIP protocol errors (h11 style): our API misuse vs. the peer's protocol violations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.sip.message import Headers

__all__ = ["DropMessage", "LocalProtocolError", "RemoteProtocolError", "SipError"]


class SipError(Exception):
    """Base of every error the pure SIP core raises."""


class LocalProtocolError(SipError):
    """We misused the API or tried to build an invalid message (a bug on our side)."""


class RemoteProtocolError(SipError):
    """The peer sent something invalid; carries the response to answer a request with.

    `extra_headers` are (name, value) pairs to add to that response, e.g. `Unsupported`
    for 420, `Accept` for 415, `Allow` for 405/501 (RFC 3261 §8.2.2-§8.2.3).
    `fatal` marks stream framing errors after which the connection must be closed
    (RFC 3261 §18.3: a stream cannot be resynchronised).
    `headers` is set by the parser to the header fields it could read (best effort), so
    a response can still copy Via/From/To/Call-ID/CSeq (see `validate.error_response`);
    `method` likewise holds the request method when known.
    """

    def __init__(
        self,
        message: str,
        status: int = 400,
        reason: str | None = None,
        extra_headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
        *,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.reason = reason
        self.extra_headers: tuple[tuple[str, str], ...] = tuple(extra_headers)
        self.fatal = fatal
        self.headers: Headers | None = None
        self.method: str | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status})"


class DropMessage(SipError):
    """The message must be discarded silently: no response is sent (RFC 4475 §3.1.2.5,
    §3.1.2.19, §3.3.10: malformed responses, broadcast Via at an endpoint)."""

"""Message framing on stream transports (TCP/TLS; RFC 3261 §18.3, RFC 5626 §3.5.1).

`StreamFramer.feed(data)` returns events: `Frame(data)` for each complete message (parse it
with `parser.parse_message`; a parse error there is answered, the connection survives),
`KeepAlivePing` for a CRLFCRLF ping (answer with CRLF) and `KeepAlivePong` for a lone CRLF.
Framing errors are fatal (`RemoteProtocolError(fatal=True)`): a missing, duplicated,
negative or non-numeric Content-Length, or more buffered data than `max_message_size`
(h11's `max_incomplete_event_size`) — the connection must be closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from gateway.sip.abnf import fold_re
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.parser import parse_content_length

__all__ = ["Frame", "FramerEvent", "KeepAlivePing", "KeepAlivePong", "StreamFramer"]

# "Content-Length" / "l" HCOLON 1*DIGIT, at the start of a header line (after unfolding)
_content_length_re = re.compile(rb"\r\n(?:content-length|l)[ \t]*:([^\r\n]*)", re.IGNORECASE)


@dataclass(frozen=True)
class Frame:
    """One complete message: the header section, CRLFCRLF and Content-Length body octets."""

    data: bytes


@dataclass(frozen=True)
class KeepAlivePing:
    """CRLFCRLF between messages (RFC 5626 §3.5.1); answer with a single CRLF."""


@dataclass(frozen=True)
class KeepAlivePong:
    """A single CRLF between messages: the answer to our ping (RFC 5626 §4.4.1)."""


FramerEvent: TypeAlias = Frame | KeepAlivePing | KeepAlivePong


class StreamFramer:
    """Cuts a byte stream into messages by Content-Length; bounded buffer."""

    def __init__(self, max_message_size: int = 65535) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._need: int | None = None  # total size of the message being received, if known
        self._closed = False
        # A framing error found after complete messages in the same chunk: those messages
        # are returned first, and the error waits here for the caller (who must then close).
        self.error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[FramerEvent]:
        """Complete messages and keep-alives in `data`. A framing error raises at once when
        nothing complete precedes it; otherwise the complete events are returned and the
        error is left in `self.error` (RFC 4475 dblreq: the first message still counts)."""
        if self._closed:
            raise RemoteProtocolError("framer closed after a framing error", fatal=True)
        self._buf += data
        events: list[FramerEvent] = []
        try:
            while (event := self._next()) is not None:
                events.append(event)
        except RemoteProtocolError as exc:
            self._closed = True
            if not events:
                raise
            self.error = exc
        return events

    def _next(self) -> FramerEvent | None:
        buf = self._buf
        if self._need is None:
            if buf.startswith(b"\r\n\r\n"):
                del buf[:4]
                return KeepAlivePing()
            if bytes(buf) in (b"\r", b"\r\n\r"):  # may still become a CRLFCRLF ping
                return None
            if buf.startswith(b"\r\n"):  # a lone CRLF is reported as soon as it is seen
                del buf[:2]
                return KeepAlivePong()
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_message_size:
                    raise RemoteProtocolError("header section too large", 513, fatal=True)
                return None
            self._need = end + 4 + self._content_length(bytes(buf[: end + 2]))
            if self._need > self.max_message_size:
                raise RemoteProtocolError("message too large", 513, fatal=True)
        if len(buf) < self._need:
            return None
        frame = bytes(buf[: self._need])
        del buf[: self._need]
        self._need = None
        return Frame(frame)

    @staticmethod
    def _content_length(head: bytes) -> int:
        """Content-Length is mandatory on streams (RFC 3261 §18.3, §20.14)."""
        if b"\r\n " in head or b"\r\n\t" in head:
            head = fold_re.sub(" ", head.decode("latin-1")).encode("latin-1")
        values = _content_length_re.findall(head)
        if not values:
            raise RemoteProtocolError("Content-Length missing on a stream", fatal=True)
        if len(values) > 1:
            raise RemoteProtocolError("multiple Content-Length values", fatal=True)
        return parse_content_length(values[0].decode("latin-1"), fatal=True)

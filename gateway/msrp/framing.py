"""Cutting an MSRP byte stream into messages (RFC 4975 §5.1, §7.1, §9), bounded.

MSRP frames by boundary, not by length: a request ends at CRLF "-------" transaction-id
flag CRLF, where the id is the one on its start line. `MsrpFramer.feed(data, now)` returns
`Frame(data)` for each complete message (parse it with `parser.parse_message`; an error
there is answered and the connection survives) and `Oversized(error)` for a request whose
body went over `max_chunk_size`: its body was dropped while scanning for the end-line
(memory stays bounded) and `error` (413) carries the fields for the answer (§10.5: the
sender must stop sending that message).

Fatal errors close the connection (`RemoteProtocolError(fatal=True)`): a start line that
is not MSRP or longer than `max_start_line` (without a transaction id there is no end-line
to look for), a header section over `max_header_size`, and a message not complete by its
deadline (`expire(now)`: slowloris; the deadline is `partial_timeout` seconds after its
first byte arrived). Every rule is decided on the message's own bytes, so the same stream
gives the same events whatever the chunking; the buffer never holds more than one
message's head plus `max_chunk_size`, an end-line and the last `feed`'s data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.parser import head_error, parse_start_line

__all__ = ["Frame", "FramerEvent", "MsrpFramer", "Oversized"]


@dataclass(frozen=True)
class Frame:
    """One complete message: start line through the end-line and its CRLF."""

    data: bytes


@dataclass(frozen=True)
class Oversized:
    """A request whose body exceeded the chunk limit; answer `error` (413) if allowed."""

    transaction_id: str
    flag: str
    error: RemoteProtocolError = field(compare=False)


FramerEvent: TypeAlias = Frame | Oversized


class MsrpFramer:
    """Cuts a stream into messages by end-line; see the module docstring for the bounds."""

    def __init__(
        self,
        max_chunk_size: int = 1 << 20,
        max_header_size: int = 16384,
        max_start_line: int = 1024,
        partial_timeout: float = 30.0,
    ) -> None:
        self.max_chunk_size = max_chunk_size
        self.max_header_size = max_header_size
        self.max_start_line = max_start_line
        self.partial_timeout = partial_timeout
        self._buf = bytearray()
        self._closed = False
        self._reset()
        self._started: float | None = None
        # A fatal error found after complete events in the same feed: they are returned
        # first and the error waits here (the caller must then close), as in SIP framing.
        self.error: RemoteProtocolError | None = None

    def _reset(self) -> None:
        self._marker: bytes | None = None  # CRLF "-------" id, once the start line is read
        self._first = 0  # index of the start line's CRLF
        self._scan = 0  # where the next end-line search starts
        self._head: bytes | None = None  # kept head while a too large body is dropped
        self._hend = -1  # index of CRLFCRLF ending the header section, once seen

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def deadline(self) -> float | None:
        """When the partial message must be complete (None: nothing partial buffered)."""
        return None if self._started is None else self._started + self.partial_timeout

    def expire(self, now: float) -> None:
        """Fatal error when a partial message missed its deadline (a slowloris)."""
        deadline = self.deadline
        if deadline is not None and now >= deadline:
            self._closed = True
            raise RemoteProtocolError("message not complete in time", 408, fatal=True)

    def feed(self, data: bytes, now: float) -> list[FramerEvent]:
        if self._closed:
            raise RemoteProtocolError("framer closed after a fatal error", fatal=True)
        if data and not self._buf and self._head is None:
            self._started = now
        self._buf += data
        events: list[FramerEvent] = []
        try:
            while (event := self._next()) is not None:
                events.append(event)
                self._started = now if self._buf else None
        except RemoteProtocolError as exc:
            self._closed = True
            if not events:
                raise
            self.error = exc
        return events

    def _next(self) -> FramerEvent | None:
        buf = self._buf
        if self._marker is None:
            if not buf:
                return None
            first = buf.find(b"\r\n", 0, self.max_start_line + 2)
            if first < 0:
                if len(buf) > self.max_start_line + 1 or not b"MSRP ".startswith(bytes(buf[:5])):
                    raise RemoteProtocolError("no MSRP start line", fatal=True)
                return None
            tid = parse_start_line(bytes(buf[:first]))[0]
            self._marker = b"\r\n-------" + tid.encode("ascii")
            self._first = self._scan = first
        marker = self._marker
        keep = len(marker) + 2  # a match may begin this far before the buffer's end
        at = buf.find(marker, self._scan)
        while at >= 0:
            nxt = at + len(marker)
            if nxt + 3 > len(buf):
                break  # flag or CRLF not here yet: search again from `at` next time
            if buf[nxt] in b"$+#" and buf[nxt + 1 : nxt + 3] == b"\r\n":
                return self._complete(at)
            at = buf.find(marker, at + 1)
        self._scan = max(self._first if self._head is None else 0, len(buf) - keep)
        if self._head is not None:  # dropping an oversized body: keep only the tail
            del buf[: len(buf) - keep]
            self._scan = 0
            return None
        if self._hend < 0:
            self._hend = buf.find(b"\r\n\r\n", self._first + 2)
        if self._hend < 0:
            if len(buf) - self._first - len(marker) - 3 > self.max_header_size:
                raise RemoteProtocolError("header section too large", fatal=True)
            return None
        self._check_head(self._hend)
        if len(buf) - (self._hend + 4) - keep > self.max_chunk_size:
            self._head = bytes(buf[: self._hend])
            del buf[: len(buf) - keep]
            self._scan = 0
        return None

    def _check_head(self, end: int) -> None:
        if end - self._first > self.max_header_size:
            raise RemoteProtocolError("header section too large", fatal=True)

    def _complete(self, at: int) -> FramerEvent:
        buf = self._buf
        assert self._marker is not None
        size = at + len(self._marker) + 3
        flag = chr(buf[at + len(self._marker)])
        tid = self._marker[9:].decode("ascii")
        event: FramerEvent
        if self._head is not None:
            event = Oversized(tid, flag, head_error(self._head, "chunk too large", 413))
        else:
            hend = buf.find(b"\r\n\r\n", self._first + 2, at)
            self._check_head(at if hend < 0 else hend)
            if hend >= 0 and at - (hend + 4) > self.max_chunk_size:
                head = bytes(buf[:hend])
                event = Oversized(tid, flag, head_error(head, "chunk too large", 413))
            else:
                event = Frame(bytes(buf[:size]))
        del buf[:size]
        self._reset()
        return event

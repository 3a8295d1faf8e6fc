"""What an MSRP endpoint answers (RFC 4975 §5.4, §7): the pure decisions behind
`gateway/msrp/transport/`.

`Session` is one MSRP session (our path, the peer's path, a `Reassembler`, our messages in
flight); `Connection` is one transport connection's receive side (a `MsrpFramer`, the
transaction ids it is waiting for). The asyncio glue feeds bytes and writes what comes
back; everything it must decide is here, with time as an input:

- A request's To-Path must hold exactly one URI naming a session of this endpoint
  (§7.3): none is **481** (`Unmatched`, for the log), a session bound to another
  connection is **506** (§5.4), an unbound session is bound by its first request (§5.4).
- A SEND chunk gets 200 (`reports.response`), errors their status; a whole message is a
  `Delivered` event carrying the last chunk, from which `Session.success_report` builds
  the 200 REPORT later (RFC 7573 §7: held until the XMPP receipt).
- Our messages go out with Success-Report "yes" and Failure-Report "yes"; their
  `Outcome` is 200 when a success REPORT covers every byte, the error's code on a
  non-200 response or failure REPORT, 408 when a chunk's response does not come within
  `transaction_timeout` (§7.1.1 leaves the value to us, 30 s by default), 481 when the
  session ends first; 200 with `reported=False` when every chunk got its 200 but no
  REPORT came within `report_timeout` (the peer need not honour Success-Report; the
  table of messages in flight stays bounded).
- Methods other than SEND and REPORT are 501 (§10.9; AUTH is for relays, RFC 4976 §5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from gateway.msrp import reports
from gateway.msrp.chunks import (
    Complete,
    Expired,
    Reassembler,
    chunk_message,
    random_id,
)
from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.framing import Frame, FramerEvent, MsrpFramer
from gateway.msrp.message import ByteRange, MsrpRequest, MsrpResponse
from gateway.msrp.parser import parse_message
from gateway.msrp.serializer import serialize
from gateway.msrp.uri import MsrpUri

__all__ = [
    "Answered",
    "Bound",
    "Connection",
    "Delivered",
    "EndpointEvent",
    "Outcome",
    "Session",
    "Unmatched",
    "Write",
]


@dataclass(frozen=True)
class Write:
    """Bytes to write on the connection the input came from."""

    data: bytes


@dataclass(frozen=True)
class Delivered:
    """A whole message for `session` (answer its success REPORT later, if due)."""

    session: Session
    message: Complete


@dataclass(frozen=True)
class Outcome:
    """The fate of a message we sent: `code` 200 delivered, otherwise the failure."""

    session: Session
    message_id: str
    code: int
    comment: str | None = None
    reported: bool = True  # False: every chunk got its 200, no REPORT within report_timeout

    @property
    def ok(self) -> bool:
        return self.code == 200


@dataclass(frozen=True)
class Unmatched:
    """A request refused 481/506: for the log line (§7.3, §5.4)."""

    status: int
    to_path: str
    reason: str


@dataclass(frozen=True)
class Bound:
    """The peer's first request bound `session` to this connection (§5.4)."""

    session: Session


@dataclass(frozen=True)
class Answered:
    """A response for no bound session (an AUTH answer from a relay, RFC 4976 §5.1)."""

    response: MsrpResponse


EndpointEvent: TypeAlias = Write | Delivered | Outcome | Unmatched | Bound | Answered


class _Outgoing:
    """A message we sent, until its outcome: its size and the chunks still unanswered."""

    __slots__ = ("acked_at", "total", "unanswered")

    def __init__(self, chunks: list[MsrpRequest]) -> None:
        self.total = sum(len(c.body or b"") for c in chunks)
        self.unanswered = {c.transaction_id for c in chunks}
        self.acked_at: float | None = None  # when the last chunk's 200 came


class Session:
    """One MSRP session's state; `key` is our URI (§6.1 equality)."""

    def __init__(
        self,
        local_path: tuple[MsrpUri, ...],
        *,
        max_message_size: int = 1 << 20,
        chunk_size: int = 2048,
        transaction_timeout: float = 30.0,
        report_timeout: float = 30.0,
        new_id: Callable[[], str] = random_id,
    ) -> None:
        self.local_path = local_path  # our a=path: relays first, our URI last
        self.local = local_path[-1]
        self.remote_path: tuple[MsrpUri, ...] = ()
        self.reassembler = Reassembler(max_message_size=max_message_size)
        self.chunk_size = chunk_size
        self.transaction_timeout = transaction_timeout
        self.report_timeout = report_timeout
        self.new_id = new_id
        self.connection: object | None = None  # the glue's connection token, once bound
        self._out: dict[str, _Outgoing] = {}
        self._tids: dict[str, tuple[str, float]] = {}  # transaction id -> message id, sent at
        self.closed = False

    # -- sending ----------------------------------------------------------------------

    @property
    def to_path(self) -> tuple[MsrpUri, ...]:
        """Where requests go (§7.1): the peer's path, behind our relays (RFC 4976 §5.3)."""
        return (*self.local_path[:-1], *self.remote_path)

    def send(self, content_type: str, body: bytes, now: float) -> tuple[str, list[bytes]]:
        """A new message: its Message-ID and the serialized chunks to write."""
        mid = self.new_id()
        chunks = chunk_message(
            body,
            message_id=mid,
            to_path=self.to_path,
            from_path=(self.local,),
            content_type=content_type,
            chunk_size=self.chunk_size,
            headers=(("Success-Report", "yes"), ("Failure-Report", "yes")),
            new_id=self.new_id,
        )
        self._out[mid] = _Outgoing(chunks)
        for c in chunks:
            self._tids[c.transaction_id] = (mid, now)
        return mid, [serialize(c) for c in chunks]

    def bodiless_send(self) -> bytes:
        """The empty SEND the active end writes at once to bind the connection (§5.4)."""
        request = MsrpRequest.build(
            self.new_id(), "SEND", self.to_path, (self.local,), (("Message-ID", self.new_id()),)
        )
        return serialize(request)

    def success_report(self, message: Complete) -> bytes | None:
        """The 200 REPORT for a delivered message when the sender asked for one (§7.1.3),
        covering the whole message; None otherwise."""
        if not reports.success_report_due(message.last):
            return None
        size = len(message.body)
        report = reports.success_report(
            message.last, ByteRange(1, size, size), local=self.local, new_id=self.new_id
        )
        return serialize(report)

    def failure_report(self, message: Complete, code: int) -> bytes | None:
        """A failure REPORT for a delivered message that could not be passed on (§7.1.4)."""
        report = reports.failure_report(message.last, code, local=self.local, new_id=self.new_id)
        return None if report is None else serialize(report)

    # -- timers -----------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        times = [t + self.transaction_timeout for _, t in self._tids.values()]
        acked = [o.acked_at for o in self._out.values() if o.acked_at is not None]
        if acked:
            times.append(min(acked) + self.report_timeout)
        if (r := self.reassembler.deadline) is not None:
            times.append(r)
        return min(times) if times else None

    def expire(self, now: float) -> list[EndpointEvent]:
        events: list[EndpointEvent] = []
        late = [t for t, (_, at) in self._tids.items() if now >= at + self.transaction_timeout]
        for tid in late:
            mid, _ = self._tids.pop(tid)
            events += self._fail(mid, 408, "no response to a chunk")
        unreported = [
            m for m, o in self._out.items()
            if o.acked_at is not None and now >= o.acked_at + self.report_timeout
        ]  # fmt: skip
        for mid in unreported:
            # delivered hop by hop, but the success REPORT we asked for never came: the
            # outcome is bounded in time (and `_out` in size) whatever the peer does
            del self._out[mid]
            events.append(Outcome(self, mid, 200, "no success report", reported=False))
        for gone in self.reassembler.expire(now):
            events += self._expired(gone)
        return events

    def _expired(self, gone: Expired) -> list[EndpointEvent]:
        # RFC 4975 defines no status for an incomplete message; 408 like a timeout
        report = reports.failure_report(gone.first, 408, local=self.local, new_id=self.new_id)
        return [] if report is None else [Write(serialize(report))]

    def close(self) -> list[Outcome]:
        """The session ends: every message still in flight failed (481)."""
        self.closed = True
        events = [Outcome(self, mid, 481, "session ended") for mid in self._out]
        self._out.clear()
        self._tids.clear()
        return events

    def _fail(self, mid: str, code: int, comment: str | None) -> list[EndpointEvent]:
        out = self._out.pop(mid, None)
        if out is None:
            return []
        for tid in out.unanswered:
            self._tids.pop(tid, None)
        return [Outcome(self, mid, code, comment)]

    # -- receiving --------------------------------------------------------------------

    def on_response(self, response: MsrpResponse, now: float) -> list[EndpointEvent]:
        entry = self._tids.pop(response.transaction_id, None)
        if entry is None:
            return []
        mid = entry[0]
        out = self._out.get(mid)
        if out is None:
            return []
        out.unanswered.discard(response.transaction_id)
        if response.code != 200:
            return self._fail(mid, response.code, response.comment)
        if not out.unanswered:
            out.acked_at = now
        return []

    def on_request(self, request: MsrpRequest, now: float) -> list[EndpointEvent]:
        if request.method == "REPORT":
            return self._on_report(request)
        if request.method != "SEND":
            return _answer(request, 501, self.local)
        try:
            event = self.reassembler.receive(request, now)
        except RemoteProtocolError as exc:
            answer = reports.error_response(exc, self.local)
            return [] if answer is None else [Write(serialize(answer))]
        events = _answer(request, 200, self.local)
        # a bodiless SEND only binds the connection (§5.4); Aborted, Duplicate and None
        # (more chunks to come) deliver nothing
        if isinstance(event, Complete) and event.last.body is not None:
            events.append(Delivered(self, event))
        return events

    def _on_report(self, request: MsrpRequest) -> list[EndpointEvent]:
        mid = request.message_id
        status = request.status
        out = None if mid is None else self._out.get(mid)
        if out is None or status is None or mid is None:
            return []  # a late or unknown report: nothing to answer (§7.1.2)
        if status.code != 200:
            return self._fail(mid, status.code, status.comment)
        br = request.byte_range
        covers = br is None or (br.start == 1 and (br.end is None or br.end >= out.total))
        if not covers:
            return []  # a partial success report (§7.1.3); wait for the rest
        self._out.pop(mid)
        for tid in out.unanswered:
            self._tids.pop(tid, None)
        return [Outcome(self, mid, 200, status.comment)]


def _answer(request: MsrpRequest, code: int, local: MsrpUri) -> list[EndpointEvent]:
    answer = reports.response(request, code, local=local)
    return [] if answer is None else [Write(serialize(answer))]


class Connection:
    """One connection's receive side: frames, parses and routes to `sessions` (a mapping
    from our URI to its session, shared by every connection of the endpoint); `token`
    identifies this connection in `Session.connection`."""

    def __init__(
        self,
        token: object,
        sessions: Mapping[MsrpUri, Session],
        framer: MsrpFramer,
    ) -> None:
        self.token = token
        self.sessions = sessions
        self.framer = framer
        self.bound: dict[MsrpUri, Session] = {}
        self.fatal: RemoteProtocolError | None = None

    def feed(self, data: bytes, now: float) -> list[EndpointEvent]:
        """Events for `data`; after a fatal error `fatal` is set: close the connection."""
        events: list[EndpointEvent] = []
        try:
            frames = self.framer.feed(data, now)
        except RemoteProtocolError as exc:
            self.fatal = exc
            return events
        for frame in frames:
            events += self._frame(frame, now)
        if self.framer.error is not None:
            self.fatal = self.framer.error
        return events

    def expire(self, now: float) -> None:
        try:
            self.framer.expire(now)
        except RemoteProtocolError as exc:
            self.fatal = exc

    def _frame(self, frame: FramerEvent, now: float) -> list[EndpointEvent]:
        if not isinstance(frame, Frame):  # Oversized: 413 (§10.5)
            answer = reports.error_response(frame.error)
            return [] if answer is None else [Write(serialize(answer))]
        try:
            msg = parse_message(frame.data)
        except RemoteProtocolError as exc:
            if exc.fatal:
                self.fatal = exc
                return []
            answer = reports.error_response(exc)
            return [] if answer is None else [Write(serialize(answer))]
        if isinstance(msg, MsrpResponse):
            to = msg.to_path
            session = self.bound.get(to[0]) if len(to) == 1 else None
            return [Answered(msg)] if session is None else session.on_response(msg, now)
        return self._request(msg, now)

    def _request(self, request: MsrpRequest, now: float) -> list[EndpointEvent]:
        to = request.to_path
        session = self.sessions.get(to[0]) if len(to) == 1 else None
        text = " ".join(map(str, to))
        if session is None or session.closed:
            return [*_answer(request, 481, to[-1]), Unmatched(481, text, "no such session")]
        if session.connection is not None and session.connection is not self.token:
            return [*_answer(request, 506, to[-1]), Unmatched(506, text, "bound elsewhere")]
        if session.remote_path and request.from_path[-1] != session.remote_path[-1]:
            # the peer's URI ends From-Path whatever relays prepended (RFC 4976 §6)
            return [*_answer(request, 403, session.local), Unmatched(403, text, "wrong From-Path")]
        bound: list[EndpointEvent] = []
        if session.connection is None:
            session.connection = self.token  # the first request binds (§5.4)
            self.bound[session.local] = session
            bound.append(Bound(session))
        return [*bound, *session.on_request(request, now)]

    def bind(self, session: Session) -> None:
        """An active session opened (or reuses) this connection."""
        session.connection = self.token
        self.bound[session.local] = session

    def unbind(self, session: Session) -> None:
        self.bound.pop(session.local, None)

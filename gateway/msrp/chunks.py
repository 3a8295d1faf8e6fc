"""Chunking outgoing messages and reassembling incoming ones (RFC 4975 §5.1, §7.1.1, §7.3.1).

Outgoing: `chunk_message` cuts a body into SEND requests of at most `chunk_size` octets
(2048 by default: §7.1.1 lets a sender that never interrupts send 2048-octet increments),
each with `Byte-Range: start-end/total` and `+`, the last with `$`. Transaction ids come
from `new_id` (randomness is an input; `random_id` gives the 64+ bits §7.1 asks for); an id
whose end-line occurs in its chunk is replaced (§7.1). `abort_request` ends a message with
`#` (§7.1, after a 413 or failure report, §10.5, §7.3.2).

Incoming: `Reassembler.receive(request, now)` places each SEND chunk by Message-ID in a
per-message buffer and returns `Complete` when every byte up to the end of the `$` chunk is
there (that chunk defines the total, §7.3.1; a body shorter than its range-end is an
interrupted chunk and counts for what it holds), `Aborted` on `#`, `Duplicate`, or None.
Decisions, raised as `RemoteProtocolError` for the SEND's response:

- 413 (§10.5, RFC 7573 §7 R7573-05): a Byte-Range total, a chunk's end, or the `$`-defined
  total beyond `max_message_size`; a new message while `max_partial` are in progress.
- 400: Byte-Range totals that disagree between chunks of one message, a chunk past the
  `$`-defined end, or an overlap whose bytes differ from those already received.
  §7.3.1 says the last chunk SHOULD win on overlap, to cope with data duplicated by a
  connection failure: duplicated data is identical, and is accepted; different data under
  one Message-ID is two versions of a message (§7.1.1: a Message-ID names exactly one), and
  a gateway forwarding whole messages cannot tell which the sender meant.
- A chunk of a message completed lately (a `Memo` of `recent` ids, emptied when full) is a
  `Duplicate`
  (§7.3.1: a connection failure can duplicate data; a Message-ID is never reused, §7.1.1):
  acknowledge it, deliver nothing.
- `expire(now)` drops messages with no chunk for `timeout` seconds (`Expired` events; no
  status is defined for this, the caller decides on a failure REPORT).
"""

from __future__ import annotations

import bisect
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias

from gateway.memo import Memo
from gateway.msrp.errors import LocalProtocolError, RemoteProtocolError
from gateway.msrp.message import (
    ABORT,
    END,
    MORE,
    ByteRange,
    HeaderPair,
    MsrpRequest,
    contains_end_line,
)
from gateway.msrp.uri import MsrpUri

__all__ = [
    "Aborted",
    "Complete",
    "Duplicate",
    "Expired",
    "Reassembler",
    "ReassemblyEvent",
    "abort_request",
    "chunk_message",
    "random_id",
]

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ID_TAIL = _ID_ALPHABET + "-."  # 64 ident-chars (§9): six random bits each


def random_id(length: int = 16) -> str:
    """An ident (§9: ALPHANUM then ident-chars) with about 96 bits of randomness for 16
    characters (>= 64, §7.1): an unbiased ALPHANUM first (a byte below 248, mod 62),
    then six bits per character from one `secrets.token_bytes` call."""
    raw = secrets.token_bytes(length + 8)
    first = next((b for b in raw[length:] if b < 248), None)
    if first is None:  # eight bytes all >= 248: about 1e-11, draw the slow way
        first = secrets.randbelow(62)
    return _ID_ALPHABET[first % 62] + "".join(_ID_TAIL[b & 63] for b in raw[1:length])


def chunk_message(
    body: bytes,
    *,
    message_id: str,
    to_path: Iterable[MsrpUri],
    from_path: Iterable[MsrpUri],
    content_type: str,
    chunk_size: int = 2048,
    headers: Iterable[HeaderPair] = (),
    new_id: Callable[[], str] = random_id,
) -> list[MsrpRequest]:
    """The SEND requests carrying `body`; `headers` (Success-Report, Failure-Report...)
    go in every chunk after Message-ID and Byte-Range (§7.1.1: all chunks alike)."""
    if chunk_size < 1:
        raise LocalProtocolError("chunk_size must be positive")
    to_path, from_path, headers = tuple(to_path), tuple(from_path), tuple(headers)
    total = len(body)
    starts = range(0, total, chunk_size) if total else range(1)
    requests = []
    for offset in starts:
        piece = body[offset : offset + chunk_size]
        last = offset + chunk_size >= total
        byte_range = ByteRange(offset + 1, offset + len(piece), total)
        tid = new_id()
        for _ in range(8):
            if not contains_end_line(piece, tid):
                break
            tid = new_id()
        else:
            raise LocalProtocolError("no transaction id absent from the chunk (§7.1)")
        requests.append(
            MsrpRequest.build(
                tid,
                "SEND",
                to_path,
                from_path,
                (("Message-ID", message_id), ("Byte-Range", str(byte_range)), *headers),
                body=piece,
                content_type=content_type,
                flag=END if last else MORE,
            )
        )
    return requests


def abort_request(
    first: MsrpRequest, next_start: int, new_id: Callable[[], str] = random_id
) -> MsrpRequest:
    """A bodiless-data `#` chunk ending the message `first` belongs to (§7.1) at byte
    `next_start`: an empty body at that position, Byte-Range next_start-(next_start-1)."""
    br = first.byte_range
    total = None if br is None else br.total
    rest = [(n, v) for n, v in first.headers[2:] if n.lower() not in ("byte-range", "content-type")]
    mid = [(n, v) for n, v in rest if n.lower() == "message-id"]
    others = [(n, v) for n, v in rest if n.lower() != "message-id"]
    byte_range = ByteRange(next_start, next_start - 1, total)
    return MsrpRequest.build(
        new_id(),
        "SEND",
        first.to_path,
        first.from_path,
        (*mid, ("Byte-Range", str(byte_range)), *others),
        body=b"",
        content_type=first.content_type or "text/plain",
        flag=ABORT,
    )


@dataclass(frozen=True)
class Complete:
    """A whole message: its body and the chunk that completed it (for headers, paths)."""

    message_id: str
    body: bytes
    content_type: str | None
    last: MsrpRequest


@dataclass(frozen=True)
class Aborted:
    """The sender gave up the message with `#` (§7.1); what arrived is discarded."""

    message_id: str
    received: int


@dataclass(frozen=True)
class Expired:
    """No chunk of the message arrived for `timeout` seconds; it was dropped."""

    message_id: str
    received: int
    first: MsrpRequest


@dataclass(frozen=True)
class Duplicate:
    """A chunk of a message already delivered: answer it as usual, deliver nothing."""

    message_id: str


ReassemblyEvent: TypeAlias = Complete | Aborted | Duplicate


class _Partial:
    __slots__ = ("covered", "data", "end", "first", "last_seen", "total")

    def __init__(self, first: MsrpRequest, now: float) -> None:
        self.first = first
        self.data = bytearray()
        self.covered: list[tuple[int, int]] = []  # merged [lo, hi) intervals, 0-based
        self.total: int | None = None  # a Byte-Range total ("*" leaves it unknown)
        self.end: int | None = None  # where the "$" chunk ended: the real total (§7.3.1)
        self.last_seen = now

    @property
    def received(self) -> int:
        return sum(hi - lo for lo, hi in self.covered)

    def overlaps_differ(self, lo: int, piece: bytes) -> bool:
        hi = lo + len(piece)
        covered = self.covered
        i = max(0, bisect.bisect_left(covered, (lo, lo)) - 1)
        for a, b in covered[i:]:
            if a >= hi:
                break
            x, y = max(a, lo), min(b, hi)
            if x < y and self.data[x:y] != piece[x - lo : y - lo]:
                return True
        return False

    def put(self, lo: int, piece: bytes) -> None:
        hi = lo + len(piece)
        if len(self.data) < hi:
            self.data.extend(bytes(hi - len(self.data)))
        self.data[lo:hi] = piece
        if lo == hi:
            return
        covered = self.covered
        # intervals touching [lo, hi) are merged into one (the list stays sorted, disjoint)
        i = bisect.bisect_left(covered, (lo, lo))
        if i > 0 and covered[i - 1][1] >= lo:
            i -= 1
        j = i
        while j < len(covered) and covered[j][0] <= hi:
            lo, hi = min(lo, covered[j][0]), max(hi, covered[j][1])
            j += 1
        covered[i:j] = [(lo, hi)]

    def done(self) -> bool:
        if self.end is None:
            return False
        return self.end == 0 or self.covered[:1] == [(0, self.end)]


class Reassembler:
    """Per-session reassembly of SEND chunks by Message-ID; bounded (see module docs)."""

    def __init__(
        self,
        max_message_size: int = 1 << 20,
        max_partial: int = 16,
        timeout: float = 120.0,
        recent: int = 256,
    ) -> None:
        self.max_message_size = max_message_size
        self._done: Memo[str, bool] = Memo(recent)  # Message-IDs delivered lately
        self.max_partial = max_partial
        self.timeout = timeout
        self._partial: dict[str, _Partial] = {}

    def __len__(self) -> int:
        return len(self._partial)

    @property
    def deadline(self) -> float | None:
        """When `expire` next has something to drop."""
        if not self._partial:
            return None
        return min(p.last_seen for p in self._partial.values()) + self.timeout

    def expire(self, now: float) -> list[Expired]:
        gone = [m for m, p in self._partial.items() if now >= p.last_seen + self.timeout]
        events = []
        for mid in gone:
            p = self._partial.pop(mid)
            events.append(Expired(mid, p.received, p.first))
        return events

    def receive(self, request: MsrpRequest, now: float) -> ReassemblyEvent | None:
        """Place one parsed SEND; see the module docstring for events and errors."""
        if request.method != "SEND":
            raise LocalProtocolError("only SEND requests carry chunks (§5.1)")
        mid = request.message_id
        if mid is None:
            raise LocalProtocolError("a parsed SEND has a Message-ID")
        body = request.body or b""
        br = request.byte_range
        start = 1 if br is None else br.start
        total = None if br is None else br.total
        lo = start - 1
        limit = self.max_message_size
        if (total is not None and total > limit) or lo + len(body) > limit:
            self._partial.pop(mid, None)
            raise _error(f"message over {limit} octets", 413, request)
        partial = self._partial.get(mid)
        if partial is None:
            if self._done.peek(mid):
                return Duplicate(mid)
            if request.flag == ABORT:
                return Aborted(mid, 0)
            if request.complete:
                self._done.put(mid, True)
                return Complete(mid, body, request.content_type, request)
            if len(self._partial) >= self.max_partial:
                raise _error("too many messages in progress", 413, request)
            partial = self._partial[mid] = _Partial(request, now)
        partial.last_seen = now
        if request.flag == ABORT:
            del self._partial[mid]
            return Aborted(mid, partial.received)
        try:
            self._place(partial, request, lo, body, total)
        except RemoteProtocolError:
            del self._partial[mid]
            raise
        if not partial.done():
            return None
        del self._partial[mid]
        self._done.put(mid, True)
        assert partial.end is not None
        return Complete(mid, bytes(partial.data[: partial.end]), request.content_type, request)

    def _place(
        self, p: _Partial, request: MsrpRequest, lo: int, body: bytes, total: int | None
    ) -> None:
        if total is not None:
            if p.total is not None and p.total != total:
                raise _error(f"Byte-Range total {total} after {p.total}", 400, request)
            p.total = total
        hi = lo + len(body)
        if request.flag == END:
            if p.end is not None and p.end != hi:
                raise _error("two different message ends", 400, request)
            if p.covered and p.covered[-1][1] > hi:
                raise _error("data received beyond the message end", 400, request)
            p.end = hi
        elif p.end is not None and hi > p.end:
            raise _error("chunk beyond the message end", 400, request)
        if p.overlaps_differ(lo, body):
            raise _error("overlapping chunks with different data (§7.3.1)", 400, request)
        p.put(lo, body)


def _error(message: str, status: int, request: MsrpRequest) -> RemoteProtocolError:
    err = RemoteProtocolError(message, status, transaction_id=request.transaction_id)
    err.method = request.method
    err.to_path = request.to_path
    err.from_path = request.from_path
    err.failure_report = request.failure_report
    err.message_id = request.message_id
    return err

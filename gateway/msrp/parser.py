"""Parse one complete MSRP message (RFC 4975 §9, RFC 4976 §7) from a frame.

`parse_message` reads a frame cut by `framing.MsrpFramer` (start line through the end-line
and its CRLF). It raises `RemoteProtocolError` with the status to answer (400; 413 for a
non-SEND body over 10240 octets, §7.1; 501 is the caller's: an unknown method parses) and,
best effort, the fields a response needs (transaction id, method, paths, Failure-Report).
Nothing but `MsrpError` subclasses escapes (property-tested with random mutations).

Strictness: To-Path then From-Path open the header section (§9 `headers`), each once;
Content-Type is last and present exactly when there is a body (§7.1); SEND and REPORT
carry a Message-ID (§7.1.1, §7.1.2), REPORT a Status and no Success-/Failure-Report
(§7.1.2). A Byte-Range must parse and be ordered (start >= 1, end >= start - 1, end <=
total), but the body's own length decides how many octets the chunk holds (§7.3.1: "SHOULD
determine the actual length ... by inspecting the payload"): the RFC's own examples state
lengths that disagree with their bodies (tests/vectors/msrp/README.md).
Liberal: header names in any case, any run of SP/HTAB after the colon (re-serialized as
": ").
"""

from __future__ import annotations

import contextlib
import re

from gateway.msrp.errors import MsrpError, RemoteProtocolError
from gateway.msrp.message import (
    MAX_NON_SEND_BODY,
    Flag,
    HeaderPair,
    MsrpMessage,
    MsrpRequest,
    MsrpResponse,
    hname_re,
    hval_re,
    parse_path,
    request_problem,
)

__all__ = ["MAX_NON_SEND_BODY", "StartLine", "head_error", "parse_message", "parse_start_line"]


# req-start = pMSRP SP transact-id SP method CRLF
# resp-start = pMSRP SP transact-id SP status-code [SP comment] CRLF
_start_re = re.compile(
    rb"MSRP ([A-Za-z0-9][A-Za-z0-9.\-+%=]{3,31}) (?:([A-Z]+)|([0-9]{3})(?: ([^\r\n]*))?)"
)

_FLAGS: dict[int, Flag] = {ord("$"): "$", ord("+"): "+", ord("#"): "#"}

StartLine = tuple[str, str | None, int | None, str | None]


def parse_start_line(line: bytes) -> StartLine:
    """(transaction id, method, status code, comment) of a start line without its CRLF;
    a line that is not MSRP is fatal: without a transaction id the stream is lost."""
    m = _start_re.fullmatch(line)
    if m is None:
        raise RemoteProtocolError(f"malformed start line {line[:60]!r}", fatal=True)
    tid = m[1].decode("ascii")
    if m[2] is not None:
        return tid, m[2].decode("ascii"), None, None
    comment = m[4]
    if comment is not None:
        try:
            text = comment.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        if not text or hval_re.fullmatch(text) is None:
            raise RemoteProtocolError(f"malformed comment {comment[:60]!r}", fatal=True)
        return tid, None, int(m[3]), text
    return tid, None, int(m[3]), None


def parse_message(frame: bytes) -> MsrpMessage:
    """The request or response in `frame`. See the module docstring for what is checked."""
    try:
        return _parse(frame)
    except MsrpError:
        raise
    except (ValueError, IndexError) as exc:  # defensive: never let a bug leak a ValueError
        raise RemoteProtocolError(f"malformed message: {exc}") from None


def _parse(frame: bytes) -> MsrpMessage:
    first = frame.find(b"\r\n")
    if first < 0:
        raise RemoteProtocolError("no start line", fatal=True)
    tid, method, code, comment = parse_start_line(frame[:first])
    tail = b"\r\n-------" + tid.encode("ascii")
    # the end-line: CRLF "-------" id flag CRLF, the first one after the start line
    at = frame.find(tail, first)
    while at >= 0:
        nxt = at + len(tail)
        if frame[nxt : nxt + 1] in (b"$", b"+", b"#") and frame[nxt + 1 : nxt + 3] == b"\r\n":
            break
        at = frame.find(tail, at + 1)
    if at < 0 or at + len(tail) + 3 != len(frame):
        raise RemoteProtocolError("the frame does not end with its end-line", fatal=True)
    flag = _FLAGS[frame[at + len(tail)]]
    region = frame[first + 2 : at]
    split = region.find(b"\r\n\r\n")
    if split >= 0:
        head, body = region[:split], region[split + 4 :]
    else:  # bodiless: the end-line follows the last header's CRLF (§7.1)
        head, body = region, None
    err = RemoteProtocolError("", transaction_id=tid, method=method)
    headers = _headers(head, err)
    if method is None:
        assert code is not None
        if body is not None:
            raise _fail(err, "a response has no body (§9)")
        return MsrpResponse(tid, code, comment, headers, flag)
    return _check_request(MsrpRequest(tid, method, headers, body, flag), err)


def _fail(err: RemoteProtocolError, message: str, status: int = 400) -> RemoteProtocolError:
    err.args = (message,)
    err.message = message
    err.status = status
    return err


def _headers(head: bytes, err: RemoteProtocolError) -> tuple[HeaderPair, ...]:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(err, "header section is not UTF-8 (§9)") from None
    pairs: list[HeaderPair] = []
    problem: str | None = None
    for line in text.split("\r\n") if text else []:
        name, sep, value = line.partition(":")
        value = value.lstrip(" \t")
        if not sep or hname_re.fullmatch(name) is None or hval_re.fullmatch(value) is None:
            problem = problem or f"malformed header line {line[:60]!r}"
            continue
        pairs.append((name, value))
    for name, value in pairs:  # best effort first: what an error response needs
        key = name.lower()
        try:
            if key == "from-path" and not err.from_path:
                err.from_path = parse_path(value)
            elif key == "to-path" and not err.to_path:
                err.to_path = parse_path(value)
            elif key == "failure-report" and err.failure_report is None:
                err.failure_report = value
            elif key == "message-id" and err.message_id is None:
                err.message_id = value
        except RemoteProtocolError as exc:
            problem = problem or exc.message
    if problem is not None:
        raise _fail(err, problem)
    if len(pairs) < 2 or [n.lower() for n, _ in pairs[:2]] != ["to-path", "from-path"]:
        raise _fail(err, "To-Path and From-Path must open the header section (§9)")
    return tuple(pairs)


def _check_request(request: MsrpRequest, err: RemoteProtocolError) -> MsrpRequest:
    problem = request_problem(request)
    if problem is not None:
        raise _fail(err, *problem)
    return request


def head_error(head: bytes, message: str, status: int) -> RemoteProtocolError:
    """An error for a request whose body was not kept (a chunk over the framer's limit):
    `head` is its start line and header section; the fields a response needs are read
    best effort, as for a parse error."""
    first = head.find(b"\r\n")
    line = head if first < 0 else head[:first]
    tid, method, _, _ = parse_start_line(line)
    err = RemoteProtocolError(message, status, transaction_id=tid, method=method)
    if first >= 0:
        with contextlib.suppress(RemoteProtocolError):
            _headers(head[first + 2 :], err)
        _fail(err, message, status)
    return err

"""Transaction responses and REPORT requests (RFC 4975 §7.1.2-§7.1.4, §7.2, §10).

Who answers what:

- `response(request, code)`: the transaction response, or None where none may be sent:
  never to a REPORT (§7.1.2), never with Failure-Report "no" (§7.1.4), and no 200 with
  "partial" (§7.1.4). To-Path is the first From-Path URI for SEND (responses go to the
  previous hop only) and the whole From-Path otherwise; From-Path is our URI, by default
  the last To-Path URI of the request (§7.2). The flag is always "$".
- `error_response(err)`: the same for a `RemoteProtocolError` from the parser, framer or
  reassembler (None when fatal, for responses, or when the fields are missing).
- `success_report(...)` when `success_report_due` (Success-Report "yes", §7.1.3),
  `failure_report(...)` when `failure_report_allowed` (not "no", §7.1.4): REPORT requests
  with Status 000 code, the original Message-ID and a Byte-Range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from gateway.msrp.chunks import random_id
from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.message import ByteRange, MsrpRequest, MsrpResponse, Status
from gateway.msrp.uri import MsrpUri

__all__ = [
    "COMMENTS",
    "error_response",
    "failure_report",
    "failure_report_allowed",
    "response",
    "success_report",
    "success_report_due",
]

# RFC 4975 §10 (codes; the RFC gives no phrases, these follow its descriptions).
COMMENTS: Mapping[int, str] = MappingProxyType(
    {
        200: "OK",
        400: "Bad Request",  # unintelligible; may retry corrected
        403: "Forbidden",  # not allowed; do not retry
        408: "Request Timeout",  # downstream timeout (relays, RFC 4976); = a local timeout
        413: "Message Too Large",  # stop sending this message (abort with "#")
        415: "Unsupported Media Type",  # no more of this type in the session
        423: "Parameter Out Of Bounds",  # RFC 4976 (Expires)
        481: "Session Does Not Exist",  # terminate the session
        501: "Not Implemented",  # unknown method
        506: "Wrong Connection",  # session bound to another connection
    }
)


def success_report_due(request: MsrpRequest) -> bool:
    """§7.1.3: only a SEND with Success-Report "yes" gets success reports."""
    return request.method == "SEND" and request.success_report


def failure_report_allowed(request: MsrpRequest) -> bool:
    """§7.1.4: Failure-Report "no" forbids failure REPORTs (and responses)."""
    return request.method == "SEND" and request.failure_report != "no"


def _answerable(method: str | None, failure_report: str | None, code: int) -> bool:
    if method is None or method == "REPORT":
        return False  # responses are not answered; REPORTs never (§7.1.2)
    report = failure_report or "yes"
    return report != "no" and not (report == "partial" and code == 200)


def _response(
    tid: str,
    method: str,
    from_path: tuple[MsrpUri, ...],
    local: MsrpUri,
    *,
    code: int,
    comment: str | None,
) -> MsrpResponse:
    to = from_path[:1] if method == "SEND" else from_path
    text = COMMENTS.get(code) if comment is None else comment
    headers = (("To-Path", " ".join(map(str, to))), ("From-Path", str(local)))
    msg = MsrpResponse(tid, code, text, headers, "$")
    msg.check()
    return msg


def response(
    request: MsrpRequest, code: int, comment: str | None = None, local: MsrpUri | None = None
) -> MsrpResponse | None:
    if not _answerable(request.method, request.failure_report, code):
        return None
    me = local if local is not None else request.to_path[-1]
    return _response(
        request.transaction_id, request.method, request.from_path, me, code=code, comment=comment
    )


def error_response(err: RemoteProtocolError, local: MsrpUri | None = None) -> MsrpResponse | None:
    if err.fatal or err.transaction_id is None or err.method is None or not err.from_path:
        return None
    if not _answerable(err.method, err.failure_report, err.status):
        return None
    me = local if local is not None else (err.to_path[-1] if err.to_path else None)
    if me is None:
        return None
    return _response(
        err.transaction_id, err.method, err.from_path, me, code=err.status, comment=None
    )


def _report(
    request: MsrpRequest,
    status: Status,
    byte_range: ByteRange | None,
    local: MsrpUri | None,
    new_id: Callable[[], str],
) -> MsrpRequest:
    me = local if local is not None else request.to_path[-1]
    mid = request.message_id
    assert mid is not None  # parsed SENDs carry one
    headers = [("Message-ID", mid)]
    if byte_range is not None:
        headers.append(("Byte-Range", str(byte_range)))
    headers.append(("Status", str(status)))
    # §7.1.3: To-Path is the original From-Path (the whole path back to the sender)
    return MsrpRequest.build(new_id(), "REPORT", request.from_path, (me,), headers)


def success_report(
    request: MsrpRequest,
    byte_range: ByteRange,
    *,
    local: MsrpUri | None = None,
    comment: str = "OK",
    new_id: Callable[[], str] = random_id,
) -> MsrpRequest:
    """A success REPORT (Status: 000 200) covering `byte_range` of `request`'s message."""
    return _report(request, Status("000", 200, comment), byte_range, local, new_id)


def failure_report(
    request: MsrpRequest,
    code: int,
    *,
    comment: str | None = None,
    local: MsrpUri | None = None,
    new_id: Callable[[], str] = random_id,
) -> MsrpRequest | None:
    """A failure REPORT for the chunk `request`, None when Failure-Report is "no".
    Byte-Range: range-start and total from the chunk, range-end from its body (§7.1.4)."""
    if not failure_report_allowed(request):
        return None
    br = request.byte_range
    size = len(request.body or b"")
    start = 1 if br is None else br.start
    total = size if br is None else br.total
    text = COMMENTS.get(code) if comment is None else comment
    status = Status("000", code, text)
    return _report(request, status, ByteRange(start, start + size - 1, total), local, new_id)

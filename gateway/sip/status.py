"""SIP status codes (RFC 3261 §7.2, §21): the range check and the default reason phrases.

Protocol data only: a gateway that wants other phrases passes `reason` explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["REASON_PHRASES", "check_status_code"]

# Standard reason phrases: RFC 3261 §21 plus the extensions named on each line.
REASON_PHRASES: Mapping[int, str] = MappingProxyType(
    {
        100: "Trying",
        180: "Ringing",
        181: "Call Is Being Forwarded",
        182: "Queued",
        183: "Session Progress",
        200: "OK",
        202: "Accepted",  # RFC 3265 (deprecated for SUBSCRIBE by RFC 6665), RFC 3428
        204: "No Notification",  # RFC 5839
        300: "Multiple Choices",
        301: "Moved Permanently",
        302: "Moved Temporarily",
        305: "Use Proxy",
        380: "Alternative Service",
        400: "Bad Request",
        401: "Unauthorized",
        402: "Payment Required",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        406: "Not Acceptable",
        407: "Proxy Authentication Required",
        408: "Request Timeout",
        410: "Gone",
        412: "Conditional Request Failed",  # RFC 3903
        413: "Request Entity Too Large",
        414: "Request-URI Too Long",
        415: "Unsupported Media Type",
        416: "Unsupported URI Scheme",
        420: "Bad Extension",
        421: "Extension Required",
        422: "Session Interval Too Small",  # RFC 4028
        423: "Interval Too Brief",
        430: "Flow Failed",  # RFC 5626
        439: "First Hop Lacks Outbound Support",  # RFC 5626
        440: "Max-Breadth Exceeded",  # RFC 5393
        480: "Temporarily Unavailable",
        481: "Call/Transaction Does Not Exist",
        482: "Loop Detected",
        483: "Too Many Hops",
        484: "Address Incomplete",
        485: "Ambiguous",
        486: "Busy Here",
        487: "Request Terminated",
        488: "Not Acceptable Here",
        489: "Bad Event",  # RFC 6665
        491: "Request Pending",
        493: "Undecipherable",
        494: "Security Agreement Required",  # RFC 3329
        500: "Server Internal Error",
        501: "Not Implemented",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Server Time-out",
        505: "Version Not Supported",
        513: "Message Too Large",
        600: "Busy Everywhere",
        603: "Decline",
        604: "Does Not Exist Anywhere",
        606: "Not Acceptable",
    }
)


def check_status_code(code: int) -> None:
    """RFC 3261 §7.2 / §25.1: Status-Code = 3DIGIT; classes 1xx..6xx are defined."""
    if not 100 <= code <= 699:
        raise ValueError(f"SIP status code out of range 100..699: {code}")

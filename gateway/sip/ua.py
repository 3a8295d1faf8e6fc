"""Pure user-agent helpers the transport endpoint applies to messages (no I/O).

- transport choice for requests by size (RFC 3261 §18.1.1);
- the top Via, Max-Forwards and User-Agent a UAC adds (§8.1.1, §18.1.1, RFC 3581 §3);
- the 200 answer to OPTIONS (§11.2);
- address helpers: IP literals only (the endpoint never resolves names itself).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.validate import UasPolicy

__all__ = [
    "DEFAULT_PATH_MTU",
    "MAX_DATAGRAM",
    "MTU_MARGIN",
    "UNKNOWN_MTU_LIMIT",
    "SizePlan",
    "format_host",
    "ip_literal",
    "options_response",
    "plan_transport",
    "prepare_request",
    "too_big_for_udp",
]

UNKNOWN_MTU_LIMIT = 1300  # §18.1.1: "larger than 1300 bytes and the path MTU is unknown"
MTU_MARGIN = 200  # §18.1.1: "within 200 bytes of the path MTU"
DEFAULT_PATH_MTU: int | None = None  # unknown unless configured
MAX_DATAGRAM = 65507  # 65535 minus IPv4 (20) and UDP (8) headers


@dataclass(frozen=True, slots=True)
class SizePlan:
    """How to send a request of a given size to a target (§18.1.1).

    `transport` is the one to try first; `fallback` is "udp" when a TCP attempt that
    was only made because of the size may be retried over UDP after a connection
    failure ("SHOULD retry the request, using UDP"), which needs the message to fit
    a datagram of at most `max_message_size`; None otherwise."""

    transport: str
    fallback: str | None


def too_big_for_udp(size: int, path_mtu: int | None = DEFAULT_PATH_MTU) -> bool:
    """§18.1.1: within 200 bytes of the path MTU, or > 1300 bytes with the MTU unknown."""
    if path_mtu is None:
        return size > UNKNOWN_MTU_LIMIT
    return size > path_mtu - MTU_MARGIN


def plan_transport(
    target_transport: str,
    size: int,
    *,
    max_message_size: int,
    path_mtu: int | None = DEFAULT_PATH_MTU,
    allow_tcp: bool = True,
) -> SizePlan | None:
    """The transport for a request of `size` bytes to a target reached by
    `target_transport`; None when it cannot be sent at all (too large for UDP and TCP
    not allowed). Reliable targets keep their transport. A datagram is never larger
    than `max_message_size` (nor 65507), whatever the path MTU."""
    t = target_transport.lower()
    fits = size <= min(max_message_size, MAX_DATAGRAM)
    if t != "udp" or (fits and not too_big_for_udp(size, path_mtu)):
        return SizePlan(t, None)
    if not allow_tcp:
        return SizePlan("udp", None) if fits else None
    return SizePlan("tcp", "udp" if fits else None)


def ip_literal(host: str) -> str | None:
    """`host` as a plain IP address string (IPv6 brackets removed), None for names."""
    h = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(h))
    except ValueError:
        return None


def format_host(host: str) -> str:
    """An IP address as it appears in a Via sent-by or URI (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def prepare_request(
    request: SipRequest,
    *,
    transport: str,
    host: str,
    port: int,
    branch: str,
    user_agent: str | None = None,
) -> SipRequest:
    """Add our top Via (with `rport`, RFC 3581 §3; transport upper-cased, §18.1.1 says
    it must name the transport actually used), Max-Forwards 70 when absent (§8.1.1.6)
    and User-Agent when absent. The serializer sets Content-Length."""
    via = f"SIP/2.0/{transport.upper()} {format_host(host)}:{port};branch={branch};rport"
    headers = request.headers
    after: list[tuple[str, str]] = []
    if "Max-Forwards" not in headers:
        after.append(("Max-Forwards", "70"))
    if user_agent and "User-Agent" not in headers:
        after.append(("User-Agent", user_agent))
    # = headers.prepend("Via", via).add(...).add(...), built once (issue 11)
    return request.with_headers(headers.extended((("Via", via),), after))


def options_response(
    request: SipRequest, policy: UasPolicy, *, to_tag: str, server: str | None = None
) -> SipResponse:
    """§11.2: 200 with Allow, Accept, Accept-Encoding and Supported (and Server, if
    given)."""
    headers = [
        policy.allow_header,
        policy.accept_header,
        ("Accept-Encoding", ", ".join(sorted(policy.content_codings))),
        ("Supported", ", ".join(sorted(policy.extensions))),
    ]
    if server:
        headers.append(("Server", server))
    return make_response(request, 200, to_tag=to_tag, headers=headers)

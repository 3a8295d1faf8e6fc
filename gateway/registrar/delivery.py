"""Delivery to hosted users over their registered flows (docs/registrar.md, "Delivery").

Requests to `sip:user@hosted-domain` go to the registered contacts one at a time, in
`bindings.delivery_order` (highest q first, then the most recently registered). Each
goes back over the flow the binding was registered from (RFC 5626 §5.3): the same
transport, to the source address and port the REGISTER came from, so that a NATed
client and an open TCP/TLS connection are reached (the endpoint reuses an inbound
connection to that peer). A binding registered through proxies gets its Path as a
preloaded Route set (RFC 3327 §5.3), still sent to the flow it came from: the first hop.

On 408, a transaction timeout, a transport error, 480 or any 5xx the next contact is
tried; any other final response ends delivery. When every contact failed, the outcome
of the last attempt is the result (its response, or its exception re-raised).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from gateway.logs import event
from gateway.registrar.bindings import resource_of
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.locate import Target, Transport
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.ua import ip_literal
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import (
    MessageTooLarge,
    RequestSender,
    TransactionTimeout,
    TransportFailure,
)
from gateway.store.api import Binding
from mappings.errors import MappingError

__all__ = ["NoBinding", "NoSuchUser", "deliver", "device_hop", "flow_target", "try_next"]

log = logging.getLogger(__name__)

# Final responses after which the next contact is tried (docs/registrar.md).
_TRY_NEXT = frozenset({408, 480})
# ws/wss (RFC 7118): only over the flow, the client's own connection.
_TRANSPORTS: dict[str, Transport] = {
    "udp": "udp",
    "tcp": "tcp",
    "tls": "tls",
    "ws": "ws",
    "wss": "wss",
}


class NoBinding(MappingError):
    """No live registration for a hosted user: 480 to SIP, recipient-unavailable to XMPP
    (RFC 7247 §7 tables), never a silent drop."""

    def __init__(self, aor: str) -> None:
        super().__init__(
            f"{aor} has no registered contact",
            sip_status=480,
            xmpp_condition="recipient-unavailable",
        )
        self.aor = aor


class NoSuchUser(MappingError):
    """A hosted domain's user the user file does not know and nothing registered:
    404 / item-not-found (RFC 7247 §7 tables; issue 17 item 2), told apart from 480."""

    def __init__(self, aor: str) -> None:
        super().__init__(f"no such user: {aor}", sip_status=404, xmpp_condition="item-not-found")
        self.aor = aor


def try_next(status: int) -> bool:
    """Is this final response a reason to try the next contact?"""
    return status in _TRY_NEXT or 500 <= status < 600


def _split_hostport(text: str) -> tuple[str, int] | None:
    """'1.2.3.4:5060' or '[::1]:5060' -> (ip, port); None when not an IP address."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    ip = ip_literal(host)
    return None if ip is None else (ip, int(port))


def _target(transport: str, ip: str, port: int) -> Target | None:
    t = transport.lower()
    if t not in _TRANSPORTS:
        return None  # e.g. sctp: not served by this endpoint
    return Target(_TRANSPORTS[t], ip, ip, port)


def flow_target(binding: Binding) -> Target | None:
    """Where a request to `binding` is sent: its flow (transport and the address the
    REGISTER came from); without a flow, the Contact URI when its host is an address."""
    if binding.flow is not None:
        addr = _split_hostport(binding.flow.remote)
        if addr is not None:
            return _target(binding.flow.transport, addr[0], addr[1])
    try:
        uri = parse_uri(binding.contact)
    except RemoteProtocolError:
        return None
    if not isinstance(uri, SipUri):
        return None
    ip = ip_literal(uri.host)
    if ip is None:
        return None  # a name would need RFC 3263 resolution; flows always carry an address
    transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).lower()
    port = uri.port or (5061 if transport == "tls" else 5060)
    return _target(transport, ip, port)


def device_hop(aor: str, targets: Sequence[Binding]) -> tuple[SipUri, Target, tuple[str, ...]]:
    """Where a dialog-creating request to a hosted user goes (an INVITE of a session,
    issue 18): the first binding in delivery order that has a flow target; its Contact as
    the Request-URI, the flow, its Path. NoBinding when none can be reached."""
    for binding in targets:
        target = flow_target(binding)
        if target is None:
            continue
        try:
            contact = parse_uri(binding.contact)
        except RemoteProtocolError:
            continue
        if isinstance(contact, SipUri):
            return contact, target, tuple(binding.path)
    raise NoBinding(aor)


def _with_path(request: SipRequest, binding: Binding) -> SipRequest:
    if not binding.path:
        return request
    headers = request.headers
    for hop in reversed(binding.path):
        headers = headers.prepend("Route", hop)
    return request.with_headers(headers)


async def deliver(
    endpoint: RequestSender,
    aor: str,
    targets: Sequence[Binding],
    build: Callable[[str], SipRequest],
) -> SipResponse:
    """Send `build(contact)` to each binding in turn (see the module docstring)."""
    if not targets:
        raise NoBinding(aor)
    last: SipResponse | Exception | None = None
    for binding in targets:
        target = flow_target(binding)
        if target is None:
            last = TransportFailure(f"no address for contact {binding.contact}")
            continue
        request = _with_path(build(binding.contact), binding)
        try:
            response = await endpoint.request(request, target)
        except (TransactionTimeout, TransportFailure, MessageTooLarge) as exc:
            outcome = type(exc).__name__
            last = exc
        else:
            if not try_next(response.status):
                return response
            outcome, last = str(response.status), response
        event(
            log,
            logging.INFO,
            "delivery to contact failed, trying the next",
            aor=aor,
            resource=resource_of(binding),
            transport=target.transport,
            dest=f"{target.address}:{target.port}",
            outcome=outcome,
        )
    if isinstance(last, SipResponse):
        return last
    if last is None:  # unreachable: targets is not empty
        raise NoBinding(aor)
    raise last

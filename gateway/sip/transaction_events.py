"""Transaction layer events and outgoing messages: frozen values the TU pulls out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.sip.message import SipMessage, SipRequest, SipResponse
from gateway.sip.transaction import ClientKey, LegacyServerKey, ServerKey, TransactionKey

__all__ = [
    "Address",
    "Event",
    "Origin",
    "Outgoing",
    "RequestCancelled",
    "RequestReceived",
    "ResponseReceived",
    "ServerKeyT",
    "StrayResponse",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportError",
]

Address = tuple[str, int]
ServerKeyT = ServerKey | LegacyServerKey


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message arrived, beyond its source address and transport: the listener's
    name ("outbound" for a connection we opened), the connection (the flow of RFC 5626)
    and the TLS client certificate, as the driver reports them with the bytes."""

    listener: str
    connection_id: int | None = None
    peer_certificate: dict[str, Any] | None = None


NO_ORIGIN = Origin("")


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request for the TU. `server_key` is None for an ACK matching no transaction
    (the ACK for a 2xx, §17.1.1.3/§13.2.2.4), which the TU handles outside transactions.
    `origin` is what `TransactionLayer.receive` was given with the request."""

    request: SipRequest
    source: Address
    transport: str
    server_key: ServerKeyT | None
    origin: Origin = NO_ORIGIN


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    response: SipResponse
    client_key: ClientKey


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response matching no client transaction (§17.1.3); the TU may drop it."""

    response: SipResponse
    source: Address
    transport: str


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    """A CANCEL matched `invite_key` (§9.2); the layer already answered 200 (and 487)."""

    invite_key: ServerKeyT
    cancel: SipRequest


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    key: TransactionKey  # Timer B/F (client), H (INVITE server)


@dataclass(frozen=True, slots=True)
class TransportError:
    key: TransactionKey


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    key: TransactionKey


Event = (
    RequestReceived
    | ResponseReceived
    | StrayResponse
    | RequestCancelled
    | TransactionTimeout
    | TransportError
    | TransactionTerminated
)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """Bytes to send. Retransmissions reuse the first serialization's bytes object and
    say so (`retransmission`, for the glue's counters). `key` lets the glue report a
    send failure with `transport_error(key, now)`."""

    data: bytes
    dest: Address
    transport: str
    message: SipMessage
    key: TransactionKey | None = None
    retransmission: bool = False

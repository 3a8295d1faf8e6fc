"""The store's small interface: record dataclasses and the `Store` protocol.

Five kinds of records survive a restart: registrar bindings (RFC 3261 §10), presence
subscriptions in both directions (RFC 6665 dialogs, RFC 8048), PUBLISH event state
(RFC 3903), messages stored for offline hosted users (docs/offline.md) and the users'
XCAP documents (RFC 4825: resource lists, pres-rules; docs/xcap.md). Records are
frozen values; the store never interprets them.

Writes that must be atomic per RFC 3261 §10.3 step 7 / RFC 3903 §6 step 5 replace the
whole set of one AOR (`set_bindings`, `set_publications`) in one transaction. Times are
seconds on the caller's clock (wall clock, so that deadlines survive a restart).

This module imports no I/O: the pure registrar cores use its record types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "Binding",
    "Direction",
    "Expired",
    "Flow",
    "Lease",
    "Publication",
    "Store",
    "StoreError",
    "StoredMessage",
    "SubscriptionRecord",
    "XcapDocument",
]


class StoreError(Exception):
    """The store cannot be opened or used: unwritable directory, corrupt file, newer schema,
    a failed commit. Raised at open so a broken deployment fails at start."""


@dataclass(frozen=True, slots=True)
class Flow:
    """Where a request came from (RFC 5626 §3: a flow). `local`/`remote` are "host:port";
    `connection_id` names a TCP/TLS/WebSocket connection of the transport, None for UDP."""

    transport: str  # "udp", "tcp", "tls", "ws", "wss"
    local: str
    remote: str
    connection_id: str | None = None


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact of an address-of-record (RFC 3261 §10.3 step 7, RFC 5627, RFC 5626).

    `aor` is canonical (`sip:user@domain`, no parameters, unescaped user). `contact` is the
    Contact URI as registered. `instance` is the `+sip.instance` value unquoted (with its
    angle brackets, RFC 5626 §4.1), `reg_id` the RFC 5626 reg-id when outbound applied.
    `path` is the Path vector (RFC 3327), `received` the source "host:port".
    """

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    q: float | None = None
    instance: str | None = None
    reg_id: int | None = None
    flow: Flow | None = None
    path: tuple[str, ...] = ()
    received: str | None = None
    updated_at: float = 0.0  # when this binding was last registered (ordering ties)


Direction = Literal["x2s", "s2x"]


@dataclass(frozen=True, slots=True)
class SubscriptionRecord:
    """A presence subscription (RFC 6665 dialog + RFC 8048 state), keyed by
    (`call_id`, `local_tag`): both are chosen or known when the dialog starts.

    `direction`: "x2s" an XMPP user watches a SIP user (we are the subscriber),
    "s2x" a SIP user watches an XMPP user (we are the notifier).
    """

    direction: Direction
    watcher: str  # SIP URI or JID of the watcher, as the owner of the record writes it
    target: str
    call_id: str
    local_tag: str
    remote_tag: str | None = None
    event: str = "presence"
    route_set: tuple[str, ...] = ()
    remote_target: str | None = None
    local_cseq: int = 0
    remote_cseq: int | None = None
    state: str = "init"  # init / notify_wait / pending / active / terminated (DIGEST §23.3)
    expires_at: float = 0.0
    last_document: bytes | None = field(default=None, repr=False)
    content_type: str | None = None
    xmpp_authorization: str = "none"  # RFC 6121 subscription state: none / to / from / both

    @property
    def key(self) -> tuple[str, str]:
        return self.call_id, self.local_tag


@dataclass(frozen=True, slots=True)
class Publication:
    """One piece of event state of a presentity, named by its entity-tag (RFC 3903 §2)."""

    aor: str
    etag: str
    event: str
    expires_at: float
    body: bytes = field(repr=False)
    content_type: str
    updated_at: float = 0.0  # when the body last changed ("newest wins" in composition)


@dataclass(frozen=True, slots=True)
class Expired:
    """What `expire_before` removed, so that the caller can notify watchers."""

    bindings: tuple[Binding, ...] = ()
    subscriptions: tuple[SubscriptionRecord, ...] = ()
    publications: tuple[Publication, ...] = ()


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """An XMPP -> SIP message kept for a hosted user with no binding (docs/offline.md).

    `message_id` is set once at store time and kept on every retry: the IMDN Message-ID
    (RFC 5438 §6.3) of a message/cpim body, a fresh one otherwise; a second `put_message`
    with the same id is a duplicate and stores nothing. `aor` is canonical. The MESSAGE is
    rebuilt from the other fields for each device (RFC 7572 Table 1); `stored_at` is its
    original time (the Date header, the CPIM DateTime already in `body`).
    """

    message_id: str
    aor: str
    stored_at: float
    expires_at: float
    sender: str  # the XMPP sender's full JID (error stanza, XEP-0184 receipt)
    stanza_id: str
    component: str  # the component domain the stanza came through
    recipient: str  # the JID the stanza was addressed to (the SIP user's)
    from_uri: str
    call_id: str
    content_type: str
    body: bytes = field(repr=False)
    subject: str | None = None
    lang: str | None = None
    call_info: str | None = None
    receipt_id: str | None = None  # the IMDN Message-ID when a XEP-0184 receipt was asked

    @property
    def size(self) -> int:
        return len(self.body)


@dataclass(frozen=True, slots=True)
class XcapDocument:
    """One XCAP document (RFC 4825 §6.2), keyed by (`auid`, `aor`, `name`): `aor` is the
    canonical `sip:user@domain` of the owner (the XUI), `etag` the quoted entity tag the
    server computed for `body`, `updated_at` when it was last written."""

    auid: str
    aor: str
    name: str
    body: bytes = field(repr=False)
    etag: str
    updated_at: float = 0.0

    @property
    def key(self) -> tuple[str, str, str]:
        return self.auid, self.aor, self.name


@dataclass(frozen=True, slots=True)
class Lease:
    """Who runs a named timer of a cluster (docs/cluster.md "Leases"): `owner` is the
    instance id, `expires_at` the wall-clock lapse. The rules are gateway.cluster.lease."""

    name: str
    owner: str
    expires_at: float


class Store(Protocol):
    """Persistence for bindings, subscriptions, publications, stored messages and XCAP
    documents.
    Implementations: `gateway.store.sqlite.SqliteStore` (default),
    `gateway.store.postgresql.PostgresStore` (`[store] backend = "postgresql"`) and
    `gateway.store.memory.MemoryStore`. Every method raises `StoreError` on failure; a
    failed write changes nothing."""

    # -- bindings (RFC 3261 §10.3: one REGISTER commits all of an AOR or nothing)
    def bindings(self, aor: str) -> tuple[Binding, ...]: ...

    def set_bindings(self, aor: str, bindings: Iterable[Binding]) -> None: ...

    def all_bindings(self) -> Iterator[Binding]: ...

    # -- subscriptions
    def put_subscription(self, record: SubscriptionRecord) -> None: ...

    def put_subscriptions(self, records: Iterable[SubscriptionRecord]) -> None: ...

    def get_subscription(self, call_id: str, local_tag: str) -> SubscriptionRecord | None: ...

    def delete_subscription(self, call_id: str, local_tag: str) -> None: ...

    def subscriptions(
        self, *, watcher: str | None = None, target: str | None = None
    ) -> tuple[SubscriptionRecord, ...]: ...

    def all_subscriptions(self) -> Iterator[SubscriptionRecord]: ...

    # -- publications (RFC 3903 §6: one PUBLISH commits atomically)
    def publications(self, aor: str, event: str | None = None) -> tuple[Publication, ...]: ...

    def set_publications(
        self, aor: str, event: str, publications: Iterable[Publication]
    ) -> None: ...

    def all_publications(self) -> Iterator[Publication]: ...

    # -- stored messages, in the order they were stored (docs/offline.md)
    def put_message(self, message: StoredMessage) -> bool: ...

    def messages(self, aor: str) -> tuple[StoredMessage, ...]: ...

    def delete_message(self, message_id: str) -> None: ...

    def all_messages(self) -> Iterator[StoredMessage]: ...

    # -- XCAP documents (docs/xcap.md): committed before the HTTP 2xx
    def xcap_document(self, auid: str, aor: str, name: str) -> XcapDocument | None: ...

    def put_xcap_document(self, document: XcapDocument) -> None: ...

    def delete_xcap_document(self, auid: str, aor: str, name: str) -> bool: ...

    def xcap_documents(
        self, *, aor: str | None = None, auid: str | None = None
    ) -> tuple[XcapDocument, ...]: ...

    # -- leases (docs/cluster.md): one atomic compare-and-set per claim
    def claim_lease(self, name: str, owner: str, now: float, ttl: float) -> Lease: ...

    def release_lease(self, name: str, owner: str) -> None: ...

    # -- housekeeping
    def expire_before(self, now: float) -> Expired: ...

    def close(self) -> None: ...

"""`SipDispatcher`: the endpoint's transaction user, a table from method to handler.

The endpoint's core (gateway.sip.useragent) has already validated the request (RFC 3261
§8.2), answered OPTIONS, and answered 503 with Retry-After while draining (§21.5.4: the one
drain policy, `SipEndpoint.begin_drain`). Here:

* a method with a registered handler goes to it (`add(method, handler)`: MESSAGE -> the
  pager behind the trust gate, REGISTER/PUBLISH -> the registrar, SUBSCRIBE/NOTIFY -> the
  presence bridge, INVITE/ACK/BYE -> the session service, docs/sessions.md; a CANCEL
  matching an INVITE is answered by the transaction layer, §9.2);
* a CANCEL that reached us matched no transaction: 481 (§9.2);
* any other method the endpoint let through: 405 with the Allow of what is registered.

`TrustGate` is the sender check used when there is no registrar: gateway.registrar.trust
`decide` over the request's facts; no Digest challenge is possible without a user file, so a
challenge becomes 403.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.config import Config
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.registrar import trust
from gateway.sip.message import SipRequest
from gateway.sip.uri import SipUri
from gateway.sip.useragent import IncomingRequest

__all__ = [
    "Authorizer",
    "Handler",
    "Sender",
    "SenderSeen",
    "SipDispatcher",
    "TrustGate",
    "invite_handler",
    "message_handler",
]

log = logging.getLogger(__name__)

Handler = Callable[[IncomingRequest], Awaitable[None] | None]


class SipDispatcher:
    """Method -> handler; the `RequestHandler` given to `SipEndpoint`."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def add(self, method: str, handler: Handler) -> None:
        """Route `method` (case-sensitive, RFC 3261 §7.1) to `handler`; replaces any."""
        self._handlers[method] = handler

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(sorted({*self._handlers, "OPTIONS"}))

    def handle(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        method = incoming.request.method
        if incoming.server_key is None:  # ACK to a 2xx: nothing to answer
            handler = self._handlers.get(method)
            return handler(incoming) if handler is not None else None
        handler = self._handlers.get(method)
        if handler is not None:
            return handler(incoming)
        if method == "CANCEL":
            incoming.reply(481)
        else:
            incoming.reply(405, headers=[("Allow", ", ".join(self.methods))])
        return None


class Sender(Protocol):
    """Who sent a request, as the registrar's `Identity` also describes it."""

    @property
    def aor(self) -> str | None: ...
    @property
    def resource(self) -> str | None: ...
    @property
    def via(self) -> str: ...


class Authorizer(Protocol):
    """`authorize(incoming, kind)`: the sender, or None when it already answered."""

    def authorize(self, incoming: IncomingRequest, kind: str) -> Sender | None: ...


@dataclass(frozen=True, slots=True)
class _Accepted:
    aor: str | None
    resource: str | None
    via: str


class TrustGate:
    """gateway.registrar.trust.decide for gateways without a registrar (no user file)."""

    def __init__(self, cfg: Config, metrics: Metrics) -> None:
        self.config = trust.TrustConfig.from_config(
            cfg, federation=cfg.sip.federation, trusted_tls_names=cfg.sip.trusted_tls_names
        )
        self.metrics = metrics

    def authorize(self, incoming: IncomingRequest, kind: str) -> Sender | None:
        req = incoming.request
        claimed = None
        if req.from_ is not None and isinstance(req.from_.uri, SipUri):
            claimed = req.from_.uri.aor
        target = req.uri.host_bare if isinstance(req.uri, SipUri) else ""
        facts = trust.RequestFacts(
            method=req.method,
            source_ip=incoming.source[0],
            transport=incoming.transport,
            claimed_aor=claimed,
            target_domain=target,
            tls_names=trust.certificate_names(incoming.peer_certificate),
        )
        decision = trust.decide(facts, self.config)
        if isinstance(decision, trust.Accept):
            return _Accepted(decision.identity or claimed, None, decision.via)
        reason = type(decision).__name__.lower()
        self.metrics.sip_requests_refused.labels(reason).inc()
        event(log, logging.INFO, "request refused", **trust.fields(facts, decision))
        incoming.reply(decision.status if isinstance(decision, trust.Refuse) else 403)
        return None


SenderSeen = Callable[[SipRequest, str, bool], None]
"""(request, sender AOR, from a trusted peer) of an accepted request: what the bridge learns
about a SIP contact from its traffic (`bridge/pager/names.SeenNames.saw`)."""


def message_handler(
    authorizer: Authorizer,
    deliver: Callable[[IncomingRequest, str | None], Awaitable[None]],
    seen: SenderSeen | None = None,
) -> Handler:
    """MESSAGE: the trust gate first, then the pager (`deliver(incoming, resource)`).
    `seen` hears of every accepted MESSAGE first; "trusted" is the trust gate's
    ``trusted-peer`` (the one source whose P-Asserted-Identity counts, RFC 3325 §5)."""

    def handle(incoming: IncomingRequest) -> Awaitable[None] | None:
        sender = authorizer.authorize(incoming, "message")
        if sender is None:
            return None
        if seen is not None and sender.aor is not None:
            seen(incoming.request, sender.aor, sender.via == "trusted-peer")
        return deliver(incoming, sender.resource)

    return handle


def invite_handler(authorizer: Authorizer, handle: Handler) -> Handler:
    """INVITE that opens a session (issue 18): the trust gate first, like MESSAGE (its From
    becomes the XMPP sender of the whole chat, RFC 7573 §5); in-dialog requests (a To
    tag) belong to a dialog already admitted."""

    def gated(incoming: IncomingRequest) -> Awaitable[None] | None:
        if incoming.request.to_tag is None and authorizer.authorize(incoming, "message") is None:
            return None
        return handle(incoming)

    return gated

"""Where a message for an address goes (docs/pager.md "Routing").

Domains fall in four classes (`DomainClass`), decided from the configuration only:

* ``component``: a component domain of the gateway (its SIP users' JIDs);
* ``hosted``: a SIP domain whose users register with the gateway;
* ``xmpp``: a served XMPP domain (an XMPP user's domain);
* ``outside``: anything else.

SIP -> XMPP: only ``xmpp`` destinations go to XMPP. A Request-URI in a component or hosted
domain is never turned into a stanza that would come straight back (loop protection).

XMPP -> SIP (`SipRouter.send`): a hosted domain goes to the registrar's location service
(`Registrar.locate`: a GRUU to its one device, an AOR to its bindings, over their flows
with their Path; 480 when none is left, never DNS); anything else through the resolver
(static route, outbound proxy, RFC 3263 over DNS) with RFC 3263 §4.3 failover. An
``outside`` domain needs ``sip.federation`` (never outside -> outside, the sender is
always local here) and, when DNS decides it is an XMPP domain (RFC 7247 §5), it
is refused rather than bridged back into XMPP. A target whose URI says ``transport=udp``
cannot take a MESSAGE too large for UDP (RFC 3261 §18.1.1): 513 / policy-violation.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.bridge.failover import send_with_failover
from gateway.config import Config
from gateway.registrar.delivery import NoBinding
from gateway.resolver.resolver import Resolver
from gateway.sip.locate import Target
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.serializer import serialize
from gateway.sip.ua import too_big_for_udp
from gateway.sip.uri import SipUri
from gateway.sip.useragent import TransactionTimeout, TransportFailure
from mappings.errors import MappingError

__all__ = [
    "DomainClass",
    "Domains",
    "Registrar",
    "SipRouter",
    "TooLargeForUdp",
    "is_flow_contact",
]

# Room for what the endpoint adds (Via with branch and rport, User-Agent) to the request.
_VIA_ALLOWANCE = 160

Build = Callable[[str], SipRequest]


def is_flow_contact(uri: SipUri) -> bool:
    """A Contact that names no host but the connection it came from: RFC 7118 §5 clients
    (and RFC 5626 outbound ones) put a random `.invalid` host (RFC 2606) in it."""
    return uri.host_bare.endswith(".invalid")


class DomainClass(enum.Enum):
    COMPONENT = "component"
    HOSTED = "hosted"
    XMPP = "xmpp"
    OUTSIDE = "outside"


class Domains:
    """The domain classes of one configuration (lower-case, no trailing dot)."""

    def __init__(self, cfg: Config) -> None:
        self._classes: dict[str, DomainClass] = {}
        for d in cfg.sip.served_xmpp_domains:
            self._classes[d.lower()] = DomainClass.XMPP
        for d in cfg.sip.hosted_domains:
            self._classes[d.lower()] = DomainClass.HOSTED
        for c in cfg.xmpp.components:
            self._classes.setdefault(c.domain.lower(), DomainClass.COMPONENT)
        self.components = frozenset(c.domain.lower() for c in cfg.xmpp.components)
        # Without served_xmpp_domains every outside domain may be an XMPP one (DomainMap).
        self.any_xmpp = not cfg.sip.served_xmpp_domains

    def classify(self, domain: str) -> DomainClass:
        d = domain.lower().rstrip(".")
        found = self._classes.get(d)
        if found is not None:
            return found
        return DomainClass.XMPP if self.any_xmpp else DomainClass.OUTSIDE


class Registrar(Protocol):
    """What the router needs of gateway.registrar.service.Registrar."""

    def is_hosted(self, domain: str) -> bool: ...

    def send_to_user(
        self, aor: str, build: Build, *, resource: str | None = None
    ) -> Awaitable[SipResponse]: ...

    def resource_for(self, aor: str, contact_or_instance: str) -> str | None: ...


class Endpoint(Protocol):
    async def request(
        self, req: SipRequest, target: Target, *, allow_tcp: bool = True
    ) -> SipResponse: ...


class TooLargeForUdp(MappingError):
    """RFC 7572 §6 / RFC 3428 §4: over 1300 bytes and no congestion-controlled transport."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"MESSAGE of {size} bytes is too large for UDP and the target allows no TCP",
            sip_status=513,
            xmpp_condition="policy-violation",
        )


class FederationRefused(MappingError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason, sip_status=403, xmpp_condition="forbidden")


class SipRouter:
    """Sends a request built for an address of record to wherever it lives."""

    def __init__(
        self,
        cfg: Config,
        endpoint: Endpoint,
        resolver: Resolver,
        registrar: Registrar | None = None,
    ) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self.resolver = resolver
        self.registrar = registrar
        self.domains = Domains(cfg)

    def hosts(self, uri: SipUri) -> bool:
        """Is `uri` in a hosted SIP domain, or a flow contact (`is_flow_contact`), so that
        the location service, not DNS, says where requests to it go?"""
        if self.registrar is None:
            return False
        return self.registrar.is_hosted(uri.host_bare) or is_flow_contact(uri)

    async def send(self, aor: SipUri, build: Build, *, user: SipUri | None = None) -> SipResponse:
        """Send the request `build(request_uri)` towards `aor`; its final response.

        This is the one place that decides the targets of a request the gateway originates
        to a URI: out-of-dialog MESSAGE and SUBSCRIBE, and (through
        `bridge/presence/context.PresenceContext.send`) in-dialog requests whose remote
        target is in a hosted domain. For a hosted domain `build` gets each registered
        contact in turn (a GRUU keeps its `gr` for the lookup, RFC 5627 §6.1).

        Raises MappingError (NoBinding, ResolutionError, TargetsExhausted, FederationRefused,
        TooLargeForUdp); a single target's timeout/transport failure is folded into
        TargetsExhausted by the failover driver.
        """
        domain = aor.host_bare
        if self.registrar is not None and is_flow_contact(aor):
            return await self._send_to_flow(self.registrar, aor, user, build)
        if self.registrar is not None and self.registrar.is_hosted(domain):
            key = aor.aor if aor.gr is None else f"{aor.aor};gr={aor.gr}"
            return await self.registrar.send_to_user(key, build)
        kind = self.domains.classify(domain)
        if kind is DomainClass.OUTSIDE:
            if not self.cfg.sip.federation:
                raise FederationRefused(f"federation disabled: {domain} is not a local domain")
            if self.resolver.enabled and self.resolver.route_for(domain) is None:
                decision = await self.resolver.decide(domain, "xmpp")
                if decision.protocol == "xmpp":  # never bridge back into XMPP
                    raise MappingError(
                        f"{domain} is an XMPP domain (RFC 7247 §5): not bridged back",
                        sip_status=404,
                        xmpp_condition="item-not-found",
                    )
                if decision.protocol == "sip" and decision.hosts:
                    targets = await self.resolver.sip_targets(decision)
                    return await self._failover(aor, targets, build)
        targets = await self.resolver.resolve_sip(aor)
        return await self._failover(aor, targets, build)

    @staticmethod
    async def _send_to_flow(
        registrar: Registrar, contact: SipUri, user: SipUri | None, build: Build
    ) -> SipResponse:
        """A remote target on a flow (a WebSocket client's `.invalid` Contact) is reached
        over the connection its binding was registered from: the binding of `user` (the
        dialog's remote URI, a hosted AOR) whose Contact is `contact`. 480 (NoBinding)
        when that registration is gone: nothing else can reach it."""
        aor = "" if user is None else user.aor
        resource = None if user is None else registrar.resource_for(aor, str(contact))
        if resource is None:
            raise NoBinding(aor or str(contact))
        return await registrar.send_to_user(aor, build, resource=resource)

    async def _failover(self, aor: SipUri, targets: Sequence[Target], build: Build) -> SipResponse:
        route = self.resolver.route_for(aor.host_bare)
        allow_tcp = (route or aor).transport != "udp"
        request = build(str(aor))
        if not allow_tcp:
            size = len(serialize(request)) + _VIA_ALLOWANCE
            if too_big_for_udp(size):
                raise TooLargeForUdp(size)

        async def attempt(target: Target) -> SipResponse:
            return await self.endpoint.request(request, target, allow_tcp=allow_tcp)

        _, response, _ = await send_with_failover(
            targets,
            attempt,
            timeouts=(TransactionTimeout,),
            transport_errors=(TransportFailure,),
        )
        return response

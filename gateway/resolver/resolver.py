"""The address resolver: reachable or not, by which protocol, and where (docs/dns.md).

Precedence for a SIP destination: a static route for its domain, then the outbound proxy
(everything goes there; the proxy's own URI is located), then RFC 3263 on the URI itself.
With no DNS servers configured, DNS is disabled: static routes, the outbound proxy and
numeric hosts still work, anything needing a lookup raises ResolutionError("disabled").
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Literal

from gateway.config import DnsConfig, RouteConfig
from gateway.logs import event
from gateway.memo import Memo
from gateway.resolver.cache import TtlCache
from gateway.resolver.errors import ResolutionError
from gateway.resolver.federation import HostPort, Protocol, ProtocolDecision, Side, classify
from gateway.resolver.im_pres import Kind, parse_destination, resolve_srv
from gateway.resolver.lookup import DnsLookup, Lookup
from gateway.resolver.rfc3263 import drive_plan
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.locate import LocateError, LocatePlan, Target, Transport
from gateway.sip.uri import SipUri, parse_uri

__all__ = ["Resolver"]

logger = logging.getLogger(__name__)

Families = tuple[Literal[4, 6], ...]

_NUMERIC_LIMIT = 4096  # distinct numeric URIs remembered (then forgotten all at once)


def _sip_uri(text: str, what: str) -> SipUri:
    try:
        uri = parse_uri(text)
    except RemoteProtocolError as exc:
        raise ValueError(f"{what}: {exc}") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{what}: not a sip:/sips: URI: {text!r}")
    return uri


class Resolver:
    """DNS-backed resolution for SIP URIs, im:/pres: destinations and federation."""

    def __init__(
        self,
        cfg: DnsConfig,
        routes: Sequence[RouteConfig] = (),
        outbound_proxy: str | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        families: Families = (4, 6),
    ) -> None:
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.clock = clock
        self.families = families
        self._dns = DnsLookup(cfg, clock=clock) if cfg.servers else None
        self._routes = {r.domain.lower(): _sip_uri(r.target, f"route {r.domain}") for r in routes}
        self._proxy = _sip_uri(outbound_proxy, "outbound proxy") if outbound_proxy else None
        self._verdicts: TtlCache[tuple[str, str], ProtocolDecision] = TtlCache(
            min(cfg.cache_size, 4096)
        )
        # Targets of URIs whose plan needs no DNS (numeric host, e.g. a static route to an
        # address): nothing in them expires, so they are computed once (issue 11).
        self._numeric: Memo[tuple[SipUri, tuple[Transport, ...]], tuple[Target, ...]] = Memo(
            _NUMERIC_LIMIT
        )

    # -- counters (exported by the metrics endpoint) ---------------------------------

    @property
    def enabled(self) -> bool:
        """False when no DNS server is configured."""
        return self._dns is not None

    @property
    def lookups(self) -> int:
        return self._dns.counters.lookups if self._dns else 0

    @property
    def failures(self) -> int:
        return self._dns.counters.failures if self._dns else 0

    @property
    def cache_hits(self) -> int:
        return self._dns.counters.cache_hits if self._dns else 0

    @property
    def _lookup(self) -> Lookup | None:
        return self._dns.lookup if self._dns else None

    def _need_dns(self, what: str) -> Lookup:
        if self._dns is None:
            raise ResolutionError(
                "disabled", f"{what}: DNS is disabled (no [dns] servers) and no static route"
            )
        return self._dns.lookup

    # -- SIP -------------------------------------------------------------------------

    def route_for(self, domain: str) -> SipUri | None:
        """The static route's target URI for `domain` (exact domain match), if any."""
        return self._routes.get(domain.lower().rstrip("."))

    async def resolve_sip(
        self, uri: SipUri, supported: tuple[Transport, ...] = ("udp", "tcp")
    ) -> list[Target]:
        """Where to send a request for `uri`, in failover order (RFC 3263 §4.3)."""
        route = self.route_for(uri.host_bare)
        if route is not None:
            if logger.isEnabledFor(logging.DEBUG):
                event(logger, logging.DEBUG, "static route", uri=str(uri), target=str(route))
            return await self.locate(route, supported)
        if self._proxy is not None:
            return await self.locate(self._proxy, supported)
        return await self.locate(uri, supported)

    async def locate(
        self, uri: SipUri, supported: tuple[Transport, ...] = ("udp", "tcp")
    ) -> list[Target]:
        """RFC 3263 for `uri` itself (no routes, no proxy)."""
        key = (uri, supported)
        known = self._numeric.peek(key)
        if known is not None:
            targets = list(known)
        else:
            try:
                plan = LocatePlan.from_uri(uri, supported=supported, families=self.families)
            except LocateError as exc:
                raise ResolutionError("unusable", f"{uri}: {exc}") from None
            numeric = plan.done  # no query to make: no DNS answer, no SRV draw, no TTL
            targets = await drive_plan(plan, self._lookup, self.rng, str(uri))
            if numeric:
                self._numeric.put(key, tuple(targets))
        if logger.isEnabledFor(logging.DEBUG):
            event(
                logger,
                logging.DEBUG,
                "located",
                uri=str(uri),
                targets=" ".join(f"{t.transport}:{t.address}:{t.port}" for t in targets),
            )
        return targets

    async def sip_targets(
        self, decision: ProtocolDecision, supported: tuple[Transport, ...] = ("udp", "tcp")
    ) -> list[Target]:
        """The SIP targets of a "sip" decision: its SRV hosts in order, else RFC 3263."""
        if decision.protocol != "sip":
            raise ValueError(f"not a SIP decision: {decision}")
        if not decision.hosts:
            return await self.resolve_sip(SipUri(host=decision.domain), supported)
        out: list[Target] = []
        last: ResolutionError | None = None
        for hp in decision.hosts:
            try:
                out += await self.locate(_host_uri(hp), supported)
            except ResolutionError as exc:  # try the next SRV target (R3861-06)
                last = exc
        if not out and last is not None:
            raise last
        return list(dict.fromkeys(out))

    # -- RFC 3861 and RFC 7247 §5 ----------------------------------------------------

    async def resolve_im(self, destination: str, kind: Kind | None = None) -> ProtocolDecision:
        """RFC 3861 for an im:/pres: URI or a bare domain, then RFC 7247 §5 (XMPP order)."""
        kind, domain = parse_destination(destination, kind)
        key = (kind, domain)
        cached = self._verdicts.get(key, self.clock())
        if cached is not None:
            return cached
        route = self.route_for(domain)
        if route is not None:
            return ProtocolDecision(domain, "sip", "static-route")
        lookup = self._need_dns(destination)
        decision = await resolve_srv(kind, domain, lookup, self.rng)
        if decision is None:
            decision = await classify(domain, "xmpp", lookup, self.rng)
        self._remember(key, decision)
        return decision

    async def decide(self, domain: str, from_side: Side) -> ProtocolDecision:
        """RFC 7247 §5: R7247-02 order from the XMPP side, R7247-03 from the SIP side."""
        _, domain = parse_destination(domain)
        key = (f"federation-{from_side}", domain)
        cached = self._verdicts.get(key, self.clock())
        if cached is not None:
            return cached
        if self.route_for(domain) is not None:  # a static route declares a SIP domain
            return ProtocolDecision(domain, "sip", "static-route")
        decision = await classify(domain, from_side, self._need_dns(domain), self.rng)
        self._remember(key, decision)
        return decision

    async def classify_domain(self, domain: str, from_side: Side) -> Protocol:
        """ "sip", "xmpp" or "unknown" for an outside domain (see `decide`)."""
        return (await self.decide(domain, from_side)).protocol

    def _remember(self, key: tuple[str, str], decision: ProtocolDecision) -> None:
        if math.isfinite(decision.ttl):
            self._verdicts.put(key, decision, decision.ttl, self.clock())
        event(
            logger,
            logging.DEBUG,
            "protocol decision",
            domain=decision.domain,
            protocol=decision.protocol,
            source=decision.source,
        )


def _host_uri(hp: HostPort) -> SipUri:
    """`sip:host:port[;transport=t]`: the SRV port is authoritative, RFC 3263 picks the rest."""
    params: tuple[tuple[str, str | None], ...] = (
        (("transport", hp.transport),) if hp.transport else ()
    )
    return SipUri(host=hp.host, port=hp.port, params=params)

"""RFC 7247 §5: is an outside domain an XMPP domain or a SIP domain?

- R7247-02, from the XMPP side: `_xmpp-server._tcp.D` SRV (RFC 6120 §3.2.1) names a host ->
  XMPP; otherwise SIP if RFC 3263 finds SIP records.
- R7247-03, from the SIP side: RFC 3263 first (SIP NAPTR services, then `_sip._udp`,
  `_sip._tcp`, `_sips._tcp` SRV); otherwise XMPP if `_xmpp-server._tcp` names a host.

Only protocol-specific records count as evidence: an A/AAAA record alone says nothing about
the protocol, so such a domain (and one with nothing at all) is "unknown". An SRV target "."
means the service is decidedly not offered (RFC 2782) and is no evidence either. A DNS
failure on a lookup the decision depends on raises ResolutionError instead of guessing.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from gateway.resolver.errors import ResolutionError
from gateway.resolver.lookup import DnsFailure, Lookup, LookupResult, RdType, gather
from gateway.sip.locate import NAPTR_SERVICES, SRV_LABELS, NaptrRecord, SrvRecord, order_srv

__all__ = [
    "XMPP_SERVER_LABEL",
    "HostPort",
    "Protocol",
    "ProtocolDecision",
    "Side",
    "classify",
    "srv_hosts",
]

Protocol = Literal["sip", "xmpp", "unknown"]
Side = Literal["xmpp", "sip"]
XMPP_SERVER_LABEL = "_xmpp-server._tcp"  # RFC 6120 §3.2.1
# SIP NAPTR services (RFC 3263 §4.1) plus SCTP: any of them shows a SIP domain.
_SIP_SERVICES = frozenset(NAPTR_SERVICES) | {"SIP+D2S", "SIPS+D2S"}


@dataclass(frozen=True, slots=True)
class HostPort:
    """One SRV target: where to go next (for SIP: `sip:host:port;transport=...`)."""

    host: str
    port: int
    transport: str | None = None  # from a transport-labelled owner name, else RFC 3263


@dataclass(frozen=True, slots=True)
class ProtocolDecision:
    """Which protocol serves `domain`, which records said so, and the SRV targets if any."""

    domain: str
    protocol: Protocol
    source: str  # "_im._sip", "_xmpp-server._tcp", "rfc3263", "static-route", "none", ...
    hosts: tuple[HostPort, ...] = ()  # RFC 2782 order; empty when RFC 3263 does the rest
    ttl: float = math.inf  # how long the verdict holds (min TTL of the answers consulted)


def srv_hosts(
    result: LookupResult, rng: random.Random, transport: str | None = None
) -> tuple[HostPort, ...]:
    """The usable SRV targets of `result` in RFC 2782 order ("." dropped)."""
    records = [r for r in result.records if isinstance(r, SrvRecord)]
    return tuple(HostPort(r.target, r.port, transport) for r in order_srv(records, rng))


def _raise_for(domain: str, failure: DnsFailure) -> ResolutionError:
    return ResolutionError(failure.kind, f"{domain}: DNS failure deciding SIP or XMPP ({failure})")


async def _xmpp_evidence(
    domain: str, lookup: Lookup, rng: random.Random
) -> tuple[tuple[HostPort, ...], float]:
    (res,) = await gather(lookup, [(f"{XMPP_SERVER_LABEL}.{domain}", "SRV")])
    if isinstance(res, DnsFailure):
        raise _raise_for(domain, res)
    return srv_hosts(res, rng), res.ttl


def _is_sip(res: LookupResult) -> bool:
    for r in res.records:
        if isinstance(r, NaptrRecord):
            if r.flags.lower() == "s" and r.service.upper() in _SIP_SERVICES:
                return True
        elif isinstance(r, SrvRecord) and r.target:
            return True
    return False


async def _sip_evidence(domain: str, lookup: Lookup) -> tuple[bool, float]:
    queries: list[tuple[str, RdType]] = [(domain, "NAPTR")]
    queries += [(f"{label}.{domain}", "SRV") for label in SRV_LABELS.values()]
    results = await gather(lookup, queries)
    answers = [r for r in results if isinstance(r, LookupResult)]
    ttl = min((r.ttl for r in answers), default=math.inf)
    if any(_is_sip(r) for r in answers):
        return True, ttl
    failure = next((r for r in results if isinstance(r, DnsFailure)), None)
    if failure is not None:
        raise _raise_for(domain, failure)
    return False, ttl


async def classify(
    domain: str, from_side: Side, lookup: Lookup, rng: random.Random
) -> ProtocolDecision:
    """RFC 7247 §5 decision for `domain`, in the order of the side asking."""
    ttls: list[float] = []

    async def xmpp() -> ProtocolDecision | None:
        hosts, ttl = await _xmpp_evidence(domain, lookup, rng)
        ttls.append(ttl)
        if hosts:
            return ProtocolDecision(domain, "xmpp", XMPP_SERVER_LABEL, hosts, min(ttls))
        return None

    async def sip() -> ProtocolDecision | None:
        found, ttl = await _sip_evidence(domain, lookup)
        ttls.append(ttl)
        return ProtocolDecision(domain, "sip", "rfc3263", (), min(ttls)) if found else None

    steps = (xmpp, sip) if from_side == "xmpp" else (sip, xmpp)
    for step in steps:
        decision = await step()
        if decision is not None:
            return decision
    return ProtocolDecision(domain, "unknown", "none", (), min(ttls))

"""Who may send what through the gateway (docs/security.md), as one pure decision.

`decide(facts, config)` looks at where a SIP request came from (address, TLS peer
names), who it proved to be (Digest, or the flow of a live registration) and which
domains it claims and targets, and answers:

- `Accept`: process it (`identity` is the verified AOR, or None for a trusted peer or a
  federated foreign sender);
- `Challenge`: answer 401 (REGISTER) or 407 with a Digest challenge;
- `Refuse`: 403, the identity claim cannot be accepted from this source;
- `RelayRefused`: 403, the gateway is not an open relay.

Domains are "local" when the gateway hosts them (SIP `hosted_domains`) or bridges them
(its XMPP component domains and `served_xmpp_domains`); everything else is "outside".
Traffic must touch a local domain at both ends, or, with federation enabled, at one end;
outside -> outside is refused whatever the source, trusted peers included.

The caller logs every non-Accept decision (`fields()` gives the structured fields).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

from gateway.config import Config

__all__ = [
    "Accept",
    "Challenge",
    "Decision",
    "Refuse",
    "RelayRefused",
    "RequestFacts",
    "TrustConfig",
    "certificate_names",
    "decide",
    "fields",
]

Network: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def _norm(domain: str | None) -> str | None:
    return None if domain is None else domain.lower().rstrip(".")


@dataclass(frozen=True)
class TrustConfig:
    hosted_domains: frozenset[str]  # SIP domains whose users register here
    xmpp_domains: frozenset[str]  # component domains and served XMPP domains
    trusted_networks: tuple[Network, ...] = ()
    trusted_tls_names: frozenset[str] = frozenset()  # verified certificate names
    federation: bool = False  # carry traffic between local and outside domains
    accept_registered_flow: bool = True  # a request on a registered flow needs no Digest

    @classmethod
    def build(
        cls,
        hosted: Iterable[str],
        xmpp: Iterable[str],
        trusted_peers: Iterable[str] = (),
        *,
        trusted_tls_names: Iterable[str] = (),
        federation: bool = False,
        accept_registered_flow: bool = True,
    ) -> TrustConfig:
        """From plain strings; `trusted_peers` are addresses or networks (ValueError)."""
        return cls(
            hosted_domains=frozenset(d.lower().rstrip(".") for d in hosted),
            xmpp_domains=frozenset(d.lower().rstrip(".") for d in xmpp),
            trusted_networks=tuple(ipaddress.ip_network(p, strict=False) for p in trusted_peers),
            trusted_tls_names=frozenset(n.lower() for n in trusted_tls_names),
            federation=federation,
            accept_registered_flow=accept_registered_flow,
        )

    @classmethod
    def from_config(
        cls, config: Config, *, federation: bool = False, trusted_tls_names: Iterable[str] = ()
    ) -> TrustConfig:
        xmpp = [c.domain for c in config.xmpp.components] + list(config.sip.served_xmpp_domains)
        return cls.build(
            config.sip.hosted_domains,
            xmpp,
            config.sip.trusted_peers,
            trusted_tls_names=trusted_tls_names,
            federation=federation,
        )

    def is_local(self, domain: str | None) -> bool:
        d = _norm(domain)
        return d is not None and (d in self.hosted_domains or d in self.xmpp_domains)


def certificate_names(cert: dict[str, Any] | None) -> tuple[str, ...]:
    """The names a verified peer certificate (`SSLSocket.getpeercert()`) asserts, lower
    case: subjectAltName DNS entries and `sip:host` URIs, or, when it has neither, the
    subject CN (RFC 5922 §7.1). Empty for no or an unverified (`{}`) certificate."""
    if not cert:
        return ()
    names: list[str] = []
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            names.append(str(value))
        elif kind == "URI" and str(value).lower().startswith("sip:") and "@" not in value:
            names.append(str(value)[4:])
    if not names:
        names = [str(v) for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names))


@dataclass(frozen=True)
class RequestFacts:
    """What the endpoint knows about one request. `claimed_aor` is the identity the request
    asserts (canonical `sip:user@domain`): To for REGISTER (RFC 3261 §10.3 step 5), From
    otherwise. `target_domain` is the Request-URI host."""

    method: str
    source_ip: str
    transport: str
    claimed_aor: str | None
    target_domain: str
    tls_names: tuple[str, ...] = ()  # names of a verified TLS peer certificate
    authenticated: str | None = None  # canonical AOR proved by Digest on this request
    registered_flow: bool = False  # arrived on the flow of a live binding of claimed_aor

    @property
    def claimed_domain(self) -> str | None:
        if self.claimed_aor is None or "@" not in self.claimed_aor:
            return None
        return _norm(self.claimed_aor.rpartition("@")[2])


@dataclass(frozen=True)
class Accept:
    identity: str | None
    via: str  # "trusted-peer" / "digest" / "registered-flow" / "federation"


@dataclass(frozen=True)
class Challenge:
    status: int  # 401 for REGISTER, 407 otherwise (RFC 3261 §22.1, §22.3)


@dataclass(frozen=True)
class Refuse:
    reason: str
    status: int = 403


@dataclass(frozen=True)
class RelayRefused:
    reason: str
    status: int = 403


Decision: TypeAlias = Accept | Challenge | Refuse | RelayRefused


# A WebSocket client is a user agent (a browser, RFC 7118), never a proxy to trust; behind
# a reverse proxy every browser would also share the proxy's address.
_USER_AGENT_TRANSPORTS = frozenset({"ws", "wss"})


def _trusted_peer(facts: RequestFacts, config: TrustConfig) -> bool:
    if facts.transport.lower() in _USER_AGENT_TRANSPORTS:
        return False
    if facts.tls_names and config.trusted_tls_names & {n.lower() for n in facts.tls_names}:
        return True
    try:
        addr = ipaddress.ip_address(facts.source_ip.strip("[]"))
    except ValueError:
        return False
    return any(addr in net for net in config.trusted_networks)


def _relay(facts: RequestFacts, config: TrustConfig) -> Decision | None:
    """Never outside -> outside; local <-> outside only with federation."""
    origin_local = config.is_local(facts.claimed_domain)
    target_local = config.is_local(facts.target_domain)
    if facts.method == "REGISTER" and _norm(facts.target_domain) not in config.hosted_domains:
        return RelayRefused(f"REGISTER for {facts.target_domain}, not a hosted domain")
    if not target_local:
        if not origin_local:
            return RelayRefused(
                f"outside to outside ({facts.claimed_domain} -> {facts.target_domain})"
            )
        if not config.federation:
            return RelayRefused(f"federation disabled: {facts.target_domain} is not local")
    elif not origin_local and not config.federation:
        return Refuse(f"federation disabled: sender domain {facts.claimed_domain} is not local")
    return None


def decide(facts: RequestFacts, config: TrustConfig) -> Decision:
    relay = _relay(facts, config)
    if relay is not None:
        return relay
    if _trusted_peer(facts, config):
        return Accept(None, "trusted-peer")
    claimed = facts.claimed_domain
    if claimed in config.hosted_domains:
        if facts.authenticated is not None:
            if facts.authenticated == facts.claimed_aor:
                return Accept(facts.authenticated, "digest")
            return Refuse(f"authenticated as {facts.authenticated}, claims {facts.claimed_aor}")
        if facts.registered_flow and config.accept_registered_flow and facts.method != "REGISTER":
            return Accept(facts.claimed_aor, "registered-flow")
        return Challenge(401 if facts.method == "REGISTER" else 407)
    if claimed is None or claimed in config.xmpp_domains:
        return Refuse(f"identity {facts.claimed_aor} in a bridged domain from an untrusted source")
    # A foreign sender (federation is on, or _relay refused it). A verified TLS peer must
    # be the claimed domain (RFC 5922 §7.2, exact names).
    if facts.tls_names and claimed not in {n.lower() for n in facts.tls_names}:
        return Refuse(f"TLS certificate does not name {claimed}")
    return Accept(None, "federation")


def fields(facts: RequestFacts, decision: Decision) -> dict[str, str]:
    """Structured log fields for a decision (docs/security.md: refusals are logged)."""
    out = {
        "decision": type(decision).__name__.lower(),
        "method": facts.method,
        "source": facts.source_ip,
        "transport": facts.transport,
        "claimed": facts.claimed_aor or "-",
        "target_domain": facts.target_domain,
    }
    if isinstance(decision, Refuse | RelayRefused):
        out["reason"] = decision.reason
    elif isinstance(decision, Accept):
        out["via"] = decision.via
    return out

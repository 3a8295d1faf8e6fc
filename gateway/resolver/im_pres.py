"""RFC 3861: which protocol and server serve the im:/pres: destinations of a domain.

Owner names asked, in order of preference (DIGEST §0 and §11 item 7):

1. `_im._sip.D` / `_pres._sip.D` (RFC 3861 §3: no transport label);
2. `_im._sip._udp.D`, `_im._sip._tcp.D`: not RFC 3861 names, but some deployments publish
   them; the label fixes the transport;
3. `_im._xmpp.D` / `_pres._xmpp.D`: dropped by RFC 6121 §8.3, asked only as a fallback.

All are asked at once; the most preferred one with a usable target wins. When none has,
the caller falls back to RFC 7247 §5 (federation.classify). A DNS failure on a name more
preferred than the winner raises: a transient failure must not flip the protocol.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from gateway.resolver.errors import ResolutionError
from gateway.resolver.federation import HostPort, Protocol, ProtocolDecision, srv_hosts
from gateway.resolver.lookup import DnsFailure, Lookup, RdType, gather

__all__ = ["Kind", "candidates", "parse_destination", "resolve_srv"]

Kind = Literal["im", "pres"]

# (label after the service, protocol, transport fixed by the label)
_CANDIDATES: tuple[tuple[str, Protocol, str | None], ...] = (
    ("_sip", "sip", None),
    ("_sip._udp", "sip", "udp"),
    ("_sip._tcp", "sip", "tcp"),
    ("_xmpp", "xmpp", None),
)
# RFC 1035 §2.3.1 preferred name syntax (letters, digits, hyphens; RFC 1123 leading digits).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def candidates(kind: Kind, domain: str) -> list[tuple[str, Protocol, str | None]]:
    """The SRV owner names for `kind` at `domain`, most preferred first."""
    return [(f"_{kind}.{label}.{domain}", proto, t) for label, proto, t in _CANDIDATES]


def parse_destination(text: str, kind: Kind | None = None) -> tuple[Kind, str]:
    """`im:user@D`, `pres:user@D` or a bare `D` -> (kind, D); D must be a FQDN (R3861-01)."""
    scheme, sep, rest = text.partition(":")
    if sep and scheme.lower() in ("im", "pres"):
        found: Kind = "im" if scheme.lower() == "im" else "pres"
        if kind is not None and kind != found:
            raise ResolutionError("unusable", f"{text!r} is a {found}: URI, not {kind}:")
        kind = found
        rest = rest.split("?", 1)[0]  # RFC 3860/3859 headers
        domain = rest.rpartition("@")[2]
    elif sep:
        raise ResolutionError("unusable", f"{text!r} is not an im:/pres: URI or a domain")
    else:
        domain = text
    domain = domain.lower().rstrip(".")
    labels = domain.split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(_LABEL.fullmatch(x) for x in labels):
        raise ResolutionError("unusable", f"{domain!r} is not a fully qualified domain name")
    if labels[-1].isdigit():
        raise ResolutionError("unusable", f"{domain!r} is an address, not a domain (R3861-01)")
    return kind or "im", domain


async def resolve_srv(
    kind: Kind, domain: str, lookup: Lookup, rng: random.Random
) -> ProtocolDecision | None:
    """The RFC 3861 decision for `domain`, or None when no _im/_pres record is usable."""
    names = candidates(kind, domain)
    queries: list[tuple[str, RdType]] = [(name, "SRV") for name, _, _ in names]
    results = await gather(lookup, queries)
    ttls: list[float] = []
    first_failure: DnsFailure | None = None
    for (name, proto, transport), res in zip(names, results, strict=True):
        if isinstance(res, DnsFailure):
            first_failure = first_failure or res
            continue
        ttls.append(res.ttl)
        hosts: tuple[HostPort, ...] = srv_hosts(res, rng, transport)
        if hosts:
            if first_failure is not None:
                break
            source = name[: -len(domain) - 1]
            return ProtocolDecision(domain, proto, source, hosts, min(ttls))
    if first_failure is not None:
        raise ResolutionError(
            first_failure.kind, f"{domain}: DNS failure on {first_failure.name} ({first_failure})"
        )
    return None

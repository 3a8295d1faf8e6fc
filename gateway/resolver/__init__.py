"""DNS resolution for the gateway (docs/dns.md): RFC 3263, RFC 3861, RFC 7247 §5.

`cache` is pure; `lookup` is the only module that talks to DNS (dnspython, async);
`rfc3263`, `im_pres` and `federation` drive the pure policies over lookups; `resolver`
is the facade the bridge uses.
"""

from __future__ import annotations

from gateway.resolver.errors import ResolutionError
from gateway.resolver.federation import HostPort, ProtocolDecision
from gateway.resolver.resolver import Resolver

__all__ = ["HostPort", "ProtocolDecision", "ResolutionError", "Resolver"]

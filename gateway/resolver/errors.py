"""Resolution failures and what each protocol edge answers for them (docs/dns.md).

| cause                                            | SIP | XMPP                    |
|--------------------------------------------------|-----|-------------------------|
| no such domain, no usable records (NXDOMAIN,     | 404 | remote-server-not-found |
| NODATA, SRV target ".")                          |     |                         |
| DNS disabled and no static route                 | 404 | remote-server-not-found |
| sips: (or a transport) we cannot use             | 416 | remote-server-not-found |
| no answer from the DNS servers in time           | 504 | remote-server-timeout   |
| SERVFAIL / REFUSED / other DNS failure           | 503 | remote-server-timeout   |

404 <-> remote-server-not-found is RFC 7247 §7.1 Table 2 note (4) case (a); 504 <->
remote-server-timeout is §7.2 Table 3. A DNS failure is transient, so the XMPP side gets the
"wait" condition, not the "cancel" one.
"""

from __future__ import annotations

from typing import Literal

from mappings.errors import MappingError

__all__ = ["Failure", "ResolutionError"]

Failure = Literal["not-found", "disabled", "unusable", "timeout", "server-failure"]

_MAPPING: dict[Failure, tuple[int, str]] = {
    "not-found": (404, "remote-server-not-found"),
    "disabled": (404, "remote-server-not-found"),
    "unusable": (416, "remote-server-not-found"),
    "timeout": (504, "remote-server-timeout"),
    "server-failure": (503, "remote-server-timeout"),
}


class ResolutionError(MappingError):
    """A destination that could not be resolved; `kind` says why (table above)."""

    def __init__(self, kind: Failure, reason: str) -> None:
        status, condition = _MAPPING[kind]
        super().__init__(reason, sip_status=status, xmpp_condition=condition)
        self.kind: Failure = kind

    @property
    def transient(self) -> bool:
        """True for DNS failures (worth retrying later), False for "does not exist"."""
        return self.kind in ("timeout", "server-failure")

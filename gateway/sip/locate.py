"""RFC 3263 §4 server location as a pure plan over DNS answers (RFC 2782 SRV ordering).

The plan never does I/O. A resolver module drives it::

    plan = LocatePlan.from_uri(uri, supported=("udp", "tcp"))
    while (q := plan.next_query()) is not None:     # or issue several concurrently
        plan.feed(q, await lookup(q.name, q.rdtype))  # [] for NXDOMAIN / NODATA
    targets = plan.targets(random.Random())

`targets()` is the failover order (RFC 3263 §4.3): the transaction user tries them in turn,
with a new transaction per target, after a 503, a timeout or a transport error. The plan
works for responses too (§5): build it from the Via sent-by with the Via transport.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "DEFAULT_PORTS",
    "AddressRecord",
    "LocateError",
    "LocatePlan",
    "NaptrRecord",
    "Query",
    "SrvRecord",
    "Target",
    "order_srv",
]

Transport = Literal["udp", "tcp", "tls", "ws", "wss"]  # ws/wss: flows only (RFC 7118)
RdType = Literal["NAPTR", "SRV", "A", "AAAA"]

DEFAULT_PORTS: dict[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}  # RFC 3261 §19.1.2
# NAPTR service -> (transport, is SIPS). RFC 3263 §4.1; D2S (SCTP) is not supported.
NAPTR_SERVICES: dict[str, tuple[Transport, bool]] = {
    "SIP+D2U": ("udp", False),
    "SIP+D2T": ("tcp", False),
    "SIPS+D2T": ("tls", True),
}
# Transport -> SRV service label (RFC 3263 §4.2: "_sips" for TLS).
SRV_LABELS: dict[str, str] = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
_FAMILY_TYPES: dict[int, RdType] = {4: "A", 6: "AAAA"}


class LocateError(ValueError):
    """The URI cannot be reached with the supported transports (e.g. sips: without TLS)."""


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    rdtype: RdType


@dataclass(frozen=True, slots=True)
class NaptrRecord:
    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class SrvRecord:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class AddressRecord:
    host: str
    address: str
    family: Literal[4, 6]


Answer = NaptrRecord | SrvRecord | AddressRecord


@dataclass(frozen=True, slots=True)
class Target:
    transport: Transport
    host: str
    address: str | None  # None: the host's A/AAAA were not looked up (yet)
    port: int


class UriLike(Protocol):
    """What the plan reads from a gateway.sip.uri.SipUri."""

    @property
    def scheme(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def transport(self) -> str | None: ...
    @property
    def maddr(self) -> str | None: ...


def _norm(name: str) -> str:
    """Lower-case, no trailing dot, no IPv6 reference brackets."""
    name = name.lower().rstrip(".")
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def order_srv(records: list[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """RFC 2782 "Usage rules": priority ascending; within a priority, weighted selection.

    Zero-weight records go first; a number in [0, total] (inclusive) picks the first
    record whose running weight sum is >= it; the pick is removed and the selection
    repeats. A zero-weight record is thus picked first with chance 1/(total+1).
    Records whose target is "." (service unavailable) are dropped.
    """
    out: list[SrvRecord] = []
    usable = [r for r in records if _norm(r.target) != ""]
    for priority in sorted({r.priority for r in usable}):
        group = sorted((r for r in usable if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            pick = rng.randint(0, sum(r.weight for r in group))
            running = 0
            for i, r in enumerate(group):
                running += r.weight
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


@dataclass(slots=True)
class _Route:
    """One way to reach the server: a direct host:port, or an SRV owner name."""

    transport: Transport
    host: str | None = None  # direct: host name or literal address
    port: int | None = None
    srv_name: str | None = None
    srv: list[SrvRecord] | None = field(default=None)  # None until answered


class LocatePlan:
    """The RFC 3263 §4.1/§4.2 decision steps, fed with DNS answers one query at a time."""

    def __init__(
        self,
        host: str,
        *,
        secure: bool = False,
        port: int | None = None,
        transport: str | None = None,
        supported: tuple[Transport, ...] = ("udp", "tcp"),
        families: tuple[Literal[4, 6], ...] = (4, 6),
    ) -> None:
        self.host = _norm(host)
        self.secure = secure
        self.supported = supported
        self.families = families
        self._routes: list[_Route] = []
        self._pending: deque[Query] = deque()
        self._in_flight: set[Query] = set()
        self._addresses: dict[tuple[str, RdType], list[str]] = {}
        self._srv_stage_open = 0  # SRV queries of the current stage still unanswered
        self._fallback: Transport | None = None  # transport for the "no SRV" step

        if secure and "tls" not in supported:
            raise LocateError("sips: needs TLS (RFC 3263 §4.1)")
        explicit = self._explicit_transport(transport)
        if _is_ip(self.host):  # §4.1 numeric TARGET; §4.2 literal address
            t = explicit or self._default_transport()
            self._routes.append(_Route(t, self.host, port or DEFAULT_PORTS[t]))
        elif port is not None:  # §4.1 explicit port: A/AAAA only
            t = explicit or self._default_transport()
            self._add_direct(t, port)
        elif explicit is not None:  # §4.2 SRV for that transport, then A/AAAA
            self._fallback = explicit
            self._add_srv_stage([explicit])
        else:  # §4.1 NAPTR
            self._ask(Query(self.host, "NAPTR"))

    @classmethod
    def from_uri(
        cls,
        uri: UriLike,
        supported: tuple[Transport, ...] = ("udp", "tcp"),
        families: tuple[Literal[4, 6], ...] = (4, 6),
    ) -> LocatePlan:
        """TARGET is maddr if present, else the host (RFC 3263 §4)."""
        return cls(
            uri.maddr or uri.host,
            secure=uri.scheme.lower() == "sips",
            port=uri.port,
            transport=uri.transport,
            supported=supported,
            families=families,
        )

    # -- transport choice ------------------------------------------------------------

    def _explicit_transport(self, param: str | None) -> Transport | None:
        if param is None:
            return None
        p = param.lower()
        if self.secure:
            if p not in ("tcp", "tls"):
                raise LocateError(f"sips: over {p} is impossible")
            p = "tls"  # sips with transport=tcp means TLS over TCP (RFC 3261 §26.2.2)
        if p not in ("udp", "tcp", "tls") or p not in self.supported:
            raise LocateError(f"transport {p!r} not supported")
        return p

    def _default_transport(self) -> Transport:
        """§4.1: UDP for sip:, TLS over TCP for sips:, among supported transports."""
        order: tuple[Transport, ...] = ("tls",) if self.secure else ("udp", "tcp", "tls")
        for t in order:
            if t in self.supported:
                return t
        raise LocateError("no supported transport for this URI")

    # -- query bookkeeping -----------------------------------------------------------

    def _ask(self, query: Query) -> None:
        self._pending.append(query)

    def _add_direct(self, transport: Transport, port: int) -> None:
        self._routes.append(_Route(transport, self.host, port))
        self._ask_addresses(self.host)

    def _ask_addresses(self, host: str) -> None:
        for fam in self.families:
            q = Query(host, _FAMILY_TYPES[fam])
            if (host, q.rdtype) not in self._addresses and q not in self._pending:
                self._ask(q)

    def _add_srv_stage(self, transports: list[Transport], names: list[str] | None = None) -> None:
        for i, t in enumerate(transports):
            name = names[i] if names else f"{SRV_LABELS[t]}.{self.host}"
            self._routes.append(_Route(t, srv_name=name))
            self._ask(Query(name, "SRV"))
        self._srv_stage_open = len(transports)

    def next_query(self) -> Query | None:
        """The next DNS query to make, or None (then `done` tells whether to wait)."""
        while self._pending:
            q = self._pending.popleft()
            if q.rdtype in ("A", "AAAA") and (q.name, q.rdtype) in self._addresses:
                continue  # answered already, e.g. from an additional section
            self._in_flight.add(q)
            return q
        return None

    @property
    def done(self) -> bool:
        return not self._pending and not self._in_flight

    def feed(self, query: Query, answers: list[Answer]) -> None:
        """The answers to `query` ([] for NXDOMAIN/NODATA/failure). Address answers may be
        fed unasked (additional section); NAPTR/SRV answers only for asked queries."""
        asked = query in self._in_flight
        self._in_flight.discard(query)
        if query.rdtype in ("A", "AAAA"):
            key = (_norm(query.name), query.rdtype)
            self._addresses[key] = [a.address for a in answers if isinstance(a, AddressRecord)]
        elif asked:
            _HANDLERS[query.rdtype](self, query, answers)

    def _on_naptr(self, query: Query, answers: list[Answer]) -> None:
        """§4.1: keep applicable services, order by (order, preference)."""
        keep: list[tuple[int, int, Transport, str]] = []
        for r in answers:
            if not isinstance(r, NaptrRecord) or r.flags.lower() != "s":
                continue
            service = NAPTR_SERVICES.get(r.service.upper())
            if service is None:
                continue
            transport, sips = service
            if (self.secure and not sips) or transport not in self.supported:
                continue
            keep.append((r.order, r.preference, transport, _norm(r.replacement)))
        keep.sort(key=lambda k: (k[0], k[1]))
        if keep:
            self._fallback = self._default_transport()
            self._add_srv_stage([k[2] for k in keep], [k[3] for k in keep])
            return
        # No usable NAPTR: SRV per supported transport ("_sips" only for sips:).
        transports = [t for t in self.supported if (t == "tls") or not self.secure]
        self._fallback = self._default_transport()
        self._add_srv_stage(transports)

    def _on_srv(self, query: Query, answers: list[Answer]) -> None:
        """§4.2: SRV found -> A/AAAA of its targets; none in the stage -> A/AAAA of host."""
        records = [r for r in answers if isinstance(r, SrvRecord)]
        for route in self._routes:
            if route.srv_name == query.name and route.srv is None:
                route.srv = records
        for r in records:
            if _norm(r.target):
                self._ask_addresses(_norm(r.target))
        self._srv_stage_open -= 1
        srv_routes = [r for r in self._routes if r.srv_name is not None]
        if self._srv_stage_open == 0 and not any(r.srv for r in srv_routes):
            assert self._fallback is not None
            self._add_direct(self._fallback, DEFAULT_PORTS[self._fallback])

    # -- result ----------------------------------------------------------------------

    def _resolve(self, transport: Transport, host: str, port: int) -> list[Target]:
        if _is_ip(host):
            return [Target(transport, host, host, port)]
        out: list[Target] = []
        known = False
        for fam in self.families:
            addresses = self._addresses.get((host, _FAMILY_TYPES[fam]))
            if addresses is not None:
                known = True
                out += [Target(transport, host, a, port) for a in addresses]
        return out if known else [Target(transport, host, None, port)]

    def targets(self, rng: random.Random) -> list[Target]:
        """Every target in failover order, duplicates removed (RFC 3263 §4.3)."""
        out: list[Target] = []
        for route in self._routes:
            if route.host is not None and route.port is not None:
                out += self._resolve(route.transport, route.host, route.port)
            elif route.srv:
                for rec in order_srv(route.srv, rng):
                    out += self._resolve(route.transport, _norm(rec.target), rec.port)
        seen: set[tuple[str, str, int]] = set()
        unique: list[Target] = []
        for t in out:
            key = (t.transport, t.address or t.host, t.port)
            if key not in seen:
                seen.add(key)
                unique.append(t)
        return unique


_HANDLERS = {"NAPTR": LocatePlan._on_naptr, "SRV": LocatePlan._on_srv}

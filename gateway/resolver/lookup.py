"""DNS lookups with dnspython's async resolver, behind the TTL cache (the only DNS I/O).

`DnsLookup.lookup(name, rdtype)` returns the records as gateway.sip.locate answer types
(NAPTR, SRV, A/AAAA as AddressRecord), cached for their TTL; NXDOMAIN and NODATA are
answers too (cached for the RFC 2308 §5 negative TTL when the response carries a SOA, not
at all otherwise). A server that does not answer, or answers SERVFAIL/REFUSED, raises
`DnsFailure`; each lookup is bounded by `timeout * attempts` (dnspython's lifetime, plus
an asyncio guard). The machine's /etc/resolv.conf is never read: the resolver is built
with `configure=False` and only the configured servers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
import dns.rrset

from gateway.config import DnsConfig
from gateway.logs import event
from gateway.resolver.cache import TtlCache
from gateway.sip.locate import AddressRecord, Answer, NaptrRecord, SrvRecord

__all__ = ["DnsFailure", "DnsLookup", "Lookup", "LookupResult", "RdType", "gather"]

logger = logging.getLogger(__name__)

RdType = Literal["NAPTR", "SRV", "A", "AAAA"]
Status = Literal["ok", "nxdomain", "nodata"]
GUARD = 1.0  # seconds past dnspython's own lifetime before asyncio cancels a lookup


@dataclass(frozen=True, slots=True)
class LookupResult:
    name: str  # as asked, lower-case, no trailing dot
    rdtype: RdType
    status: Status
    records: tuple[Answer, ...]
    ttl: float  # how long this result may be reused (0: not cacheable)

    @property
    def exists(self) -> bool:
        """False only for NXDOMAIN (the name does not exist at all)."""
        return self.status != "nxdomain"


class DnsFailure(Exception):
    """No usable answer: the servers did not answer in time, or answered with an error."""

    def __init__(self, name: str, rdtype: str, kind: Literal["timeout", "server-failure"]) -> None:
        super().__init__(f"DNS {rdtype} {name}: {kind}")
        self.name = name
        self.rdtype = rdtype
        self.kind: Literal["timeout", "server-failure"] = kind


@dataclass(slots=True)
class LookupCounters:
    lookups: int = 0  # queries sent to the servers (one per cache miss)
    cache_hits: int = 0
    failures: int = 0  # lookups that raised DnsFailure


Lookup = Callable[[str, RdType], Awaitable[LookupResult]]


async def gather(
    lookup: Lookup, queries: Sequence[tuple[str, RdType]]
) -> list[LookupResult | DnsFailure]:
    """Run `queries` concurrently; each result or its DnsFailure (other errors propagate)."""
    results = await asyncio.gather(*(lookup(n, t) for n, t in queries), return_exceptions=True)
    out: list[LookupResult | DnsFailure] = []
    for res in results:
        if isinstance(res, BaseException) and not isinstance(res, DnsFailure):
            raise res
        out.append(res)
    return out


def _norm(name: str) -> str:
    return name.lower().rstrip(".")


class DnsLookup:
    """Cached, bounded, coalesced lookups against `cfg.servers` only."""

    def __init__(self, cfg: DnsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not cfg.servers:
            raise ValueError("DnsLookup needs at least one server (DNS is disabled otherwise)")
        self.cfg = cfg
        self.clock = clock
        self.counters = LookupCounters()
        self.cache: TtlCache[tuple[str, RdType], LookupResult] = TtlCache(cfg.cache_size)
        self.lifetime = cfg.timeout * max(cfg.attempts, 1)
        self._inflight: dict[tuple[str, RdType], asyncio.Task[LookupResult]] = {}
        res = dns.asyncresolver.Resolver(configure=False)
        res.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in cfg.servers]
        res.timeout = cfg.timeout
        res.lifetime = self.lifetime
        res.retry_servfail = False
        res.cache = None
        self._resolver = res

    async def lookup(self, name: str, rdtype: RdType) -> LookupResult:
        """The (possibly cached) answer to `name`/`rdtype`; raises DnsFailure."""
        key = (_norm(name), rdtype)
        cached = self.cache.get(key, self.clock())
        if cached is not None:
            self.counters.cache_hits += 1
            return cached
        task = self._inflight.get(key)
        if task is None:  # one query per name and type, however many callers wait for it
            task = asyncio.get_running_loop().create_task(self._fetch(*key))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def _done(self, key: tuple[str, RdType], task: asyncio.Task[LookupResult]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have been cancelled meanwhile

    async def _fetch(self, name: str, rdtype: RdType) -> LookupResult:
        self.counters.lookups += 1
        try:
            async with asyncio.timeout(self.lifetime + GUARD):
                result = await self._query(name, rdtype)
        except (dns.exception.Timeout, TimeoutError):
            self._failed(name, rdtype, "timeout")
        except (dns.resolver.NoNameservers, dns.resolver.YXDOMAIN):
            self._failed(name, rdtype, "server-failure")
        except dns.exception.DNSException as exc:  # malformed answers, bad names
            event(logger, logging.DEBUG, "dns error", name=name, rdtype=rdtype, error=str(exc))
            self._failed(name, rdtype, "server-failure")
        self.cache.put(
            (name, rdtype), result, result.ttl, self.clock(), negative=result.status != "ok"
        )
        return result

    def _failed(
        self, name: str, rdtype: str, kind: Literal["timeout", "server-failure"]
    ) -> NoReturn:
        self.counters.failures += 1
        event(logger, logging.INFO, "dns lookup failed", name=name, rdtype=rdtype, kind=kind)
        raise DnsFailure(name, rdtype, kind)

    async def _query(self, name: str, rdtype: RdType) -> LookupResult:
        qname = dns.name.from_text(name)  # absolute: no search list
        try:
            answer = await self._resolver.resolve(qname, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            response = exc.kwargs.get("responses", {}).get(qname)
            return LookupResult(name, rdtype, "nxdomain", (), _negative_ttl(response))
        if answer.rrset is None:
            return LookupResult(name, rdtype, "nodata", (), _negative_ttl(answer.response))
        records = tuple(_convert(name, rdtype, answer.rrset))
        return LookupResult(name, rdtype, "ok", records, answer.chaining_result.minimum_ttl)


def _negative_ttl(response: dns.message.Message | None) -> float:
    """RFC 2308 §5: min(SOA TTL, SOA MINIMUM); no SOA -> not cached."""
    if response is None:
        return 0.0
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum))
    return 0.0


def _convert(name: str, rdtype: RdType, rrset: dns.rrset.RRset) -> list[Answer]:
    out: list[Answer] = []
    for rd in rrset:
        if rdtype == "SRV":
            out.append(SrvRecord(rd.priority, rd.weight, rd.port, _norm(rd.target.to_text())))
        elif rdtype == "NAPTR":
            out.append(
                NaptrRecord(
                    rd.order,
                    rd.preference,
                    rd.flags.decode("ascii", "replace"),
                    rd.service.decode("ascii", "replace"),
                    rd.regexp.decode("utf-8", "replace"),
                    _norm(rd.replacement.to_text()),
                )
            )
        else:
            out.append(AddressRecord(name, rd.address, 4 if rdtype == "A" else 6))
    return out

"""Prometheus collectors read at scrape time from the running services.

The SIP endpoint, the component links and the resolver keep plain counters and
state of their own (no metrics dependency); these collectors turn them into
metric families when /metrics is scraped. Recorded metrics (messages, latency,
presence, subscriptions, registrations, reconnects) live in `gateway.metrics`.
docs/admin-api.md lists every family.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gateway import heap
from gateway.sip.useragent import EndpointStats
from gateway.xmpp.links import LinkState, LinkStatus


class EndpointView(Protocol):
    """What the collector reads from `SipEndpoint`."""

    @property
    def transactions_in_flight(self) -> int: ...
    @property
    def stats(self) -> EndpointStats: ...
    @property
    def draining(self) -> bool: ...


class ResolverView(Protocol):
    """What the collector reads from `Resolver`."""

    @property
    def lookups(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def cache_hits(self) -> int: ...


# (stats attribute, family label value) for cpim_sip_messages_total.
_SIP_MESSAGE_COUNTERS = (
    ("requests_in", "request", "in"),
    ("responses_in", "response", "in"),
    ("requests_out", "request", "out"),
    ("responses_out", "response", "out"),
)


class EndpointCollector(Collector):
    """Transactions in flight, retransmissions, messages, parse and handler errors."""

    def __init__(
        self, endpoint: EndpointView, connections: Callable[[], Sized] | None = None
    ) -> None:
        self._ep = endpoint
        self._connections = connections

    def collect(self) -> Iterator[Metric]:
        ep, stats = self._ep, self._ep.stats
        yield GaugeMetricFamily(
            "cpim_sip_transactions_in_flight",
            "SIP client and server transactions not yet terminated",
            value=ep.transactions_in_flight,
        )
        retrans = CounterMetricFamily(
            "cpim_sip_retransmissions",
            "SIP retransmissions: sent by us (Timers A, E, G) and absorbed from peers",
            labels=["direction"],
        )
        retrans.add_metric(["out"], stats.retransmissions)
        retrans.add_metric(["in"], stats.retransmissions_in)
        yield retrans
        msgs = CounterMetricFamily(
            "cpim_sip_messages",
            "SIP messages on the wire (retransmissions included) by kind and direction",
            labels=["kind", "direction"],
        )
        for attr, kind, direction in _SIP_MESSAGE_COUNTERS:
            msgs.add_metric([kind, direction], getattr(stats, attr))
        yield msgs
        yield CounterMetricFamily(
            "cpim_sip_parse_errors",
            "SIP messages that could not be parsed or framed",
            value=stats.parse_errors,
        )
        yield CounterMetricFamily(
            "cpim_sip_handler_errors",
            "Requests whose handler failed unexpectedly (answered 500)",
            value=stats.handler_errors,
        )
        yield GaugeMetricFamily(
            "cpim_sip_draining", "1 while the gateway refuses new requests (503)", value=ep.draining
        )
        if self._connections is not None:
            try:
                open_now = len(self._connections())
            except RuntimeError:  # the endpoint is not started yet
                open_now = 0
            yield GaugeMetricFamily(
                "cpim_sip_connections",
                "Open TCP/TLS connections (inbound and outbound)",
                value=open_now,
            )


class LinkCollector(Collector):
    """State of each XEP-0114 component link."""

    def __init__(self, status: Callable[[], Iterable[LinkStatus]]) -> None:
        self._status = status

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "cpim_component_link_up", "1 when the component link is up", labels=["domain"]
        )
        state = GaugeMetricFamily(
            "cpim_component_link_state",
            "1 for the link's current state (stopped, connecting, up, waiting)",
            labels=["domain", "state"],
        )
        failures = GaugeMetricFamily(
            "cpim_component_link_failures",
            "Consecutive failed connection attempts of the link",
            labels=["domain"],
        )
        queued = GaugeMetricFamily(
            "cpim_component_queued_stanzas",
            "Stanzas held while the link is down",
            labels=["domain"],
        )
        for s in self._status():
            up.add_metric([s.domain], s.state is LinkState.UP)
            for st in LinkState:
                state.add_metric([s.domain, st.value], s.state is st)
            failures.add_metric([s.domain], s.failures)
            queued.add_metric([s.domain], s.queued)
        yield from (up, state, failures, queued)


class ResolverCollector(Collector):
    """The resolver's DNS counters (queries sent, failures, cache hits)."""

    def __init__(self, resolver: ResolverView) -> None:
        self._resolver = resolver

    def collect(self) -> Iterator[Metric]:
        r = self._resolver
        yield CounterMetricFamily(
            "cpim_dns_queries", "DNS lookups sent to the servers (cache misses)", value=r.lookups
        )
        yield CounterMetricFamily(
            "cpim_dns_failures",
            "DNS lookups that failed (timeout, SERVFAIL, no server answered)",
            value=r.failures,
        )
        yield CounterMetricFamily(
            "cpim_dns_cache_hits", "DNS lookups answered from the cache", value=r.cache_hits
        )


class AsyncioCollector(Collector):
    """Tasks alive on the event loop serving the scrape (a leak shows as steady growth)."""

    def collect(self) -> Iterator[Metric]:
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped outside the event loop (a test's registry)
            return
        yield GaugeMetricFamily(
            "cpim_asyncio_tasks", "asyncio tasks not yet done on the gateway's loop", value=tasks
        )


class HeapCollector(Collector):
    """glibc's heap split into in use and free, so RSS growth can be told from fragmentation
    (gateway/heap.py; docs/reliability.md §6)."""

    def collect(self) -> Iterator[Metric]:
        stats = heap.heap_stats()
        if stats is None:
            return
        family = GaugeMetricFamily(
            "cpim_heap_bytes",
            "C heap (glibc malloc) bytes: arena = obtained from the kernel, in_use + free = arena;"
            " mmapped = large blocks outside the arena",
            labels=["kind"],
        )
        for kind in ("arena", "in_use", "free", "mmapped"):
            family.add_metric([kind], getattr(stats, kind))
        yield family
        yield GaugeMetricFamily(
            "cpim_python_allocated_blocks",
            "Live blocks of the Python object allocator (sys.getallocatedblocks)",
            value=stats.python_blocks,
        )


def register_collectors(
    registry: CollectorRegistry,
    *,
    endpoint: EndpointView | None = None,
    connections: Callable[[], Sized] | None = None,
    links: Callable[[], Iterable[LinkStatus]] | None = None,
    resolver: ResolverView | None = None,
) -> None:
    """Register the collectors for the services that exist (app.py), and the task gauge."""
    registry.register(AsyncioCollector())
    if heap.available():
        registry.register(HeapCollector())
    if endpoint is not None:
        registry.register(EndpointCollector(endpoint, connections))
    if links is not None:
        registry.register(LinkCollector(links))
    if resolver is not None:
        registry.register(ResolverCollector(resolver))

"""The admin API through aiohttp's test client (a loopback socket, no gateway process).

Covers: /healthz, /readyz, the bearer token, /metrics (text and OpenMetrics) with
the recorded families and the scrape-time collectors, the JSON listings, and the
runtime wire-trace switch (POST /trace) down to the renamed log lines.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway import heap
from gateway.admin.collectors import register_collectors
from gateway.admin.server import AdminSources, Readiness, create_app
from gateway.config import AdminConfig
from gateway.logs import WIRE_SIP, WIRE_XMPP, TextFormatter, WireTrace
from gateway.metrics import Metrics
from gateway.sip.useragent import EndpointStats
from gateway.xmpp.links import LinkState, LinkStatus

TOKEN = "t0ken"
Make = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client() -> AsyncIterator[Make]:
    clients: list[TestClient[Any, Any]] = []

    async def make(
        *,
        token: str | None = None,
        probe: Callable[[], Readiness] = lambda: Readiness(True, {"xmpp": True}),
        sources: AdminSources | None = None,
    ) -> TestClient[Any, Any]:
        app = create_app(AdminConfig(token=token), probe, sources)
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed exposition: (sample name, sorted labels) -> value."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# -- health, readiness, auth -------------------------------------------------------


async def test_healthz_answers_alive(make_client: Make) -> None:
    client = await make_client()
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "alive"}


async def test_readyz_reports_checks_and_503_when_not_ready(make_client: Make) -> None:
    state = {"ready": False}

    def probe() -> Readiness:
        return Readiness(state["ready"], {"xmpp": state["ready"], "sip": True})

    client = await make_client(probe=probe)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert await resp.json() == {"ready": False, "checks": {"xmpp": False, "sip": True}}
    state["ready"] = True
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert (await resp.json())["ready"] is True


@pytest.mark.parametrize("path", ["/readyz", "/metrics", "/links", "/trace"])
async def test_token_required_everywhere_but_healthz(make_client: Make, path: str) -> None:
    sources = AdminSources(Metrics().registry, {"links": list}, WireTrace())
    client = await make_client(token=TOKEN, sources=sources)
    assert (await client.get("/healthz")).status == 200
    refused = await client.get(path)
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    ok = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status == 200


# -- metrics ----------------------------------------------------------------------


async def test_metrics_expose_recorded_families(make_client: Make) -> None:
    metrics = Metrics()
    client = await make_client(sources=AdminSources(registry=metrics.registry))
    before = samples(await (await client.get("/metrics")).text())
    key = ("cpim_messages_total", (("direction", "sip_to_xmpp"), ("outcome", "delivered")))
    assert key not in before  # a labelled counter appears once recorded
    metrics.messages.labels("sip_to_xmpp", "delivered").inc()
    metrics.messages.labels("sip_to_xmpp", "delivered").inc()
    metrics.message_latency.labels("sip_to_xmpp").observe(0.003)
    metrics.registrations.set(4)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    after = samples(await resp.text())
    assert after[key] == 2
    lat = ("cpim_message_handling_seconds_bucket", (("direction", "sip_to_xmpp"), ("le", "0.005")))
    assert after[lat] == 1
    assert (
        after[
            (
                "cpim_message_handling_seconds_bucket",
                (("direction", "sip_to_xmpp"), ("le", "0.0025")),
            )
        ]
        == 0
    )
    assert after[("cpim_registrations_active", ())] == 4


async def test_metrics_openmetrics_when_asked(make_client: Make) -> None:
    metrics = Metrics()
    metrics.component_reconnects.labels("sip.localhost").inc()
    client = await make_client(sources=AdminSources(registry=metrics.registry))
    resp = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    text = await resp.text()
    assert text.rstrip().endswith("# EOF")
    assert 'cpim_component_reconnects_total{domain="sip.localhost"} 1.0' in text


async def test_metrics_404_without_registry(make_client: Make) -> None:
    client = await make_client()
    assert (await client.get("/metrics")).status == 404


@dataclass
class FakeEndpoint:
    stats: EndpointStats = field(default_factory=EndpointStats)
    transactions_in_flight: int = 0
    draining: bool = False


@dataclass
class FakeResolver:
    lookups: int = 0
    failures: int = 0
    cache_hits: int = 0


def link(
    domain: str, state: LinkState, failures: int = 0, queued: int = 0, port: int = 5347
) -> LinkStatus:
    return LinkStatus(domain, state, 1.0e9, None, failures, None, queued, "127.0.0.1", port)


async def test_collectors_read_services_at_scrape_time(make_client: Make) -> None:
    metrics = Metrics()
    ep, res = FakeEndpoint(), FakeResolver()
    links = [link("sip.localhost", LinkState.UP), link("gw.localhost", LinkState.WAITING, 3, 7)]
    conns: list[object] = []
    register_collectors(
        metrics.registry,
        endpoint=ep,
        connections=lambda: conns,
        links=lambda: links,
        resolver=res,
    )
    client = await make_client(sources=AdminSources(registry=metrics.registry))

    async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return samples(await (await client.get("/metrics")).text())

    first = await scrape()
    assert first[("cpim_sip_transactions_in_flight", ())] == 0
    assert first[("cpim_sip_retransmissions_total", (("direction", "out"),))] == 0
    ep.transactions_in_flight = 5
    ep.stats.retransmissions = 2
    ep.stats.retransmissions_in = 1
    ep.stats.requests_in = 9
    ep.draining = True
    conns.extend([object(), object()])
    res.lookups, res.failures, res.cache_hits = 4, 1, 6
    links[1] = link("gw.localhost", LinkState.UP)
    now = await scrape()
    assert now[("cpim_sip_transactions_in_flight", ())] == 5
    assert now[("cpim_sip_retransmissions_total", (("direction", "out"),))] == 2
    assert now[("cpim_sip_retransmissions_total", (("direction", "in"),))] == 1
    assert now[("cpim_sip_messages_total", (("direction", "in"), ("kind", "request")))] == 9
    assert now[("cpim_sip_draining", ())] == 1
    assert now[("cpim_sip_connections", ())] == 2
    assert now[("cpim_dns_queries_total", ())] == 4
    assert now[("cpim_dns_failures_total", ())] == 1
    assert now[("cpim_dns_cache_hits_total", ())] == 6
    assert first[("cpim_component_link_up", (("domain", "gw.localhost"),))] == 0
    assert first[("cpim_component_link_failures", (("domain", "gw.localhost"),))] == 3
    assert first[("cpim_component_queued_stanzas", (("domain", "gw.localhost"),))] == 7
    assert now[("cpim_component_link_up", (("domain", "gw.localhost"),))] == 1
    up_state = ("cpim_component_link_state", (("domain", "gw.localhost"), ("state", "up")))
    assert (first[up_state], now[up_state]) == (0, 1)


def test_connections_before_start_count_zero() -> None:
    metrics = Metrics()

    def not_started() -> list[object]:
        raise RuntimeError("endpoint not started")

    register_collectors(metrics.registry, endpoint=FakeEndpoint(), connections=not_started)
    assert metrics.registry.get_sample_value("cpim_sip_connections") == 0


# -- listings ---------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    aor: str
    contact: str
    expires_at: float


async def test_listings_render_dataclasses_mappings_and_enums(make_client: Make) -> None:
    links = (link("sip.localhost", LinkState.UP, port=5348),)
    bindings = [Row("sip:romeo@sip.localhost", "sip:romeo@127.0.0.1:5070", 12.5)]

    async def subscriptions() -> list[dict[str, Any]]:
        return [{"direction": "x2s", "watcher": "juliet@localhost", "state": "active"}]

    sources = AdminSources(
        listings={
            "links": lambda: links,
            "registrations": lambda: bindings,
            "subscriptions": subscriptions,
        }
    )
    client = await make_client(sources=sources)
    body = await (await client.get("/links")).json()
    assert body["count"] == 1
    assert body["truncated"] is False
    assert body["links"][0]["domain"] == "sip.localhost"
    assert body["links"][0]["state"] == "up"
    assert (body["links"][0]["server"], body["links"][0]["port"]) == ("127.0.0.1", 5348)
    regs = await (await client.get("/registrations")).json()
    assert regs["registrations"] == [
        {
            "aor": "sip:romeo@sip.localhost",
            "contact": "sip:romeo@127.0.0.1:5070",
            "expires_at": 12.5,
        }
    ]
    subs = await (await client.get("/subscriptions")).json()
    assert subs["subscriptions"][0]["watcher"] == "juliet@localhost"


async def test_listing_limit_truncates_and_counts(make_client: Make) -> None:
    rows = [{"n": i} for i in range(25)]
    client = await make_client(sources=AdminSources(listings={"subscriptions": lambda: rows}))
    body = await (await client.get("/subscriptions?limit=10")).json()
    assert body["count"] == 25
    assert body["truncated"] is True
    assert [r["n"] for r in body["subscriptions"]] == list(range(10))
    for bad in ("0", "-1", "abc", "100001"):
        assert (await client.get(f"/subscriptions?limit={bad}")).status == 400


async def test_listing_without_provider_is_404(make_client: Make) -> None:
    client = await make_client(sources=AdminSources(listings={"links": list}))
    assert (await client.get("/registrations")).status == 404
    assert (await client.get("/nothing")).status == 404


# -- wire trace -------------------------------------------------------------------


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("aiohttp"):  # access log of the test server
            self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Capture]:
    """A root handler; the root level is INFO, as in a production gateway."""
    root = logging.getLogger()
    handler, level = Capture(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def emit_wire_lines() -> None:
    sip = logging.getLogger("gateway.sip.transport.endpoint")
    sip.debug("sip out", extra={"fields": {"msg": "MESSAGE", "wire": "MESSAGE sip:x SIP/2.0"}})
    sip.debug("connection idle, closing")  # a debug line that is not a wire line
    sip.info("sip listener up")
    logging.getLogger("slixmpp.xmlstream.xmlstream").debug("SEND: %s", "<message/>")
    logging.getLogger("slixmpp.xmlstream.xmlstream").debug("RECV: %s", "<presence/>")


async def test_trace_switches_wire_lines_at_runtime(make_client: Make, captured: Capture) -> None:
    hooked: list[bool] = []
    trace = WireTrace({"sip": hooked.append})
    client = await make_client(sources=AdminSources(trace=trace))
    try:
        assert await (await client.get("/trace")).json() == {"sip": False, "xmpp": False}
        emit_wire_lines()
        assert [r.getMessage() for r in captured.records] == ["sip listener up"]

        captured.records.clear()
        resp = await client.post("/trace", json={"sip": True, "xmpp": True})
        assert await resp.json() == {"sip": True, "xmpp": True}
        assert hooked == [True]
        captured.records.clear()
        emit_wire_lines()
        got = [(r.name, r.getMessage()) for r in captured.records]
        assert got == [
            (WIRE_SIP, "sip out"),
            ("gateway.sip.transport.endpoint", "sip listener up"),
            (WIRE_XMPP, "xmpp out"),
            (WIRE_XMPP, "xmpp in"),
        ]
        line = TextFormatter().format(captured.records[2])
        assert "gateway.wire.xmpp: xmpp out wire=<message/>" in line

        resp = await client.post("/trace", json={"sip": False})
        assert await resp.json() == {"sip": False, "xmpp": True}
        assert hooked == [True, False]
        captured.records.clear()
        emit_wire_lines()
        assert [r.name for r in captured.records] == [
            "gateway.sip.transport.endpoint",
            WIRE_XMPP,
            WIRE_XMPP,
        ]
    finally:
        trace.off()
    assert logging.getLogger("gateway.sip.transport.endpoint").level == logging.NOTSET
    assert logging.getLogger("slixmpp.xmlstream.xmlstream").level == logging.NOTSET


@pytest.mark.parametrize("body", [{"sip": "yes"}, {"smtp": True}, {}, [True], "on"], ids=repr)
async def test_trace_rejects_bad_bodies(make_client: Make, body: Any) -> None:
    trace = WireTrace()
    client = await make_client(sources=AdminSources(trace=trace))
    resp = await client.post("/trace", json=body)
    assert resp.status == 400
    assert trace.state() == {"sip": False, "xmpp": False}
    resp = await client.post(
        "/trace", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400


def test_trace_at_debug_level_keeps_every_line(captured: Capture) -> None:
    logging.getLogger().setLevel(logging.DEBUG)
    trace = WireTrace()
    trace.set("sip", True)
    try:
        emit_wire_lines()
    finally:
        trace.off()
    names = [(r.name, r.getMessage()) for r in captured.records]
    assert (WIRE_SIP, "sip out") in names
    assert ("gateway.sip.transport.endpoint", "connection idle, closing") in names


def test_wire_trace_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown wire trace"):
        WireTrace().set("smtp", True)


@pytest.mark.skipif(not heap.available(), reason="glibc's mallinfo2 only")
def test_heap_gauges_follow_allocations() -> None:
    metrics = Metrics()
    register_collectors(metrics.registry)

    def read() -> dict[str, float]:  # one collection: the four kinds come from one mallinfo2
        return {
            s.labels.get("kind", s.name): s.value
            for family in metrics.registry.collect()
            for s in family.samples
            if s.name in ("cpim_heap_bytes", "cpim_python_allocated_blocks")
        }

    before = read()
    # 64 KiB buffers: glibc's heap (below its mmap threshold), not pymalloc's arenas
    chunks = [bytearray(64 * 1024) for _ in range(100)]
    objects = [object() for _ in range(20_000)]  # pymalloc blocks
    grown = read()
    assert grown["in_use"] - before["in_use"] >= 100 * 64 * 1024
    assert grown["cpim_python_allocated_blocks"] - before["cpim_python_allocated_blocks"] >= 20_000
    assert grown["arena"] == grown["in_use"] + grown["free"]  # mallinfo2's identity
    del chunks, objects
    after = read()
    assert after["in_use"] < grown["in_use"] - 90 * 64 * 1024
    assert after["cpim_python_allocated_blocks"] < grown["cpim_python_allocated_blocks"] - 19_000

"""gateway.resolver against a real DNS server (dnsmasq, authoritative on a loopback port).

Zones and records are served by tests.harness.dns.DnsServer; every name below resolves to
a loopback address. The resolver's clock is a fake one wherever TTLs matter, so expiry is
tested by moving the clock, not by sleeping; the dnsmasq query log shows which lookups
really reached the server. Failover runs real SIP transactions (gateway.sip.transport's
SipEndpoint) to targets found in DNS: UDP black holes, a closed port, a 503 responder, sipp.

Not here: the end-to-end test (an XMPP user messaging a SIP user of a domain found only
through DNS) needs the pager bridge, which does not exist yet.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.failover import TargetsExhausted, send_with_failover
from gateway.config import DnsConfig, RouteConfig
from gateway.resolver import ProtocolDecision, ResolutionError, Resolver
from gateway.resolver.lookup import DnsLookup
from gateway.sip.locate import Target
from gateway.sip.uri import SipUri, parse_uri
from tests.harness import LOOPBACK
from tests.harness.dns import Cname, DnsServer, Host, Naptr, Record, Srv
from tests.harness.ports import free_port
from tests.harness.sipp import Sipp

pytestmark = pytest.mark.integration

LIMIT = 30.0  # bound on any single resolution or transaction in these tests
TTL = 300  # the module server's TTL (positive and negative)

RECORDS: list[Record] = [
    # DIGEST §22 item 8 (RFC 3263 §4.1 example), plus the _sips SRV it names.
    Naptr("example.com", 50, 50, "s", "SIPS+D2T", "_sips._tcp.example.com"),
    Naptr("example.com", 90, 50, "s", "SIP+D2T", "_sip._tcp.example.com"),
    Naptr("example.com", 100, 50, "s", "SIP+D2U", "_sip._udp.example.com"),
    Srv("_sip._tcp.example.com", "server1.example.com", 5060, 0, 1),
    Srv("_sip._tcp.example.com", "server2.example.com", 5060, 0, 2),
    Srv("_sips._tcp.example.com", "tls1.example.com", 5061, 0, 0),
    Host("server1.example.com", "127.0.0.11"),
    Host("server2.example.com", "127.0.0.12"),
    Host("tls1.example.com", "127.0.0.13"),
    # NAPTR order/preference -> SRV priority -> A then AAAA.
    Naptr("order.test", 10, 20, "s", "SIP+D2U", "_sip._udp.order.test"),
    Naptr("order.test", 10, 10, "s", "SIP+D2T", "_sip._tcp.order.test"),
    Naptr("order.test", 5, 10, "s", "SIP+D2X", "_bogus._tcp.order.test"),  # unknown service
    Srv("_sip._tcp.order.test", "b.order.test", 5071, 2, 0),
    Srv("_sip._tcp.order.test", "a.order.test", 5070, 1, 0),
    Srv("_sip._udp.order.test", "c.order.test", 5072, 1, 0),
    Host("a.order.test", "127.0.0.21", "::1"),
    Host("b.order.test", "127.0.0.22"),
    Cname("c.order.test", "b.order.test"),  # followed (RFC 1034 §3.6.2)
    # No NAPTR: SRV per transport. No SRV either: A with the default port.
    Srv("_sip._udp.srvonly.test", "host.srvonly.test", 5080, 0, 0),
    Host("host.srvonly.test", "127.0.0.31"),
    Host("aonly.test", "127.0.0.32"),
    # Weighted selection: priority 10 weights 0/10/30/60, priority 20 always last.
    *(Srv("_sip._udp.weights.test", f"w{w}.weights.test", 5060, 10, w) for w in (0, 10, 30, 60)),
    Srv("_sip._udp.weights.test", "last.weights.test", 5060, 20, 100),
    *(Host(f"w{w}.weights.test", f"127.0.1.{w + 1}") for w in (0, 10, 30, 60)),
    Host("last.weights.test", "127.0.1.200"),
    # RFC 3861.
    Srv("_im._sip.im.test", "imgw.im.test", 5070, 0, 0),
    Srv("_im._xmpp.im.test", "xmpp.im.test", 5269, 0, 0),  # less preferred than _im._sip
    Srv("_pres._xmpp.im.test", "xmpp.im.test", 5269, 0, 0),  # the only _pres record
    Host("imgw.im.test", "127.0.0.41"),
    Host("xmpp.im.test", "127.0.0.42"),
    Srv("_im._sip._tcp.labelled.test", "gw.labelled.test", 5090, 0, 0),
    Host("gw.labelled.test", "127.0.0.43"),
    # RFC 7247 §5 federation.
    Srv("_xmpp-server._tcp.xmpponly.test", "xmpp.xmpponly.test", 5269, 0, 0),
    Host("xmpp.xmpponly.test", "127.0.0.51"),
    Naptr("siponly.test", 10, 10, "s", "SIP+D2U", "_sip._udp.siponly.test"),
    Srv("_sip._udp.siponly.test", "sip.siponly.test", 5060, 0, 0),
    Host("sip.siponly.test", "127.0.0.52"),
    Srv("_xmpp-server._tcp.both.test", "xmpp.both.test", 5269, 0, 0),
    Srv("_sip._tcp.both.test", "sip.both.test", 5060, 0, 0),
    Host("xmpp.both.test", "127.0.0.53"),
    Host("sip.both.test", "127.0.0.54"),
    Host("neither.test", "127.0.0.55"),  # an address says nothing about the protocol
    Srv("_xmpp-server._tcp.dot.test", None),  # "." : XMPP decidedly not offered
    # Static routes and the outbound proxy.
    Host("proxy.test", "127.0.0.61"),
]


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsServer]:
    server = DnsServer(
        tmp_path_factory.mktemp("dnsmasq"), zones=["test", "example.com"], records=RECORDS, ttl=TTL
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def config(server: DnsServer, **kw: Any) -> DnsConfig:
    return DnsConfig(servers=(server.address,), **{"timeout": 2.0, "attempts": 2, **kw})


def resolver(server: DnsServer, seed: int = 1, **kw: Any) -> Resolver:
    return Resolver(config(server), rng=random.Random(seed), **kw)


def uri(text: str) -> SipUri:
    u = parse_uri(text)
    assert isinstance(u, SipUri)
    return u


async def bounded(aw: Any) -> Any:
    return await asyncio.wait_for(aw, LIMIT)


def brief(targets: list[Target]) -> list[tuple[str, str | None, int]]:
    return [(t.transport, t.address, t.port) for t in targets]


# -- RFC 3263 ---------------------------------------------------------------------


async def test_digest_naptr_example_without_tls(dns_server: DnsServer) -> None:
    """DIGEST §22 item 8: a UDP/TCP client skips SIPS+D2T, takes SIP+D2T (order 90)."""
    targets = await bounded(resolver(dns_server).resolve_sip(uri("sip:bob@example.com")))
    assert {t.transport for t in targets} == {"tcp"}
    assert sorted(brief(targets)) == [("tcp", "127.0.0.11", 5060), ("tcp", "127.0.0.12", 5060)]
    assert not dns_server.queries("_sips._tcp.example.com")  # SIPS+D2T was discarded
    # SIP+D2U (order 100) is kept for failover, but its SRV name has no records.
    assert dns_server.queries("_sip._udp.example.com") == [("SRV", "_sip._udp.example.com")]


async def test_sips_requires_tls(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    with pytest.raises(ResolutionError) as info:
        await bounded(r.resolve_sip(uri("sips:bob@example.com")))
    assert (info.value.kind, info.value.sip_status) == ("unusable", 416)
    targets = await bounded(r.resolve_sip(uri("sips:bob@example.com"), ("udp", "tcp", "tls")))
    assert brief(targets) == [("tls", "127.0.0.13", 5061)]  # only SIPS+D2T records


async def test_rfc3263_order_naptr_then_srv_priority_then_a_aaaa(dns_server: DnsServer) -> None:
    targets = await bounded(resolver(dns_server).resolve_sip(uri("sip:bob@order.test")))
    assert brief(targets) == [
        ("tcp", "127.0.0.21", 5070),  # NAPTR pref 10 (tcp) before pref 20 (udp); SRV prio 1
        ("tcp", "::1", 5070),  # A before AAAA
        ("tcp", "127.0.0.22", 5071),  # SRV prio 2
        ("udp", "127.0.0.22", 5072),  # the udp NAPTR; c.order.test is a CNAME to b
    ]


async def test_srv_without_naptr_and_a_without_srv(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    targets = await bounded(r.resolve_sip(uri("sip:bob@srvonly.test")))
    assert brief(targets) == [("udp", "127.0.0.31", 5080)]
    targets = await bounded(r.resolve_sip(uri("sip:bob@aonly.test")))
    assert brief(targets) == [("udp", "127.0.0.32", 5060)]  # RFC 3263 §4.2 default port
    targets = await bounded(r.resolve_sip(uri("sip:bob@aonly.test;transport=tcp")))
    assert brief(targets) == [("tcp", "127.0.0.32", 5060)]
    # An explicit port: A/AAAA only (§4.1), no NAPTR or SRV for that URI.
    before = dns_server.queries("order.test", "NAPTR")
    targets = await bounded(r.resolve_sip(uri("sip:bob@a.order.test:6000")))
    assert brief(targets) == [("udp", "127.0.0.21", 6000), ("udp", "::1", 6000)]
    assert dns_server.queries("a.order.test", "NAPTR") == []
    assert dns_server.queries("order.test", "NAPTR") == before


async def test_weighted_selection_distribution(dns_server: DnsServer) -> None:
    """RFC 2782 weights over 4000 orderings (seeded): first-pick shares follow the weights;
    the zero-weight record is rarely first; the lower priority is always last. The answers
    come from the cache after the first resolution."""
    r = resolver(dns_server, seed=2026)
    firsts: Counter[str] = Counter()
    n = 4000
    await bounded(r.resolve_sip(uri("sip:bob@weights.test")))
    lookups = r.lookups
    for _ in range(n):
        targets = await bounded(r.resolve_sip(uri("sip:bob@weights.test")))
        assert len(targets) == 5
        assert targets[-1].address == "127.0.1.200"
        firsts[str(targets[0].address)] += 1
    share = {w: firsts[f"127.0.1.{w + 1}"] / n for w in (0, 10, 30, 60)}
    # RFC 2782 draws in [0, 100] inclusive: about w/101, one unit more for the first
    # non-zero record in the list, 1/101 for weight 0.
    assert abs(share[60] - 0.6) < 0.05, share
    assert abs(share[30] - 0.3) < 0.05, share
    assert abs(share[10] - 0.1) < 0.04, share
    assert share[0] < 0.03, share
    assert r.lookups == lookups  # every later resolution was served by the cache
    assert r.cache_hits >= n * lookups


# -- failover over real SIP transactions ---------------------------------------


class BlackHole(asyncio.DatagramProtocol):
    """A UDP socket that receives and never answers."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.received.append(data)


class Responder(asyncio.DatagramProtocol):
    """Answers every request with `status` (a tiny UAS, no transaction state)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[bytes] = []
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        from gateway.sip.message import SipRequest, make_response
        from gateway.sip.parser import parse_message
        from gateway.sip.serializer import serialize

        self.received.append(data)
        req = parse_message(data)
        if isinstance(req, SipRequest) and req.method != "ACK" and self.transport is not None:
            self.transport.sendto(serialize(make_response(req, self.status, to_tag="r1")), addr)


@pytest.fixture
async def udp_peers() -> AsyncIterator[Any]:
    transports: list[asyncio.DatagramTransport] = []

    async def bind(proto: asyncio.DatagramProtocol, port: int) -> None:
        loop = asyncio.get_running_loop()
        t, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=(LOOPBACK, port))
        transports.append(t)

    try:
        yield bind
    finally:
        for t in transports:
            t.close()


@pytest.fixture
async def endpoint() -> AsyncIterator[Any]:
    from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
    from gateway.sip import useragent as mod
    from gateway.sip.transport.endpoint import SipEndpoint

    class Refuse:
        def handle(self, request: Any) -> None:
            request.reply(403)

    cfg = SipConfig(
        listeners=(ListenerConfig(Transport.UDP, LOOPBACK, free_port()),),
        timers=SipTimers(t1=0.05, t2=4.0, t4=5.0),  # Timer F = 64*T1 = 3.2 s
    )
    ep = SipEndpoint(cfg, Refuse())
    await ep.start()
    try:
        yield mod, ep
    finally:
        await ep.stop()


def message(to: str) -> Any:
    from gateway.sip.message import Headers, SipRequest

    items = [
        ("From", "<sip:alice@127.0.0.1>;tag=a1"),
        ("To", f"<{to}>"),
        ("Call-ID", f"failover-{free_port()}@127.0.0.1"),
        ("CSeq", "1 MESSAGE"),
        ("Content-Type", "text/plain"),
    ]
    return SipRequest("MESSAGE", parse_uri(to), Headers(items), b"hello")


def branches(datagrams: list[bytes]) -> set[str]:
    out = set()
    for d in datagrams:
        for line in d.decode(errors="replace").splitlines():
            if line.lower().startswith("via:") and "branch=" in line:
                out.add(line.split("branch=", 1)[1].split(";", 1)[0])
    return out


async def test_failover_two_dead_targets_then_sipp(
    tmp_path: Path, sipp: Sipp, udp_peers: Any, endpoint: Any
) -> None:
    """Three SRV targets in priority order; the first two never answer (Timer F), the
    third is a sipp UAS: a new transaction per target, the MESSAGE reaches sipp."""
    mod, ep = endpoint
    ports = [free_port() for _ in range(3)]
    records: list[Record] = [
        *(
            Srv("_sip._udp.fail.test", f"t{i}.fail.test", port, 10 * (i + 1), 0)
            for i, port in enumerate(ports)
        ),
        *(Host(f"t{i}.fail.test", LOOPBACK) for i in range(3)),
    ]
    holes = [BlackHole(), BlackHole()]
    for hole, port in zip(holes, ports, strict=False):
        await udp_peers(hole, port)
    with (
        DnsServer(tmp_path / "dns", zones=["fail.test"], records=records) as dns,
        sipp.uas("message_uas", local_port=ports[2]) as uas,
    ):
        r = resolver(dns)
        to = "sip:bob@fail.test"
        targets = await bounded(r.resolve_sip(uri(to)))
        assert [t.port for t in targets] == ports
        req = message(to)
        target, response, failed = await asyncio.wait_for(
            send_with_failover(
                targets,
                lambda t: ep.request(req, t),
                timeouts=(mod.TransactionTimeout,),
                transport_errors=(mod.TransportFailure,),
            ),
            3 * LIMIT,
        )
        result = await asyncio.to_thread(uas.wait)
    assert response.status == 200 and target.port == ports[2]
    assert [(a.target.port, a.outcome) for a in failed] == [
        (ports[0], "timeout"),
        (ports[1], "timeout"),
    ]
    assert result.ok, result.describe()
    # Each dead target got its own transaction (retransmitted, one branch each).
    b0, b1 = branches(holes[0].received), branches(holes[1].received)
    assert len(b0) == 1 and len(b1) == 1 and b0 != b1
    assert len(holes[0].received) >= 2  # Timer E retransmissions before Timer F
    assert not (b0 | b1) & branches([result.messages.encode()])


async def test_failover_on_closed_port_and_503(
    tmp_path: Path, udp_peers: Any, endpoint: Any
) -> None:
    """A 503 is a failure too (RFC 3263 §4.3); every target failing gives TargetsExhausted."""
    mod, ep = endpoint
    ports = [free_port() for _ in range(3)]
    records: list[Record] = [
        *(
            Srv("_sip._udp.fail503.test", f"t{i}.fail503.test", port, i, 0)
            for i, port in enumerate(ports)
        ),
        *(Host(f"t{i}.fail503.test", LOOPBACK) for i in range(3)),
    ]
    busy, ok = Responder(503), Responder(202)
    await udp_peers(busy, ports[0])
    await udp_peers(ok, ports[1])
    with DnsServer(tmp_path / "dns", zones=["fail503.test"], records=records) as dns:
        targets = await bounded(resolver(dns).resolve_sip(uri("sip:bob@fail503.test")))
    req = message("sip:bob@fail503.test")
    kw: dict[str, Any] = {
        "timeouts": (mod.TransactionTimeout,),
        "transport_errors": (mod.TransportFailure,),
    }
    target, response, failed = await bounded(
        send_with_failover(targets, lambda t: ep.request(req, t), **kw)
    )
    assert (target.port, response.status) == (ports[1], 202)
    assert [(a.target.port, a.outcome) for a in failed] == [(ports[0], "503")]
    assert branches(busy.received).isdisjoint(branches(ok.received))
    # Only the 503 target and a port where nothing listens: exhausted.
    with pytest.raises(TargetsExhausted) as info:
        await asyncio.wait_for(
            send_with_failover([targets[0], targets[2]], lambda t: ep.request(req, t), **kw),
            3 * LIMIT,
        )
    first, second = info.value.attempts
    assert first.outcome == "503"
    # UDP to a closed port: ICMP "port unreachable" (a transport error) or Timer F.
    expected = {"timeout": 408, "transport": 503}[second.outcome]
    assert (info.value.sip_status, info.value.xmpp_condition) == (
        expected,
        "remote-server-timeout",
    )


# -- RFC 3861 _im/_pres -----------------------------------------------------------


async def test_im_sip_preferred_over_im_xmpp(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    decision = await bounded(r.resolve_im("im:fred@im.test"))
    assert (decision.protocol, decision.source) == ("sip", "_im._sip")
    assert [(h.host, h.port) for h in decision.hosts] == [("imgw.im.test", 5070)]
    targets = await bounded(r.sip_targets(decision))
    assert brief(targets) == [("udp", "127.0.0.41", 5070)]  # the SRV port is kept


async def test_pres_falls_back_to_pres_xmpp(dns_server: DnsServer) -> None:
    decision = await bounded(resolver(dns_server).resolve_im("pres:fred@im.test"))
    assert (decision.protocol, decision.source) == ("xmpp", "_pres._xmpp")
    assert [(h.host, h.port) for h in decision.hosts] == [("xmpp.im.test", 5269)]


async def test_transport_labelled_variant(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    decision = await bounded(r.resolve_im("labelled.test", "im"))
    assert (decision.protocol, decision.source) == ("sip", "_im._sip._tcp")
    targets = await bounded(r.sip_targets(decision))
    assert brief(targets) == [("tcp", "127.0.0.43", 5090)]


async def test_im_without_records_uses_rfc7247(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    decision = await bounded(r.resolve_im("im:romeo@xmpponly.test"))
    assert (decision.protocol, decision.source) == ("xmpp", "_xmpp-server._tcp")
    decision = await bounded(r.resolve_im("im:juliet@siponly.test"))
    assert (decision.protocol, decision.source) == ("sip", "rfc3263")
    targets = await bounded(r.sip_targets(decision))
    assert brief(targets) == [("udp", "127.0.0.52", 5060)]


# -- RFC 7247 §5: XMPP or SIP ------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "from_xmpp", "from_sip"),
    [
        ("xmpponly.test", "xmpp", "xmpp"),
        ("siponly.test", "sip", "sip"),
        ("both.test", "xmpp", "sip"),  # the asking side's order decides
        ("neither.test", "unknown", "unknown"),
        ("dot.test", "unknown", "unknown"),
        ("nxdomain.test", "unknown", "unknown"),
    ],
)
async def test_classify_domain(
    dns_server: DnsServer, domain: str, from_xmpp: str, from_sip: str
) -> None:
    r = resolver(dns_server)
    assert await bounded(r.classify_domain(domain, "xmpp")) == from_xmpp
    assert await bounded(r.classify_domain(domain, "sip")) == from_sip


async def test_classify_asks_in_the_order_of_the_side(dns_server: DnsServer) -> None:
    """R7247-02: from XMPP, a found _xmpp-server ends the decision before any SIP query;
    R7247-03: from SIP, RFC 3263 records end it before _xmpp-server is asked."""
    naptr = dns_server.queries("xmpponly.test", "NAPTR")
    xmpp = dns_server.queries("_xmpp-server._tcp.xmpponly.test")
    await bounded(resolver(dns_server).classify_domain("xmpponly.test", "xmpp"))
    assert dns_server.queries("xmpponly.test", "NAPTR") == naptr
    assert len(dns_server.queries("_xmpp-server._tcp.xmpponly.test")) == len(xmpp) + 1
    xmpp = dns_server.queries("_xmpp-server._tcp.siponly.test")
    naptr = dns_server.queries("siponly.test", "NAPTR")
    await bounded(resolver(dns_server).classify_domain("siponly.test", "sip"))
    assert dns_server.queries("_xmpp-server._tcp.siponly.test") == xmpp
    assert len(dns_server.queries("siponly.test", "NAPTR")) == len(naptr) + 1


async def test_verdict_cached_within_ttl(dns_server: DnsServer) -> None:
    clock = FakeClock()
    r = resolver(dns_server, clock=clock)
    first = await bounded(r.decide("both.test", "sip"))
    lookups = r.lookups
    clock.now += TTL - 1
    assert await bounded(r.decide("both.test", "sip")) is first
    assert r.lookups == lookups
    clock.now += 2
    again = await bounded(r.decide("both.test", "sip"))
    assert again == first and again is not first and r.lookups > lookups


# -- TTLs, NXDOMAIN, negative caching ----------------------------------------------


async def test_ttl_expiry(tmp_path: Path) -> None:
    """Records with TTL 1 s: a second resolution 0.9 s later (fake clock) is served from
    the cache and never reaches dnsmasq; one at 1.0 s asks dnsmasq again."""
    records: list[Record] = [
        Srv("_sip._udp.short.test", "h.short.test", 5060, 0, 0),
        Host("h.short.test", LOOPBACK),
    ]
    with DnsServer(tmp_path, zones=["short.test"], records=records, ttl=1) as dns:
        clock = FakeClock()
        r = resolver(dns, clock=clock)
        await bounded(r.resolve_sip(uri("sip:bob@short.test")))
        assert dns.queries("_sip._udp.short.test", "SRV") == [("SRV", "_sip._udp.short.test")]
        hits = r.cache_hits
        clock.now += 0.9
        await bounded(r.resolve_sip(uri("sip:bob@short.test")))
        assert len(dns.queries("_sip._udp.short.test", "SRV")) == 1
        assert r.cache_hits > hits
        clock.now += 0.1
        await bounded(r.resolve_sip(uri("sip:bob@short.test")))
        assert len(dns.queries("_sip._udp.short.test", "SRV")) == 2


async def test_nxdomain_and_negative_caching(dns_server: DnsServer) -> None:
    clock = FakeClock()
    r = resolver(dns_server, clock=clock)
    with pytest.raises(ResolutionError) as info:
        await bounded(r.resolve_sip(uri("sip:bob@nope.test")))
    err = info.value
    assert (err.kind, err.sip_status, err.xmpp_condition) == (
        "not-found",
        404,
        "remote-server-not-found",
    )
    asked = dns_server.queries("nope.test")
    assert ("NAPTR", "nope.test") in asked and ("A", "nope.test") in asked
    lookups = r.lookups
    clock.now += TTL - 1  # RFC 2308: the SOA MINIMUM (= TTL here) bounds the negative entry
    with pytest.raises(ResolutionError):
        await bounded(r.resolve_sip(uri("sip:bob@nope.test")))
    assert r.lookups == lookups and dns_server.queries("nope.test") == asked
    clock.now += 2
    with pytest.raises(ResolutionError):
        await bounded(r.resolve_sip(uri("sip:bob@nope.test")))
    assert len(dns_server.queries("nope.test")) == 2 * len(asked)


async def test_nxdomain_versus_nodata(dns_server: DnsServer) -> None:
    lookup = DnsLookup(config(dns_server))
    nx = await bounded(lookup.lookup("nope.test", "A"))
    nodata = await bounded(lookup.lookup("aonly.test", "AAAA"))
    found = await bounded(lookup.lookup("aonly.test", "A"))
    assert (nx.status, nx.exists, nx.ttl) == ("nxdomain", False, TTL)
    assert (nodata.status, nodata.exists, nodata.ttl) == ("nodata", True, TTL)
    assert (found.status, found.ttl) == ("ok", TTL)
    assert [getattr(a, "address", None) for a in found.records] == ["127.0.0.32"]


async def test_refused_zone_is_a_server_failure(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    with pytest.raises(ResolutionError) as info:
        await bounded(r.resolve_sip(uri("sip:bob@not-served.org")))
    assert (info.value.kind, info.value.sip_status) == ("server-failure", 503)
    assert info.value.xmpp_condition == "remote-server-timeout"
    assert r.failures > 0


@pytest.fixture
def silent_dns() -> Iterator[tuple[str, int]]:
    """A UDP socket that takes DNS queries and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        yield s.getsockname()


async def test_server_that_does_not_answer(silent_dns: tuple[str, int]) -> None:
    cfg = DnsConfig(servers=(silent_dns,), timeout=0.5, attempts=2)
    r = Resolver(cfg, rng=random.Random(1))
    with pytest.raises(ResolutionError) as info:
        await bounded(r.resolve_sip(uri("sip:bob@example.com")))
    assert (info.value.kind, info.value.sip_status) == ("timeout", 504)
    assert info.value.xmpp_condition == "remote-server-timeout"
    for call in (r.resolve_im("im:fred@example.com"), r.decide("example.com", "xmpp")):
        with pytest.raises(ResolutionError) as info:
            await bounded(call)
        assert info.value.kind == "timeout"
    assert r.failures >= 3 and r.cache_hits == 0


# -- static configuration wins; no servers: static only ----------------------------


async def test_static_route_wins_over_dns(dns_server: DnsServer) -> None:
    routes = [
        RouteConfig("example.com", "sip:127.0.0.9:5099;transport=tcp"),
        RouteConfig("weights.test", "sip:proxy.test:5098"),
    ]
    r = resolver(dns_server, routes=routes)
    targets = await bounded(r.resolve_sip(uri("sip:bob@example.com")))
    assert brief(targets) == [("tcp", "127.0.0.9", 5099)]
    assert r.lookups == 0
    targets = await bounded(r.resolve_sip(uri("sip:bob@weights.test")))
    assert brief(targets) == [("udp", "127.0.0.61", 5098)]  # the route's host via A only
    assert r.lookups == 2  # A and AAAA of proxy.test: an explicit port, no NAPTR/SRV
    decision = await bounded(r.decide("example.com", "xmpp"))
    assert (decision.protocol, decision.source) == ("sip", "static-route")


async def test_outbound_proxy_takes_everything_but_routes(dns_server: DnsServer) -> None:
    routes = [RouteConfig("example.com", "sip:127.0.0.9:5099")]
    r = resolver(dns_server, routes=routes, outbound_proxy="sip:proxy.test;transport=tcp")
    assert brief(await bounded(r.resolve_sip(uri("sip:bob@siponly.test")))) == [
        ("tcp", "127.0.0.61", 5060)
    ]
    assert brief(await bounded(r.resolve_sip(uri("sip:bob@example.com")))) == [
        ("udp", "127.0.0.9", 5099)
    ]


async def test_no_servers_static_only() -> None:
    r = Resolver(
        DnsConfig(),
        [RouteConfig("routed.test", "sip:127.0.0.9:5099")],
        rng=random.Random(1),
    )
    assert not r.enabled
    assert brief(await r.resolve_sip(uri("sip:bob@127.0.0.7"))) == [("udp", "127.0.0.7", 5060)]
    assert brief(await r.resolve_sip(uri("sip:bob@routed.test"))) == [("udp", "127.0.0.9", 5099)]
    assert (await r.decide("routed.test", "xmpp")) == ProtocolDecision(
        "routed.test", "sip", "static-route"
    )
    for call in (
        r.resolve_sip(uri("sip:bob@example.com")),
        r.resolve_im("im:fred@example.com"),
        r.classify_domain("example.com", "sip"),
    ):
        with pytest.raises(ResolutionError) as info:
            await call
        assert (info.value.kind, info.value.sip_status) == ("disabled", 404)
        assert info.value.xmpp_condition == "remote-server-not-found"
    assert r.lookups == 0


async def test_concurrent_lookups_are_coalesced(dns_server: DnsServer) -> None:
    r = resolver(dns_server)
    before = len(dns_server.queries("_sip._udp.srvonly.test"))
    results = await bounded(
        asyncio.gather(*(r.resolve_sip(uri("sip:bob@srvonly.test")) for _ in range(20)))
    )
    assert all(brief(t) == [("udp", "127.0.0.31", 5080)] for t in results)
    assert len(dns_server.queries("_sip._udp.srvonly.test")) == before + 1

"""SipEndpoint on loopback against sipp (UDP and TCP) and raw sockets.

Messages here carry only loopback addresses; torture vectors with foreign addresses run
in a network namespace (test_sip_torture_netns.py). Timers use T1 = 50 ms, so Timer F
is 3.2 s. Waits are bounded and wait for conditions, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import (
    IncomingRequest,
    MessageTooLarge,
    TransactionTimeout,
    TransportFailure,
)
from mappings.errors import MappingError
from tests.harness import LOOPBACK
from tests.harness.ports import free_port
from tests.harness.sipp import Sipp, SippResult

pytestmark = pytest.mark.integration

T1 = 0.05
LIMIT = 30.0  # bound on any single wait in these tests


def sip_config(*listeners: ListenerConfig, **kw: Any) -> SipConfig:
    return SipConfig(listeners=listeners, timers=SipTimers(t1=T1, t2=4.0, t4=5.0), **kw)


def udp_tcp(host: str = LOOPBACK) -> tuple[ListenerConfig, ListenerConfig]:
    port = free_port() if host == LOOPBACK else 0
    return (
        ListenerConfig(Transport.UDP, host, port),
        ListenerConfig(Transport.TCP, host, port),
    )


Behaviour = Callable[[IncomingRequest], Awaitable[None] | None]


class Handler:
    """Records every request; answers per method (default 200)."""

    def __init__(self) -> None:
        self.seen: list[IncomingRequest] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.arrived = asyncio.Event()

    def handle(self, request: IncomingRequest) -> Awaitable[None] | None:
        self.seen.append(request)
        self.arrived.set()
        behaviour = self.behaviours.get(request.request.method)
        if behaviour is not None:
            return behaviour(request)
        if request.request.method != "ACK":
            request.reply(200)
        return None

    def methods(self) -> list[str]:
        return [r.request.method for r in self.seen]

    async def wait_for(self, method: str, count: int = 1) -> list[IncomingRequest]:
        async def until() -> None:
            while self.methods().count(method) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(until(), LIMIT)
        return [r for r in self.seen if r.request.method == method]


EndpointFactory = Callable[..., Awaitable[SipEndpoint]]


@pytest.fixture
async def endpoints() -> AsyncIterator[EndpointFactory]:
    started: list[SipEndpoint] = []

    async def make(
        *listeners: ListenerConfig, handler: Handler | None = None, **kw: Any
    ) -> SipEndpoint:
        ep_kw = {k: kw.pop(k) for k in ("idle_timeout", "path_mtu", "trace") if k in kw}
        ep = SipEndpoint(sip_config(*(listeners or udp_tcp()), **kw), handler or Handler(), **ep_kw)
        await ep.start()
        started.append(ep)
        return ep

    try:
        yield make
    finally:
        for ep in started:
            await ep.stop()


def port_of(ep: SipEndpoint, transport: str = "udp") -> int:
    listener = ep.listener(transport) or ep.listener(transport, ipv6=True)
    assert listener is not None
    return listener.local[1]


def message(to: str, body: bytes = b"hello", *, call_id: str = "", **headers: str) -> SipRequest:
    items = [
        ("From", "<sip:gw@127.0.0.1>;tag=gw1"),
        ("To", f"<{to}>"),
        ("Call-ID", call_id or f"c{free_port()}@127.0.0.1"),
        ("CSeq", "1 MESSAGE"),
        ("Content-Type", "text/plain"),
        *headers.items(),
    ]
    return SipRequest("MESSAGE", parse_uri(to), Headers(items), body)


async def in_thread(fn: Callable[..., SippResult], *args: Any, **kw: Any) -> SippResult:
    return await asyncio.to_thread(fn, *args, **kw)


def sipp_keys(to: str) -> dict[str, str]:
    return {"to_uri": to, "from_uri": "sip:sipp@127.0.0.1", "body": "hello from sipp"}


# ----------------------------------------------------------------- sipp UAC -> endpoint


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_message_to_endpoint(
    sipp: Sipp, endpoints: EndpointFactory, transport: str
) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler)
    port = port_of(ep, "udp" if transport == "u1" else "tcp")
    to = f"sip:bob@127.0.0.1:{port}"
    result = await in_thread(
        sipp.run,
        "message_uac",
        remote=f"127.0.0.1:{port}",
        transport=transport,
        keys=sipp_keys(to),
        timeout=20,
    )
    assert result.ok, result.describe()
    (incoming,) = handler.seen
    assert incoming.request.body.rstrip(b"\r\n") == b"hello from sipp"  # sipp adds CRLF
    assert incoming.transport == ("udp" if transport == "u1" else "tcp")
    assert incoming.source[0] == LOOPBACK
    via = incoming.request.top_via
    assert via is not None and via.received is None  # sent-by is the source address
    if transport == "t1":
        assert incoming.connection_id is not None
        assert incoming.listener.startswith("tcp:")
    assert ep.stats.requests_in == 1 and ep.stats.responses_out >= 1


async def test_retransmitted_message_reaches_the_handler_once(
    sipp: Sipp, endpoints: EndpointFactory
) -> None:
    """The handler answers only after sipp has retransmitted the MESSAGE (its Timer E,
    500 ms): the layer absorbs the retransmission and the handler sees one request."""
    handler = Handler()
    ep: SipEndpoint | None = None

    async def answer_after_retransmission(req: IncomingRequest) -> None:
        assert ep is not None
        while ep.stats.retransmissions_in < 1:
            await asyncio.sleep(0.02)
        req.reply(200)

    handler.behaviours["MESSAGE"] = answer_after_retransmission
    ep = await endpoints(handler=handler)
    port = port_of(ep)
    result = await in_thread(
        sipp.run,
        "message_uac",
        remote=f"127.0.0.1:{port}",
        keys=sipp_keys(f"sip:bob@127.0.0.1:{port}"),
        timeout=20,
    )
    assert result.ok, result.describe()
    assert handler.methods() == ["MESSAGE"]
    assert ep.stats.retransmissions_in >= 1
    assert result.messages.count("MESSAGE sip:bob") >= 2  # sipp did retransmit


# ----------------------------------------------------------------- endpoint -> sipp UAS


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_endpoint_message_to_sipp(
    sipp: Sipp, endpoints: EndpointFactory, transport: str
) -> None:
    ep = await endpoints()
    sipp_port = free_port()
    with sipp.uas(
        "message_uas", local_port=sipp_port, transport="u1" if transport == "udp" else "t1"
    ) as uas:
        to = f"sip:alice@127.0.0.1:{sipp_port}"
        target = Target(transport, "127.0.0.1", "127.0.0.1", sipp_port)  # type: ignore[arg-type]
        resp = await asyncio.wait_for(ep.request(message(to), target), LIMIT)
        result = await asyncio.to_thread(uas.wait)
    assert resp.status == 200
    assert result.ok, result.describe()
    sent = result.messages
    assert (
        f"Via: SIP/2.0/{transport.upper()} 127.0.0.1:{port_of(ep, transport)};branch=z9hG4bK"
        in sent
    )
    assert ";rport" in sent and "Max-Forwards: 70" in sent and "User-Agent: cpim-gateway" in sent


async def test_udp_retransmits_until_the_uas_answers(
    sipp: Sipp, endpoints: EndpointFactory
) -> None:
    """sipp withholds its response for 600 ms; Timer E (T1 = 50 ms) resends meanwhile."""
    ep = await endpoints()
    sipp_port = free_port()
    with sipp.uas("transport_message_uas_withhold", local_port=sipp_port) as uas:
        target = Target("udp", "127.0.0.1", "127.0.0.1", sipp_port)
        to = f"sip:alice@127.0.0.1:{sipp_port}"
        resp = await asyncio.wait_for(ep.request(message(to), target), LIMIT)
        result = await asyncio.to_thread(uas.wait)
    assert resp.status == 200
    assert result.ok, result.describe()
    assert ep.stats.retransmissions >= 2
    assert result.messages.count(f"MESSAGE sip:alice@127.0.0.1:{sipp_port}") >= 3


async def test_timer_f_when_the_uas_never_answers(sipp: Sipp, endpoints: EndpointFactory) -> None:
    ep = await endpoints()
    sipp_port = free_port()
    with sipp.uas("transport_uas_silent", local_port=sipp_port):
        target = Target("udp", "127.0.0.1", "127.0.0.1", sipp_port)
        to = f"sip:alice@127.0.0.1:{sipp_port}"
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TransactionTimeout):
            await asyncio.wait_for(ep.request(message(to), target), LIMIT)
        elapsed = loop.time() - started
    assert elapsed >= 64 * T1  # the timeout is Timer F, not an earlier one
    assert ep.transactions_in_flight == 0


# ----------------------------------------------------------------- SUBSCRIBE / NOTIFY


async def test_sipp_subscribes_and_gets_a_notify(sipp: Sipp, endpoints: EndpointFactory) -> None:
    """Endpoint as notifier: 200 to SUBSCRIBE, then a NOTIFY in the dialog to the Contact."""
    handler = Handler()
    ep: SipEndpoint | None = None
    notify_result: list[SipResponse] = []

    async def notifier(incoming: IncomingRequest) -> None:
        assert ep is not None
        sub = incoming.request
        incoming.reply(200, headers=[("Expires", "60"), ("Contact", "<sip:gw@127.0.0.1>")])
        assert sub.from_ is not None and sub.to is not None and sub.contacts
        contact = sub.contacts[0].uri
        notify = SipRequest(
            "NOTIFY",
            contact,
            Headers(
                [
                    ("From", f"{sub.headers.get('To')};tag={incoming.to_tag}"),
                    ("To", str(sub.headers.get("From"))),
                    ("Call-ID", str(sub.call_id)),
                    ("CSeq", "1 NOTIFY"),
                    ("Event", "presence"),
                    ("Subscription-State", "active;expires=60"),
                    ("Contact", "<sip:gw@127.0.0.1>"),
                ]
            ),
        )
        target = Target("udp", "127.0.0.1", incoming.source[0], incoming.source[1])
        notify_result.append(await ep.request(notify, target))

    handler.behaviours["SUBSCRIBE"] = notifier
    ep = await endpoints(handler=handler)
    port = port_of(ep)
    result = await in_thread(
        sipp.run,
        "transport_subscribe_uac",
        remote=f"127.0.0.1:{port}",
        keys={"to_uri": f"sip:pres@127.0.0.1:{port}", "from_uri": "sip:sipp@127.0.0.1"},
        timeout=20,
    )
    assert result.ok, result.describe()
    assert handler.methods() == ["SUBSCRIBE"]
    await asyncio.wait_for(_until(lambda: bool(notify_result)), LIMIT)
    assert notify_result[0].status == 200


async def test_endpoint_subscribes_to_a_sipp_notifier(
    sipp: Sipp, endpoints: EndpointFactory
) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler)
    sipp_port = free_port()
    my_port = port_of(ep)
    with sipp.uas("transport_notifier_uas", local_port=sipp_port) as uas:
        sub = SipRequest(
            "SUBSCRIBE",
            parse_uri(f"sip:pres@127.0.0.1:{sipp_port}"),
            Headers(
                [
                    ("From", "<sip:watcher@127.0.0.1>;tag=w1"),
                    ("To", f"<sip:pres@127.0.0.1:{sipp_port}>"),
                    ("Call-ID", f"sub{sipp_port}@127.0.0.1"),
                    ("CSeq", "1 SUBSCRIBE"),
                    ("Contact", f"<sip:watcher@127.0.0.1:{my_port}>"),
                    ("Event", "presence"),
                    ("Expires", "60"),
                ]
            ),
        )
        target = Target("udp", "127.0.0.1", "127.0.0.1", sipp_port)
        resp = await asyncio.wait_for(ep.request(sub, target), LIMIT)
        (notify,) = await handler.wait_for("NOTIFY")
        result = await asyncio.to_thread(uas.wait)
    assert resp.status == 200 and resp.to_tag is not None
    assert result.ok, result.describe()
    req = notify.request
    assert req.call_id == f"sub{sipp_port}@127.0.0.1"
    assert req.to_tag == "w1" and req.from_tag == resp.to_tag
    assert req.subscription_state is not None
    assert notify.final_sent


# ----------------------------------------------------------------- TCP: reuse and size


async def test_tcp_connection_is_reused(sipp: Sipp, endpoints: EndpointFactory) -> None:
    ep = await endpoints()
    sipp_port = free_port()
    with sipp.uas("message_uas", local_port=sipp_port, transport="t1", calls=2) as uas:
        target = Target("tcp", "127.0.0.1", "127.0.0.1", sipp_port)
        to = f"sip:alice@127.0.0.1:{sipp_port}"
        first = await asyncio.wait_for(ep.request(message(to), target), LIMIT)
        conns = [c for c in ep.connections.connections() if c.peer[1] == sipp_port]
        second = await asyncio.wait_for(ep.request(message(to), target), LIMIT)
        result = await asyncio.to_thread(uas.wait)
    assert (first.status, second.status) == (200, 200)
    assert result.ok, result.describe()
    assert len(conns) == 1
    assert ep.connections.opened == 1


async def test_large_message_goes_over_tcp(sipp: Sipp, endpoints: EndpointFactory) -> None:
    """A UDP target, a 2000-byte MESSAGE: RFC 3261 §18.1.1 sends it over TCP (sipp
    listens on TCP only, so a UDP send could not have been answered)."""
    ep = await endpoints()
    sipp_port = free_port()
    with sipp.uas("message_uas", local_port=sipp_port, transport="t1") as uas:
        target = Target("udp", "127.0.0.1", "127.0.0.1", sipp_port)
        to = f"sip:alice@127.0.0.1:{sipp_port}"
        resp = await asyncio.wait_for(ep.request(message(to, b"x" * 2000), target), LIMIT)
        result = await asyncio.to_thread(uas.wait)
    assert resp.status == 200
    assert result.ok, result.describe()
    assert "Via: SIP/2.0/TCP" in result.messages
    assert ep.connections.opened == 1


async def test_large_message_falls_back_to_udp_when_tcp_is_refused(
    sipp: Sipp, endpoints: EndpointFactory
) -> None:
    ep = await endpoints()
    sipp_port = free_port()
    with sipp.uas("message_uas", local_port=sipp_port, transport="u1") as uas:
        target = Target("udp", "127.0.0.1", "127.0.0.1", sipp_port)
        to = f"sip:alice@127.0.0.1:{sipp_port}"
        resp = await asyncio.wait_for(ep.request(message(to, b"y" * 2000), target), LIMIT)
        result = await asyncio.to_thread(uas.wait)
    assert resp.status == 200
    assert result.ok, result.describe()
    assert "Via: SIP/2.0/UDP" in result.messages and "y" * 2000 in result.messages


async def test_too_large_for_udp_and_tcp_refused(endpoints: EndpointFactory) -> None:
    ep = await endpoints(max_message_size=1500)
    closed_port = free_port()  # nothing listens there
    target = Target("udp", "127.0.0.1", "127.0.0.1", closed_port)
    with pytest.raises(MessageTooLarge):
        await asyncio.wait_for(
            ep.request(message(f"sip:x@127.0.0.1:{closed_port}", b"z" * 1600), target), LIMIT
        )


async def test_tcp_connection_refused_is_a_transport_failure(endpoints: EndpointFactory) -> None:
    ep = await endpoints()
    closed_port = free_port()
    target = Target("tcp", "127.0.0.1", "127.0.0.1", closed_port)
    with pytest.raises(TransportFailure) as info:
        await asyncio.wait_for(ep.request(message(f"sip:x@127.0.0.1:{closed_port}"), target), LIMIT)
    assert info.value.connect_failed


# ----------------------------------------------------------------- IPv6


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")
@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_ipv6_between_two_endpoints(endpoints: EndpointFactory, transport: str) -> None:
    handler = Handler()
    server = await endpoints(*udp_tcp("::1"), handler=handler)
    client = await endpoints(*udp_tcp("::1"))
    port = port_of(server, transport)
    target = Target(transport, "::1", "::1", port)  # type: ignore[arg-type]
    resp = await asyncio.wait_for(client.request(message(f"sip:b@[::1]:{port}"), target), LIMIT)
    assert resp.status == 200
    (incoming,) = handler.seen
    assert incoming.source[0] == "::1"
    via = incoming.request.top_via
    assert via is not None and via.host == "[::1]" and via.rport == incoming.source[1]


# ----------------------------------------------------------------- raw sockets, loopback only


def _raw(
    method: str,
    port: int,
    local_port: int,
    *,
    transport: str = "UDP",
    extra: str = "",
    body: bytes = b"",
    call_id: str = "raw-1",
) -> bytes:
    head = (
        f"{method} sip:ep@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK{call_id}x;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:raw@127.0.0.1>;tag=r1\r\n"
        f"To: <sip:ep@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class UdpPeer:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    async def ask(self, data: bytes, port: int) -> SipResponse:
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(self.sock, data, (LOOPBACK, port))
        reply = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), LIMIT)
        msg = parse_message(reply)
        assert isinstance(msg, SipResponse)
        return msg

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def udp_peer() -> Any:
    peer = UdpPeer()
    yield peer
    peer.close()


async def test_options_is_answered_by_the_endpoint(
    endpoints: EndpointFactory, udp_peer: UdpPeer
) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler)
    resp = await udp_peer.ask(_raw("OPTIONS", port_of(ep), udp_peer.port), port_of(ep))
    assert resp.status == 200
    assert "MESSAGE" in resp.allow and "SUBSCRIBE" in resp.allow
    assert resp.accept is not None and any(a.mime == "application/pidf+xml" for a in resp.accept)
    assert "Supported" in resp.headers
    assert resp.to_tag is not None
    via = resp.top_via
    assert via is not None and via.rport == udp_peer.port
    assert via.received == LOOPBACK  # RFC 3581 §4: even when equal to sent-by
    assert handler.seen == []


@pytest.mark.parametrize(("method", "status"), [("REFER", 405), ("FOO", 501)])
async def test_unsupported_methods(
    endpoints: EndpointFactory, udp_peer: UdpPeer, method: str, status: int
) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler)
    resp = await udp_peer.ask(_raw(method, port_of(ep), udp_peer.port), port_of(ep))
    assert resp.status == status
    assert "MESSAGE" in resp.allow
    assert handler.seen == []


async def test_unparseable_request_gets_a_stateless_400(
    endpoints: EndpointFactory, udp_peer: UdpPeer
) -> None:
    ep = await endpoints()
    bad = _raw("MESSAGE", port_of(ep), udp_peer.port).replace(
        b"CSeq: 1 MESSAGE", b"CSeq: 1 OPTIONS"
    )
    resp = await udp_peer.ask(bad, port_of(ep))
    assert resp.status == 400
    assert resp.call_id == "raw-1"
    assert ep.stats.parse_errors == 1


async def test_oversize_datagram_gets_513(endpoints: EndpointFactory, udp_peer: UdpPeer) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler, max_message_size=1500)
    big = _raw(
        "MESSAGE",
        port_of(ep),
        udp_peer.port,
        extra="Content-Type: text/plain\r\n",
        body=b"a" * 3000,
    )
    resp = await udp_peer.ask(big, port_of(ep))
    assert resp.status == 513
    assert handler.seen == []


async def test_handler_errors_become_final_responses(
    endpoints: EndpointFactory, udp_peer: UdpPeer
) -> None:
    handler = Handler()

    def crash(req: IncomingRequest) -> None:
        raise RuntimeError("boom")

    async def refuse(req: IncomingRequest) -> None:
        await asyncio.sleep(0)
        raise MappingError("no such user", sip_status=404, xmpp_condition="item-not-found")

    handler.behaviours["MESSAGE"] = crash
    handler.behaviours["PUBLISH"] = refuse
    ep = await endpoints(handler=handler)
    extra = "Content-Type: text/plain\r\n"
    resp = await udp_peer.ask(
        _raw("MESSAGE", port_of(ep), udp_peer.port, extra=extra, body=b"hi"), port_of(ep)
    )
    assert resp.status == 500
    resp = await udp_peer.ask(
        _raw("PUBLISH", port_of(ep), udp_peer.port, call_id="raw-2"), port_of(ep)
    )
    assert resp.status == 404
    assert ep.stats.handler_errors == 1


async def test_second_final_response_is_refused(
    endpoints: EndpointFactory, udp_peer: UdpPeer
) -> None:
    handler = Handler()
    outcomes: list[bool] = []

    def twice(req: IncomingRequest) -> None:
        outcomes.append(req.reply(200))
        outcomes.append(req.reply(486))

    handler.behaviours["MESSAGE"] = twice
    ep = await endpoints(handler=handler)
    resp = await udp_peer.ask(_raw("MESSAGE", port_of(ep), udp_peer.port), port_of(ep))
    assert resp.status == 200
    assert outcomes == [True, False]


async def test_draining_endpoint_answers_503(endpoints: EndpointFactory, udp_peer: UdpPeer) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler)
    ep.begin_drain()
    resp = await udp_peer.ask(_raw("MESSAGE", port_of(ep), udp_peer.port), port_of(ep))
    assert resp.status == 503 and resp.headers.get("Retry-After") == "30"
    assert handler.seen == []


async def _tcp_open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), LIMIT)


async def _read_response(reader: asyncio.StreamReader) -> SipResponse:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIMIT)
    msg = parse_message(head)
    assert isinstance(msg, SipResponse)
    if msg.content_length:
        await asyncio.wait_for(reader.readexactly(msg.content_length), LIMIT)
    return msg


async def test_tcp_keepalive_and_reply_on_the_same_connection(endpoints: EndpointFactory) -> None:
    ep = await endpoints()
    port = port_of(ep, "tcp")
    reader, writer = await _tcp_open(port)
    try:
        writer.write(b"\r\n\r\n")  # RFC 5626 §3.5.1 ping
        assert await asyncio.wait_for(reader.readexactly(2), LIMIT) == b"\r\n"
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(_raw("OPTIONS", port, local_port, transport="TCP"))
        resp = await _read_response(reader)
        assert resp.status == 200
        assert len([c for c in ep.connections.connections() if not c.outbound]) == 1
    finally:
        writer.close()


async def test_oversize_tcp_message_closes_the_connection(endpoints: EndpointFactory) -> None:
    handler = Handler()
    ep = await endpoints(handler=handler, max_message_size=1500)
    port = port_of(ep, "tcp")
    reader, writer = await _tcp_open(port)
    try:
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(_raw("MESSAGE", port, local_port, transport="TCP", body=b"b" * 3000))
        assert await asyncio.wait_for(reader.read(), LIMIT) == b""  # closed, no answer
    finally:
        writer.close()
    assert handler.seen == []
    # the listener still serves other clients
    reader, writer = await _tcp_open(port)
    try:
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(_raw("OPTIONS", port, local_port, transport="TCP", call_id="after"))
        assert (await _read_response(reader)).status == 200
    finally:
        writer.close()


async def test_idle_connections_are_closed(endpoints: EndpointFactory) -> None:
    ep = await endpoints(idle_timeout=0.4)
    reader, writer = await _tcp_open(port_of(ep, "tcp"))
    try:
        assert await asyncio.wait_for(reader.read(), LIMIT) == b""
    finally:
        writer.close()
    assert len(ep.connections) == 0


async def test_bind_failure_names_the_address() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((LOOPBACK, 0))
        port = holder.getsockname()[1]
        ep = SipEndpoint(sip_config(ListenerConfig(Transport.UDP, LOOPBACK, port)), Handler())
        with pytest.raises(OSError, match=f"127.0.0.1:{port}"):
            await ep.start()


async def _until(cond: Callable[[], bool]) -> None:
    while not cond():
        await asyncio.sleep(0.02)

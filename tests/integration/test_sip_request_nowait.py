"""`SipEndpoint.request_nowait` (issue 11: client transactions without a task) against a
real UDP peer on loopback: a raw socket that answers, stays silent or answers late.

Timers use T1 = 50 ms (Timer F = 3.2 s). Every wait is bounded and waits for a condition.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
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
from tests.harness import LOOPBACK
from tests.harness.ports import free_port

pytestmark = pytest.mark.integration

T1 = 0.05
LIMIT = 30.0
_BRANCH = re.compile(rb"branch=z9hG4bK[-\w]+")


class _Nobody:
    def handle(self, request: IncomingRequest) -> None:
        request.reply(500)


class Peer:
    """A raw UDP socket: records each datagram; answers per `plan` (for the 1st, 2nd, ...
    datagram: a status to answer, several in turn, or None to stay silent)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.got: list[bytes] = []
        self.plan: list[int | tuple[int, ...] | None] = []
        self.arrived = asyncio.Event()
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except BlockingIOError:
                return
            self.got.append(data)
            self.arrived.set()
            i = len(self.got) - 1
            todo = self.plan[i] if i < len(self.plan) else None
            for status in (todo,) if isinstance(todo, int) else todo or ():
                self.sock.sendto(answer(data, status), addr)

    async def wait_for(self, n: int) -> None:
        async def until() -> None:
            while len(self.got) < n:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(until(), LIMIT)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


def answer(request: bytes, status: int) -> bytes:
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    keep = [
        h for h in head[1:] if h.split(b":", 1)[0] in (b"Via", b"From", b"To", b"Call-ID", b"CSeq")
    ]
    lines = [f"SIP/2.0 {status} Whatever".encode(), *keep, b"Content-Length: 0"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    lc = ListenerConfig(Transport.UDP, LOOPBACK, free_port())
    ep = SipEndpoint(SipConfig(listeners=(lc,), timers=SipTimers(t1=T1, t2=4.0, t4=5.0)), _Nobody())
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    p = Peer()
    try:
        yield p
    finally:
        p.close()


def notify(port: int, body: bytes = b"<presence/>", call_id: str = "nw-1") -> SipRequest:
    items = [
        ("From", "<sip:juliet@localhost>;tag=j1"),
        ("To", f"<sip:w1@{LOOPBACK}>;tag=w1"),
        ("Call-ID", call_id),
        ("CSeq", "3 NOTIFY"),
        ("Event", "presence"),
        ("Subscription-State", "active;expires=600"),
        ("Content-Type", "application/pidf+xml"),
    ]
    return SipRequest("NOTIFY", parse_uri(f"sip:w1@{LOOPBACK}:{port}"), Headers(items), body)


Outcome = tuple[SipResponse | None, Exception | None]


class Outcomes:
    def __init__(self) -> None:
        self.got: list[Outcome] = []
        self.event = asyncio.Event()
        self.inside = False  # set while request_nowait runs: the callback must not run then

    def __call__(self, response: SipResponse | None, exc: Exception | None) -> None:
        assert not self.inside, "callback ran from within request_nowait"
        self.got.append((response, exc))
        self.event.set()

    async def one(self) -> Outcome:
        await asyncio.wait_for(self.event.wait(), LIMIT)
        assert len(self.got) == 1
        return self.got[0]


def start(ep: SipEndpoint, req: SipRequest, target: Target, **kw: Any) -> Outcomes:
    out = Outcomes()
    out.inside = True
    ep.request_nowait(req, target, out, **kw)
    out.inside = False
    return out


def udp(port: int, host: str = LOOPBACK) -> Target:
    return Target("udp", host, host, port)


async def test_final_response_reaches_the_callback(endpoint: SipEndpoint, peer: Peer) -> None:
    peer.plan = [200]
    out = start(endpoint, notify(peer.port), udp(peer.port))
    response, exc = await out.one()
    assert exc is None and response is not None and response.status == 200
    assert response.cseq is not None and response.cseq.seq == 3
    assert len(peer.got) == 1
    sent = parse_message(peer.got[0])
    assert isinstance(sent, SipRequest)
    via = sent.top_via
    listener = endpoint.listener("udp")
    assert listener is not None
    assert via is not None and via.rfc3261_branch and via.port == listener.local[1]
    assert via.rport_requested
    assert sent.headers.get("Max-Forwards") is not None
    await asyncio.sleep(0)  # the transaction is forgotten by the endpoint once answered
    assert not endpoint.ua.clients


async def test_same_bytes_as_request_but_the_branch(endpoint: SipEndpoint, peer: Peer) -> None:
    peer.plan = [200, 200]
    first = await asyncio.wait_for(endpoint.request(notify(peer.port), udp(peer.port)), LIMIT)
    out = start(endpoint, notify(peer.port), udp(peer.port))
    second, _ = await out.one()
    assert first.status == 200 and second is not None and second.status == 200
    a, b = (_BRANCH.sub(b"branch=X", d) for d in peer.got)
    assert a == b


async def test_udp_retransmits_until_answered(endpoint: SipEndpoint, peer: Peer) -> None:
    """Timer E (RFC 3261 §17.1.2.2): the first two copies are ignored, the third gets a 481."""
    peer.plan = [None, None, 481]
    out = start(endpoint, notify(peer.port), udp(peer.port))
    response, exc = await out.one()
    assert exc is None and response is not None and response.status == 481
    assert len(peer.got) >= 3
    assert len(set(peer.got[:3])) == 1  # retransmissions are the very same bytes
    assert endpoint.stats.retransmissions >= 2


async def test_timer_f_reports_a_timeout(endpoint: SipEndpoint, peer: Peer) -> None:
    out = start(endpoint, notify(peer.port), udp(peer.port))
    response, exc = await out.one()
    assert response is None
    assert isinstance(exc, TransactionTimeout)
    assert str(exc) == "no final response (NOTIFY)"
    assert len(peer.got) >= 5  # E at T1, 2T1, 4T1, ... until F = 64*T1
    assert len(set(peer.got)) == 1


async def test_provisional_then_final(endpoint: SipEndpoint, peer: Peer) -> None:
    """A 1xx goes to no callback; the final response that follows does."""
    peer.plan = [(100, 180, 202)]
    out = start(endpoint, notify(peer.port), udp(peer.port))
    response, exc = await out.one()
    assert exc is None and response is not None and response.status == 202


async def test_errors_come_through_the_callback_as_request_raises_them(
    endpoint: SipEndpoint,
) -> None:
    cases: list[tuple[Target, dict[str, Any]]] = [
        (Target("udp", "example.com", None, 5060), {}),  # no address: resolve it first
        (udp(free_port()), {"allow_tcp": False}),  # too large for UDP, no TCP allowed
        (Target("tcp", LOOPBACK, LOOPBACK, free_port()), {}),  # connection refused (task)
    ]
    big = b"x" * 70000
    for target, kw in cases:
        req = notify(target.port, big if kw else b"<presence/>")
        with pytest.raises(Exception) as raised:
            await asyncio.wait_for(endpoint.request(req, target, **kw), LIMIT)
        out = start(endpoint, req, target, **kw)
        response, exc = await out.one()
        assert response is None and exc is not None
        assert type(exc) is type(raised.value)
        assert str(exc) == str(raised.value)
    assert isinstance(raised.value, TransportFailure) and raised.value.connect_failed


async def test_too_large_is_message_too_large(endpoint: SipEndpoint) -> None:
    out = start(endpoint, notify(5060, b"x" * 70000), udp(free_port()), allow_tcp=False)
    _, exc = await out.one()
    assert isinstance(exc, MessageTooLarge)


async def test_stop_fails_what_is_in_flight(peer: Peer) -> None:
    lc = ListenerConfig(Transport.UDP, LOOPBACK, free_port())
    ep = SipEndpoint(SipConfig(listeners=(lc,), timers=SipTimers(t1=T1, t2=4.0, t4=5.0)), _Nobody())
    await ep.start()
    out = start(ep, notify(peer.port), udp(peer.port))
    await peer.wait_for(1)
    await ep.stop()
    response, exc = await out.one()
    assert response is None and isinstance(exc, TransportFailure)
    assert str(exc) == "endpoint stopped"


async def test_a_burst_of_transactions_all_complete(endpoint: SipEndpoint, peer: Peer) -> None:
    """200 transactions started in one pass (a fan-out): each its own branch, each answered."""
    peer.plan = [200] * 200
    outs = [
        start(endpoint, notify(peer.port, call_id=f"nw-{i}"), udp(peer.port)) for i in range(200)
    ]
    results = [await o.one() for o in outs]
    assert all(r is not None and r.status == 200 and e is None for r, e in results)
    assert [r.call_id for r, _ in results if r is not None] == [f"nw-{i}" for i in range(200)]
    branches = {_BRANCH.search(d).group(0) for d in peer.got}  # type: ignore[union-attr]
    assert len(branches) == 200

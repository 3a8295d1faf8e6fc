"""The endpoint reads the queued UDP datagrams before its timers fire (issue 11, fan-out):
a 200 that reached the socket while the event loop was busy ends its client transaction
instead of Timer E retransmitting a NOTIFY already answered (RFC 3261 §17.1.2.2).

The peer is a real UDP socket answering 200 from its own thread, so it answers while the
test holds the gateway's event loop; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.sip.locate import Target
from gateway.sip.message import SipResponse
from gateway.sip.transport.endpoint import TIMER_READ_LIMIT, SipEndpoint
from gateway.sip.transport.udp import READ_BATCH
from tests.harness import LOOPBACK
from tests.harness.ports import free_port
from tests.integration.test_sip_request_nowait import _Nobody, answer, notify

pytestmark = pytest.mark.integration

T1 = 0.1
LIMIT = 30.0
N = 2 * READ_BATCH + 8  # more than one readiness event reads
assert N <= TIMER_READ_LIMIT


class ThreadPeer:
    """Answers 200 from a thread; counts what it received. The first `batch` datagrams are
    answered together once all arrived, in reverse order: the 200s the gateway's own read
    (READ_BATCH per readiness event) finds first are not those of the earliest Timer E."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.held: list[tuple[bytes, tuple[str, int]]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # no drop
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.got = 0
        self.answered = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.answered:
                self.got += 1
            if self.got > self.batch:
                self.sock.sendto(answer(data, 200), addr)
                continue
            self.held.append((data, addr))
            if self.got == self.batch:
                for held, to in reversed(self.held):
                    self.sock.sendto(answer(held, 200), to)
                with self.answered:
                    self.answered.notify_all()

    def wait_answered(self) -> bool:
        with self.answered:
            return self.answered.wait_for(lambda: self.got >= self.batch, LIMIT)

    def close(self) -> None:
        self._stop = True
        self._thread.join(LIMIT)
        self.sock.close()


@pytest.fixture
def peer() -> Iterator[ThreadPeer]:
    p = ThreadPeer(N)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
async def endpoint() -> AsyncIterator[SipEndpoint]:
    lc = ListenerConfig(Transport.UDP, LOOPBACK, free_port())
    ep = SipEndpoint(SipConfig(listeners=(lc,), timers=SipTimers(t1=T1, t2=4.0, t4=5.0)), _Nobody())
    await ep.start()
    try:
        yield ep
    finally:
        await ep.stop()


async def test_responses_queued_while_the_loop_was_busy_stop_timer_e(
    endpoint: SipEndpoint, peer: ThreadPeer
) -> None:
    finals: list[SipResponse | None] = []
    done = asyncio.Event()

    def on_final(response: SipResponse | None, exc: Exception | None) -> None:
        assert exc is None
        finals.append(response)
        if len(finals) == N:
            done.set()

    target = Target("udp", LOOPBACK, LOOPBACK, peer.port)
    for i in range(N):
        endpoint.request_nowait(notify(peer.port, call_id=f"busy-{i}"), target, on_final)
    await asyncio.sleep(0)  # the deferred drain sends the N NOTIFYs
    sent_at = time.monotonic()
    assert endpoint.stats.requests_out == N
    # Hold the loop (as a fan-out burst does) until every 200 is queued on the endpoint's
    # socket and Timer E of every NOTIFY is due.
    assert peer.wait_answered()
    time.sleep(max(0.0, sent_at + 2 * T1 - time.monotonic()))
    await asyncio.wait_for(done.wait(), LIMIT)
    assert all(r is not None and r.status == 200 for r in finals)
    assert endpoint.stats.retransmissions == 0
    assert peer.got == N


async def test_the_timer_still_retransmits_what_is_unanswered(endpoint: SipEndpoint) -> None:
    """Reading first does not swallow Timer E: a silent peer gets the retransmissions."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind((LOOPBACK, 0))
    silent.settimeout(LIMIT)
    try:
        port = int(silent.getsockname()[1])
        endpoint.request_nowait(
            notify(port), Target("udp", LOOPBACK, LOOPBACK, port), lambda r, e: None
        )

        async def until_retransmitted() -> None:
            while endpoint.stats.retransmissions < 2:
                await asyncio.sleep(T1 / 2)

        await asyncio.wait_for(until_retransmitted(), LIMIT)
        first, second = silent.recv(65535), silent.recv(65535)
        assert first == second
    finally:
        silent.close()

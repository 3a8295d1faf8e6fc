"""`request_nowait` sends a burst in chunks of SEND_CHUNK as it is started (issue 11), with
no callback run from within the call, every request once and in the order started.

The peer is a real UDP socket on loopback (Linux delivers a loopback datagram to the
receiving socket within `sendto`); every wait is bounded."""

from __future__ import annotations

import asyncio
import socket

from gateway.sip.locate import Target
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.transport.endpoint import SEND_CHUNK, SipEndpoint
from tests.harness import LOOPBACK
from tests.integration.test_sip_request_nowait import answer, endpoint, notify

__all__ = ["endpoint"]  # the fixture

LIMIT = 30.0


def queued(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65535))
        except BlockingIOError:
            return got


async def test_a_burst_leaves_in_chunks_while_it_is_started(endpoint: SipEndpoint) -> None:
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    peer.bind((LOOPBACK, 0))
    peer.setblocking(False)
    port = int(peer.getsockname()[1])
    target = Target("udp", LOOPBACK, LOOPBACK, port)
    finals: list[SipResponse | None] = []
    inside = False
    n = 2 * SEND_CHUNK + 5

    def on_final(response: SipResponse | None, exc: Exception | None) -> None:
        assert not inside, "callback ran from within request_nowait"
        assert exc is None
        finals.append(response)

    try:
        sent: list[bytes] = []
        for i in range(n):
            inside = True
            endpoint.request_nowait(notify(port, call_id=f"chunk-{i}"), target, on_final)
            inside = False
            sent += queued(peer)
            # the chunk leaves with the request that completes it, not at the end of the turn
            assert len(sent) == (i + 1) // SEND_CHUNK * SEND_CHUNK
        await asyncio.sleep(0)  # the rest with the deferred drain
        sent += queued(peer)
        assert len(sent) == n
        ids = []
        for data in sent:
            req = parse_message(data)
            assert isinstance(req, SipRequest)
            ids.append(req.headers.get("Call-ID"))
            peer.sendto(answer(data, 200), endpoint.listener("udp").local)  # type: ignore[union-attr]
        assert ids == [f"chunk-{i}" for i in range(n)]

        async def all_final() -> None:
            while len(finals) < n:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_final(), LIMIT)
        assert all(r is not None and r.status == 200 for r in finals)
        assert endpoint.stats.requests_out == n and endpoint.stats.retransmissions == 0
    finally:
        peer.close()

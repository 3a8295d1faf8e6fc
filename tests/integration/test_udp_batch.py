"""UdpListener reads every queued datagram per readiness event, bounded by READ_BATCH
(loopback sockets only)."""

from __future__ import annotations

import asyncio
import select
import socket

import pytest

from gateway.config import ListenerConfig, Transport
from gateway.sip.transport.udp import READ_BATCH, UdpListener

Address = tuple[str, int]


async def test_one_readiness_event_reads_the_queued_datagrams_up_to_the_bound() -> None:
    got: list[tuple[bytes, Address]] = []
    listener = UdpListener(
        ListenerConfig(Transport.UDP, "127.0.0.1", 0), lambda d, s, _l: got.append((d, s))
    )
    await listener.start()
    loop = asyncio.get_running_loop()
    assert listener._sock is not None
    loop.remove_reader(listener._sock.fileno())  # the test plays the event loop
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    try:
        n = READ_BATCH + 6
        for i in range(n):
            client.sendto(b"d%d" % i, listener.local)
        assert select.select([listener._sock], [], [], 5)[0]
        listener._read_ready()
        assert [d for d, _ in got] == [b"d%d" % i for i in range(READ_BATCH)]
        assert {s for _, s in got} == {client.getsockname()}
        listener._read_ready()
        assert len(got) == n  # the rest on the next event; then nothing blocks
        listener._read_ready()
        assert len(got) == n
    finally:
        client.close()
        listener.close()


async def test_send_after_close_raises_and_errors_do_not() -> None:
    listener = UdpListener(ListenerConfig(Transport.UDP, "127.0.0.1", 0), lambda *_: None)
    await listener.start()
    listener.send(b"x", ("127.0.0.1", 9))  # nobody listens: lost like on the network
    listener.close()
    with pytest.raises(OSError):
        listener.send(b"x", ("127.0.0.1", 9))

"""UDP listener (RFC 3261 §18): one datagram is one message.

The listener only moves bytes: each datagram goes to `on_datagram(data, source,
listener)`; the endpoint parses it. Send errors (ICMP unreachable reported on a later
call, no route in a namespace without one) are logged, never raised into the loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from gateway.config import ListenerConfig

__all__ = ["RCVBUF_BYTES", "SNDBUF_BYTES", "DatagramHandler", "UdpListener"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address, "UdpListener"], None]

# Socket buffers asked for (issue 11, docs/performance.md): the Linux default receive
# buffer (208 KB) overflows within a few ms of an event-loop stall at thousands of
# MESSAGEs/s, and every lost request costs the sender a T1 retransmission. The kernel caps
# the value at net.core.rmem_max / wmem_max (raise those sysctls to get more).
RCVBUF_BYTES = 4 * 1024 * 1024
SNDBUF_BYTES = 1024 * 1024


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        source = (str(addr[0]), int(addr[1]))
        self.listener.on_datagram(data, source, self.listener)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp send/receive error on %s: %s", self.listener.name, exc)


class UdpListener:
    """One bound UDP socket, used both to receive and to send (symmetric, RFC 3581)."""

    transport_name = "udp"

    def __init__(self, config: ListenerConfig, on_datagram: DatagramHandler) -> None:
        self.config = config
        self.on_datagram = on_datagram
        self._transport: asyncio.DatagramTransport | None = None
        self.local: Address = (config.address, config.port)

    @property
    def name(self) -> str:
        return f"udp:{self.local[0]}:{self.local[1]}"

    @property
    def family6(self) -> bool:
        return ":" in self.config.address

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), local_addr=(self.config.address, self.config.port)
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot bind udp listener {self.config.address}:{self.config.port}: "
                f"{exc.strerror or exc}",
            ) from exc
        self._transport = transport
        _size_buffers(transport.get_extra_info("socket"), self.name)
        sock = transport.get_extra_info("sockname")
        self.local = (str(sock[0]), int(sock[1]))

    def send(self, data: bytes, dest: Address) -> None:
        if self._transport is None or self._transport.is_closing():
            raise OSError(f"{self.name} is closed")
        self._transport.sendto(data, dest)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _size_buffers(sock: socket.socket | None, name: str) -> None:
    if sock is None:
        return
    for opt, size in ((socket.SO_RCVBUF, RCVBUF_BYTES), (socket.SO_SNDBUF, SNDBUF_BYTES)):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError as exc:  # not fatal: the default buffer still works
            log.warning("%s: cannot set socket buffer to %d bytes: %s", name, size, exc)
    log.debug(
        "%s: receive buffer %d, send buffer %d bytes",
        name,
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
    )

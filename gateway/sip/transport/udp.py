"""UDP listener (RFC 3261 §18): one datagram is one message.

The listener only moves bytes: each datagram goes to `on_datagram(data, source,
listener)`; the endpoint parses it. Send errors (ICMP unreachable reported on a later
call, no route in a namespace without one) are logged, never raised into the loop.

The socket is non-blocking and read with `loop.add_reader`: every readiness event reads
the datagrams already queued (up to `READ_BATCH`), not one per event-loop iteration as an
asyncio datagram transport does, so the handlers of a burst run in one loop turn and
what they write to XMPP shares one component write and one confirmation ping (issue 11).
Sends go straight to `sendto`; a full send buffer drops the datagram like the network
would (the transaction layer's retransmissions cover it, RFC 3261 §17).

STUN shares the port (RFC 5626 §8): a datagram whose first two bits are zero (and that is
not CR/LF/space, which SIP allows before a message) goes to `gateway.sip.stun.answer`
instead of SIP; a Binding request is answered from here, anything else is dropped with a
debug line ("stun dropped"), never parsed as SIP.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from collections.abc import Callable

from gateway.config import ListenerConfig
from gateway.logs import event
from gateway.sip import stun

__all__ = ["RCVBUF_BYTES", "READ_BATCH", "SNDBUF_BYTES", "DatagramHandler", "UdpListener"]

log = logging.getLogger(__name__)

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address, "UdpListener"], None]

# Socket buffers asked for (issue 11, docs/performance.md): the Linux default receive
# buffer (208 KB) overflows within a few ms of an event-loop stall at thousands of
# MESSAGEs/s, and every lost request costs the sender a T1 retransmission. The kernel caps
# the value at net.core.rmem_max / wmem_max (raise those sysctls to get more).
RCVBUF_BYTES = 4 * 1024 * 1024
SNDBUF_BYTES = 1024 * 1024
# Datagrams read per readiness event at most, so that one busy socket cannot starve the
# rest of the loop (timers, the XMPP stream, other listeners).
READ_BATCH = 64
_MAX_DATAGRAM = 65535
# getsockopt(SOL_SOCKET, SO_MEMINFO) (Linux, include/uapi/linux/sock_diag.h): u32 values
# rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem, backlog, drops.
_SO_MEMINFO = 55
_MEMINFO_VARS = 9


class UdpListener:
    """One bound UDP socket, used both to receive and to send (symmetric, RFC 3581)."""

    transport_name = "udp"

    def __init__(self, config: ListenerConfig, on_datagram: DatagramHandler) -> None:
        self.config = config
        self.on_datagram = on_datagram
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.local: Address = (config.address, config.port)

    @property
    def name(self) -> str:
        return f"udp:{self.local[0]}:{self.local[1]}"

    @property
    def family6(self) -> bool:
        return ":" in self.config.address

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        address, port = self.config.address, self.config.port
        try:
            infos = await loop.getaddrinfo(
                address, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind(sockaddr)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot bind udp listener {address}:{port}: {exc.strerror or exc}",
            ) from exc
        _size_buffers(sock, self.name)
        name = sock.getsockname()
        self.local = (str(name[0]), int(name[1]))
        self._sock, self._loop = sock, loop
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        self.read_pending(READ_BATCH)

    def read_pending(self, limit: int) -> int:
        """Feed up to `limit` datagrams already queued on the socket to `on_datagram`
        (without waiting for the next readiness event); how many were read. The endpoint
        calls it before firing its timers, so that a response already received stops a
        retransmission (Timer E/A) instead of racing it."""
        sock = self._sock
        n = 0
        for _ in range(limit):
            if sock is None:  # closed by a handler
                break
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error queued on the socket
                log.debug("udp receive error on %s: %s", self.name, exc)
                continue
            n += 1
            if stun.is_stun(data):
                self._stun(data, (str(addr[0]), int(addr[1])))
                continue
            try:
                self.on_datagram(data, (str(addr[0]), int(addr[1])), self)
            except Exception:  # a bug in one message must not stop the reading
                log.exception("udp datagram handler failed on %s", self.name)
            sock = self._sock
        return n

    def backlog(self) -> float:
        """Share of the receive buffer in use (0..1): datagrams waiting for us (Linux
        SO_MEMINFO: rmem_alloc / rcvbuf; 0.0 where it cannot be read). Overload control
        reads it (issue 27): a full buffer means requests waiting for seconds, then lost."""
        if self._sock is None:
            return 0.0
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4 * _MEMINFO_VARS)
        except OSError:
            return 0.0
        rmem_alloc, rcvbuf = struct.unpack_from("2I", raw)
        return rmem_alloc / rcvbuf if rcvbuf else 0.0

    def drops(self) -> int:
        """Datagrams the kernel dropped on this socket because its buffer was full."""
        if self._sock is None:
            return 0
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, 4 * _MEMINFO_VARS)
        except OSError:
            return 0
        return int(struct.unpack_from(f"{_MEMINFO_VARS}I", raw)[_MEMINFO_VARS - 1])

    def _stun(self, data: bytes, source: Address) -> None:
        """Answer a STUN Binding request (RFC 5626 §8 keep-alive); drop anything else."""
        try:
            reply = stun.answer(data, source)
        except stun.StunError as exc:
            event(log, logging.DEBUG, "stun dropped", listener=self.name,
                  peer=f"{source[0]}:{source[1]}", error=str(exc))  # fmt: skip
            return
        self.send(reply, source)

    def send(self, data: bytes, dest: Address) -> None:
        if self._sock is None:
            raise OSError(f"{self.name} is closed")
        try:
            self._sock.sendto(data, dest)
        except (BlockingIOError, InterruptedError):
            log.debug("udp send buffer full on %s: datagram to %s dropped", self.name, dest)
        except OSError as exc:
            if exc.errno in (errno.EBADF, errno.ENOTSOCK):
                raise
            # ICMP errors reported on a later call, no route: the datagram is lost, as it
            # would be on the network; retransmissions and Timer B/F decide (§17).
            log.debug("udp send error on %s to %s: %s", self.name, dest, exc)

    def close(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None


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

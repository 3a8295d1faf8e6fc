"""TCP and TLS (RFC 3261 §18.3): listeners, outgoing connections and the connection table.

Every connection, accepted or opened, is one `StreamConnection` keyed in the
`ConnectionTable` by (transport, peer address, peer port). Responses find the
connection their request came in on by its source address, and requests to a peer
reuse an open connection to it (§18.1.1, §18.2.2). Bytes are cut into messages by
`gateway.sip.framing.StreamFramer`, whose buffer is bounded by the maximum message
size; a framing error closes the connection (a stream cannot be resynchronised).
CRLFCRLF keep-alive pings are answered with CRLF (RFC 5626 §3.5.1).

Idle connections (no bytes either way for `idle_timeout`, 300 s by default) are closed
by one sweep callback per table, re-armed only while connections exist.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import logging
import ssl
import struct
import termios
from collections.abc import Callable
from typing import Any, Protocol, cast

from gateway.config import ListenerConfig
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.framing import Frame, KeepAlivePing, StreamFramer

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "ConnKey",
    "Connection",
    "ConnectionTable",
    "StreamConnection",
    "StreamListener",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]
ConnKey = tuple[str, str, int]  # (transport, peer ip, peer port)

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds without traffic before a connection is closed
DEFAULT_CONNECT_TIMEOUT = 32.0  # TCP connect + TLS handshake (64*T1, like Timer F)
_ids = itertools.count(1)
# Transports whose connections only the peer opens (RFC 7118: a WebSocket client connects
# to us; a request for it goes over its open connection or fails).
INBOUND_ONLY = frozenset({"ws", "wss"})


def next_connection_id() -> int:
    """A fresh flow id, unique across every connection kind of the process."""
    return next(_ids)


class Connection(Protocol):
    """What the table and the endpoint need of a connection (TCP/TLS or WebSocket)."""

    id: int
    transport_name: str
    peer: Address
    local: Address
    peercert: dict[str, Any] | None
    last_activity: float
    closed: bool

    @property
    def key(self) -> ConnKey: ...

    @property
    def outbound(self) -> bool: ...

    @property
    def listener_name(self) -> str: ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection; `id` identifies the flow (RFC 5626) for its lifetime."""

    def __init__(
        self, table: ConnectionTable, transport_name: str, listener: StreamListener | None
    ) -> None:
        self.table = table
        self.transport_name = transport_name
        self.listener = listener  # None for connections we opened
        self.id = next_connection_id()
        self.framer = StreamFramer(table.max_message_size)
        self.peer: Address = ("", 0)
        self.local: Address = ("", 0)
        self.peercert: dict[str, Any] | None = None
        self.last_activity = table.clock()
        self.closed = False
        self._transport: asyncio.Transport | None = None

    @property
    def key(self) -> ConnKey:
        return (self.transport_name, self.peer[0], self.peer[1])

    @property
    def outbound(self) -> bool:
        return self.listener is None

    @property
    def listener_name(self) -> str:
        return "outbound" if self.listener is None else self.listener.name

    def __repr__(self) -> str:
        return f"<{self.transport_name} #{self.id} {self.local} <-> {self.peer}>"

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's is not an asyncio.Transport subclass: no isinstance)
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.peer = (str(peer[0]), int(peer[1]))
        self.local = (str(sock[0]), int(sock[1]))
        self.peercert = transport.get_extra_info("peercert")
        self.table.add(self)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.table.clock()
        try:
            events = self.framer.feed(data)
        except RemoteProtocolError as exc:
            self.table.on_framing_error(self, exc)
            self.close()
            return
        for event in events:
            if self.closed:
                return
            if isinstance(event, Frame):
                self.table.on_frame(self, event.data)
            elif isinstance(event, KeepAlivePing):
                self.write(b"\r\n")  # RFC 5626 §3.5.1 pong
        if self.framer.error is not None and not self.closed:
            self.table.on_framing_error(self, self.framer.error)
            self.close()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._transport = None
        self.table.remove(self)
        log.debug("connection closed %r: %s", self, exc or "eof")

    # -- use ----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise OSError(f"connection {self!r} is closed")
        self.last_activity = self.table.clock()
        self._transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def backlog(self) -> int:
        """Bytes the kernel received on this connection and we have not read yet
        (FIONREAD; 0 when unknown). Overload control reads it (issue 27)."""
        sock = None if self._transport is None else self._transport.get_extra_info("socket")
        if sock is None:
            return 0
        try:
            raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        return max(0, int(struct.unpack("i", raw)[0]))


FrameHandler = Callable[[Connection, bytes], None]
FramingErrorHandler = Callable[[Connection, RemoteProtocolError], None]


class ConnectionTable:
    """Open stream connections by (transport, peer); outgoing connection set-up."""

    def __init__(
        self,
        *,
        on_frame: FrameHandler,
        on_framing_error: FramingErrorHandler,
        max_message_size: int,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        clock: Callable[[], float],
    ) -> None:
        self.on_frame = on_frame
        self.on_framing_error = on_framing_error
        self.max_message_size = max_message_size
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.clock = clock
        self._conns: dict[ConnKey, Connection] = {}
        self._pending: dict[ConnKey, asyncio.Future[StreamConnection]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.opened = 0  # outgoing connections established
        self.accepted = 0  # incoming connections accepted

    def __len__(self) -> int:
        return len(self._conns)

    def connections(self) -> list[Connection]:
        return list(self._conns.values())

    def backlog(self) -> int:
        """Unread bytes over every TCP/TLS connection (`StreamConnection.backlog`)."""
        return sum(c.backlog() for c in self._conns.values() if isinstance(c, StreamConnection))

    def get(self, transport: str, addr: Address) -> Connection | None:
        conn = self._conns.get((transport, addr[0], addr[1]))
        return None if conn is None or conn.closed else conn

    def add(self, conn: Connection) -> None:
        self._conns[conn.key] = conn
        if conn.outbound:
            self.opened += 1
        else:
            self.accepted += 1
        log.debug("connection open %r", conn)
        self._arm_sweep()

    def remove(self, conn: Connection) -> None:
        if self._conns.get(conn.key) is conn:
            del self._conns[conn.key]

    async def connect(
        self,
        transport: str,
        addr: Address,
        *,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Connection:
        """An open connection to `addr`: an existing one, or a new one. Concurrent
        callers share one attempt. Raises OSError (ssl.SSLError for TLS failures);
        for ws/wss, OSError when the client's connection is gone (never opened by us)."""
        existing = self.get(transport, addr)
        if existing is not None:
            return existing
        if transport in INBOUND_ONLY:
            raise OSError(f"no {transport} connection from {addr[0]}:{addr[1]} (client gone)")
        key: ConnKey = (transport, addr[0], addr[1])
        pending = self._pending.get(key)
        if pending is None:
            pending = asyncio.ensure_future(
                self._open(transport, addr, ssl_context, server_hostname)
            )
            self._pending[key] = pending
            pending.add_done_callback(lambda _f: self._pending.pop(key, None))
        return await asyncio.shield(pending)

    async def _open(
        self,
        transport: str,
        addr: Address,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> StreamConnection:
        loop = asyncio.get_running_loop()
        if transport == "tls" and ssl_context is None:
            raise ValueError("tls needs an ssl context")
        kwargs: dict[str, Any] = {}
        if transport == "tls":
            kwargs = {"ssl": ssl_context, "server_hostname": server_hostname or addr[0]}
        _, proto = await asyncio.wait_for(
            loop.create_connection(
                lambda: StreamConnection(self, transport, None), addr[0], addr[1], **kwargs
            ),
            self.connect_timeout,
        )
        return proto

    def _arm_sweep(self) -> None:
        if self._sweep is None and self._conns:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self.idle_timeout / 4, self._run_sweep)

    def _run_sweep(self) -> None:
        self._sweep = None
        limit = self.clock() - self.idle_timeout
        for conn in list(self._conns.values()):
            if conn.last_activity < limit:
                log.debug("closing idle connection %r", conn)
                conn.close()
        self._arm_sweep()

    def close_all(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for fut in list(self._pending.values()):
            fut.cancel()
        for conn in list(self._conns.values()):
            conn.close()
        self._conns.clear()


class StreamListener:
    """A TCP or TLS server socket; accepted connections join the table."""

    def __init__(
        self,
        config: ListenerConfig,
        table: ConnectionTable,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.config = config
        self.table = table
        self.transport_name = str(config.transport)
        self.ssl_context = ssl_context
        self.local: Address = (config.address, config.port)
        self._server: asyncio.Server | None = None

    @property
    def name(self) -> str:
        return f"{self.transport_name}:{self.local[0]}:{self.local[1]}"

    @property
    def family6(self) -> bool:
        return ":" in self.config.address

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: StreamConnection(self.table, self.transport_name, self),
                self.config.address,
                self.config.port,
                ssl=self.ssl_context,
                reuse_address=True,
            )
        except OSError as exc:
            raise OSError(
                exc.errno,
                f"cannot bind {self.transport_name} listener "
                f"{self.config.address}:{self.config.port}: {exc.strerror or exc}",
            ) from exc
        sock = self._server.sockets[0].getsockname()
        self.local = (str(sock[0]), int(sock[1]))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

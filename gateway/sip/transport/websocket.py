"""SIP over WebSocket (RFC 7118): WS and WSS listeners on aiohttp's WebSocket server.

aiohttp speaks RFC 6455 (handshake, framing, masking, ping/pong, close); this module
moves SIP messages. A listener is one aiohttp site at `path`:

* The handshake is refused before the upgrade when the browser's Origin is not in the
  listener's `origins` (403; a request without Origin comes from a non-browser client
  and is let in: RFC 6455 §10.2) or when the client does not offer the `sip`
  subprotocol (400; RFC 7118 §4.1: the 101 must carry it). Each refusal is one log line
  ("websocket handshake refused").
* A slow or silent HTTP upgrade (slowloris) is closed after `handshake_timeout`: aiohttp's
  keep-alive timer is armed when the connection is made and closes a connection whose
  request is not complete by then. Request line and headers are bounded by aiohttp
  (8190 bytes a line or field).
* Each WebSocket message is one SIP message (RFC 7118 §5), text or binary (§4.2: both
  are accepted; a text frame that is not UTF-8 is closed 1007 by aiohttp). A message
  larger than `sip.max_message_size` is closed 1009 before it is buffered whole. A
  message the parser cannot read is answered 400 when its request line is readable
  (`SipEndpoint`), else the connection is closed 1002. CRLFCRLF in a message is a
  keep-alive ping (RFC 5626 §3.5.1 over a WebSocket), answered with CRLF.
* Half-open connections: a ping every `heartbeat` seconds; no pong within half of it
  closes the connection (aiohttp's heartbeat). WebSocket connections are exempt from the
  stream idle sweep: a registered browser may stay silent for its whole registration.
* The accepted connection is a flow (RFC 5626): it joins the endpoint's
  `ConnectionTable` under ("ws"|"wss", peer ip, peer port), the source address the
  registrar records for a REGISTER, so requests to the client (MESSAGE, NOTIFY,
  responses) go back over it. Nobody can open a WebSocket to a browser: a request for a
  closed connection fails (`ConnectionTable.connect`).

Writes are synchronous for the endpoint (`write`) and queued per connection; one task
per connection drains the queue while it is not empty. A queue longer than
`MAX_QUEUED` messages (a client that does not read) closes the connection 1008.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from gateway.config import ListenerConfig
from gateway.logs import event
from gateway.sip.transport.stream import ConnectionTable, ConnKey, next_connection_id

__all__ = [
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SLOW_READER",
    "MAX_QUEUED",
    "SUBPROTOCOL",
    "WsConnection",
    "WsListener",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]
SUBPROTOCOL = "sip"  # RFC 7118 §4.1
MAX_QUEUED = 256  # messages waiting to be written to one connection, at most
SHUTDOWN_GRACE = 2.0  # seconds the site waits for its handlers when it is closed
CLOSE_PROTOCOL_ERROR = int(WSCloseCode.PROTOCOL_ERROR)  # 1002: not a SIP message
CLOSE_SLOW_READER = int(WSCloseCode.POLICY_VIOLATION)  # 1008: the client does not read


class WsConnection:
    """One accepted WebSocket carrying SIP; a flow (RFC 5626) for its lifetime."""

    outbound = False

    def __init__(
        self,
        listener: WsListener,
        ws: web.WebSocketResponse,
        peer: Address,
        local: Address,
        peercert: dict[str, Any] | None,
    ) -> None:
        self.listener = listener
        self.transport_name = listener.transport_name
        self.id = next_connection_id()
        self.peer = peer
        self.local = local
        self.peercert = peercert
        self.closed = False
        self.close_code: int | None = None
        self._ws = ws
        self._clock = listener.table.clock
        self._queue: deque[bytes] = deque()
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[bool] | None = None

    @property
    def key(self) -> ConnKey:
        return (self.transport_name, self.peer[0], self.peer[1])

    @property
    def listener_name(self) -> str:
        return self.listener.name

    @property
    def last_activity(self) -> float:
        """Always now: the heartbeat, not the idle sweep, decides a WebSocket is dead."""
        return self._clock()

    @last_activity.setter
    def last_activity(self, value: float) -> None:
        pass

    def __repr__(self) -> str:
        return f"<{self.transport_name} #{self.id} {self.local} <-> {self.peer}>"

    def write(self, data: bytes) -> None:
        """Queue one SIP message: a text frame when it is UTF-8, else binary (§4.2)."""
        if self.closed:
            raise OSError(f"connection {self!r} is closed")
        if len(self._queue) >= MAX_QUEUED:
            self.fail(CLOSE_SLOW_READER, "send queue full")
            raise OSError(f"connection {self!r}: send queue full")
        self._queue.append(data)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue and not self.closed:
                data = self._queue.popleft()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    await self._ws.send_bytes(data)
                else:
                    await self._ws.send_str(text)
        except (ConnectionError, RuntimeError) as exc:  # closed under us
            log.debug("websocket write failed %r: %s", self, exc)
            self._queue.clear()
        finally:
            self._writer = None

    def close(self, code: int = int(WSCloseCode.OK), reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._queue.clear()
        close = self._ws.close(code=code, message=reason.encode())
        self._closing = asyncio.get_running_loop().create_task(close)

    async def wait_closed(self) -> None:
        """Until the close handshake started by `close` is over (the code is on the wire)."""
        if self._closing is not None:
            await self._closing

    def fail(self, code: int, reason: str) -> None:
        """Close with `code` and one log line saying why."""
        if self.closed:
            return
        event(log, logging.INFO, "websocket closed", peer=_peer(self.peer),
              listener=self.listener.name, code=code, reason=reason)  # fmt: skip
        self.close(code, reason)


def _peer(addr: Address) -> str:
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"


class WsListener:
    """An aiohttp site serving the SIP WebSocket subprotocol at the listener's path."""

    def __init__(
        self,
        config: ListenerConfig,
        table: ConnectionTable,
        ssl_context: ssl.SSLContext | None = None,
        *,
        max_message_size: int = 65535,
    ) -> None:
        self.config = config
        self.table = table
        self.transport_name = str(config.transport)
        self.ssl_context = ssl_context
        self.max_message_size = max_message_size
        self.local: Address = (config.address, config.port)
        self.refused = 0  # handshakes refused (Origin, subprotocol)
        self._runner: web.AppRunner | None = None
        self._cleanup: asyncio.Task[None] | None = None
        self._open: set[WsConnection] = set()

    @property
    def name(self) -> str:
        return f"{self.transport_name}:{self.local[0]}:{self.local[1]}"

    @property
    def family6(self) -> bool:
        return ":" in self.config.address

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.config.path, self._handle)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            keepalive_timeout=self.config.handshake_timeout,
            shutdown_timeout=SHUTDOWN_GRACE,
        )
        await runner.setup()
        site = web.TCPSite(
            runner,
            self.config.address,
            self.config.port,
            ssl_context=self.ssl_context,
            reuse_address=True,
        )
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno,
                f"cannot bind {self.transport_name} listener "
                f"{self.config.address}:{self.config.port}: {exc.strerror or exc}",
            ) from exc
        self._runner = runner
        bound = runner.addresses[0]
        self.local = (str(bound[0]), int(bound[1]))

    def close(self) -> None:
        for conn in list(self._open):
            conn.close(int(WSCloseCode.GOING_AWAY), "shutting down")
        runner, self._runner = self._runner, None
        if runner is not None:
            self._cleanup = asyncio.get_running_loop().create_task(runner.cleanup())

    async def wait_closed(self) -> None:
        """Until the site is down after `close` (open WebSockets got their 1001)."""
        if self._cleanup is not None:
            await self._cleanup

    # -- the handshake and the message loop ----------------------------------------------

    def _refuse(self, request: web.Request, status: int, reason: str) -> web.Response:
        self.refused += 1
        event(log, logging.INFO, "websocket handshake refused", listener=self.name,
              peer=request.remote or "", status=status, reason=reason)  # fmt: skip
        return web.Response(status=status, text=reason + "\n")

    def _origin_allowed(self, origin: str | None) -> bool:
        allowed = self.config.origins
        return not allowed or origin is None or origin.rstrip("/").lower() in allowed

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if not self._origin_allowed(origin):
            return self._refuse(request, 403, f"origin not allowed: {origin}")
        ws = web.WebSocketResponse(
            protocols=(SUBPROTOCOL,),
            max_msg_size=self.max_message_size,
            heartbeat=self.config.heartbeat,
            compress=False,
        )
        ready = ws.can_prepare(request)
        if not ready.ok:
            return self._refuse(request, 400, "not a websocket upgrade")
        if ready.protocol != SUBPROTOCOL:
            return self._refuse(request, 400, "subprotocol 'sip' required (RFC 7118 section 4.1)")
        transport = request.transport
        if transport is None:  # the client left during the handshake
            return web.Response(status=400)
        await ws.prepare(request)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        conn = WsConnection(
            self,
            ws,
            (str(peer[0]), int(peer[1])),
            (str(sock[0]), int(sock[1])),
            transport.get_extra_info("peercert"),
        )
        self._open.add(conn)
        self.table.add(conn)
        try:
            await self._serve(conn, ws)
            exc = ws.exception()
            if exc is not None and conn.close_code is None:  # e.g. no pong: half-open
                reason = str(exc) or type(exc).__name__
                event(log, logging.INFO, "websocket closed", peer=_peer(conn.peer),
                      listener=self.name, code=ws.close_code, reason=reason)  # fmt: skip
        finally:
            conn.closed = True
            self._open.discard(conn)
            self.table.remove(conn)
            log.debug("websocket closed %r: code %s", conn, ws.close_code)
        return ws

    async def _serve(self, conn: WsConnection, ws: web.WebSocketResponse) -> None:
        on_frame: Callable[[WsConnection, bytes], None] = self.table.on_frame
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                data = msg.data.encode("utf-8")
            elif msg.type is WSMsgType.BINARY:
                data = msg.data
            else:  # ERROR: aiohttp has sent the close (1009 too big, 1007 bad UTF-8, 1002)
                exc = ws.exception()
                code = exc.code if isinstance(exc, WebSocketError) else ws.close_code
                conn.close_code = code
                event(log, logging.INFO, "websocket closed", peer=_peer(conn.peer),
                      listener=self.name, code=code, reason=str(exc or msg.data))  # fmt: skip
                return
            if not data.strip(b"\r\n"):  # RFC 5626 §3.5.1 keep-alive over the WebSocket
                if data == b"\r\n\r\n":
                    conn.write(b"\r\n")
                continue
            try:
                on_frame(conn, data)
            except Exception:  # a bug in one message must not kill the connection's loop
                log.exception("websocket message handler failed on %s", self.name)
            if conn.closed:
                await conn.wait_closed()
                return

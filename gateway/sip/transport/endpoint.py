"""`SipEndpoint`: the asyncio driver of the pure `gateway.sip.useragent.UserAgent`.

The core decides (parse, 513, stateless errors, validation, OPTIONS, drain 503, the
transaction layer, client waiters, the error boundary); this module moves bytes and time:
datagrams and stream frames go to `UserAgent.receive` with their origin (listener,
connection, TLS certificate), what the core transmits is written to a listener or a
connection, the one `loop.call_at` timer is re-armed at the core's deadline, a handler's
awaitable runs as a task, `request` awaits a future the core's callback settles.
Listeners, connections, TLS contexts, futures and tasks live here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from gateway.config import SipConfig, Transport
from gateway.logs import event
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.locate import Target
from gateway.sip.message import SipMessage, SipRequest, SipResponse
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction_events import Origin
from gateway.sip.transaction_layer import TransactionLayer
from gateway.sip.transport.stream import Connection, ConnectionTable, StreamListener
from gateway.sip.transport.tls import client_context, server_context
from gateway.sip.transport.udp import UdpListener
from gateway.sip.transport.websocket import CLOSE_PROTOCOL_ERROR, WsConnection, WsListener
from gateway.sip.ua import SizePlan, format_host
from gateway.sip.useragent import (
    DEFAULT_RETRY_AFTER,
    EndpointStats,
    FinalCallback,
    IncomingRequest,
    MessageTooLarge,
    Prepared,
    RequestHandler,
    TransportFailure,
    UserAgent,
    address_of,
)
from gateway.sip.validate import GATEWAY_POLICY, UasPolicy

__all__ = ["SEND_CHUNK", "TIMER_READ_LIMIT", "SipEndpoint"]

log = logging.getLogger(__name__)

# Datagrams read per UDP listener before the timers fire, at most (see `_on_timer`): enough
# for the 200s of a fan-out burst, bounded so one timer cannot hold the loop for long.
TIMER_READ_LIMIT = 4096
# Requests started by `request_nowait` in one loop turn are sent in chunks of this many as
# they are started (a fan-out's first NOTIFYs leave before the last ones are built).
SEND_CHUNK = 64

Address = tuple[str, int]
Listener = UdpListener | StreamListener | WsListener
_SECURE = (Transport.TLS, Transport.WSS)
_WEBSOCKET = (Transport.WS, Transport.WSS)


class SipEndpoint:
    """Listeners, connections and one timer around one `UserAgent`; a `RequestSender`."""

    def __init__(
        self,
        config: SipConfig,
        handler: RequestHandler,
        *,
        clock: Callable[[], float] | None = None,
        policy: UasPolicy = GATEWAY_POLICY,
        trace: bool = False,
        idle_timeout: float = 300.0,
        path_mtu: int | None = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.config = config
        self.trace = trace
        self._clock = clock
        timers = TimerConfig(t1=config.timers.t1, t2=config.timers.t2, t4=config.timers.t4)
        self.ua = UserAgent(
            handler,
            self,
            max_message_size=config.max_message_size,
            user_agent=config.user_agent,
            policy=policy,
            timers=timers,
            path_mtu=path_mtu,
            retry_after=retry_after,
        )
        self.listeners: list[Listener] = []
        self._idle_timeout = idle_timeout
        self._connect_timeout = 64 * config.timers.t1
        self._streams: ConnectionTable | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._drain_soon = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_tasks: set[asyncio.Task[SipResponse]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ the core's state

    @property
    def handler(self) -> RequestHandler:
        return self.ua.handler

    @property
    def policy(self) -> UasPolicy:
        return self.ua.policy

    @property
    def path_mtu(self) -> int | None:
        return self.ua.path_mtu

    @property
    def layer(self) -> TransactionLayer:
        return self.ua.layer

    @property
    def stats(self) -> EndpointStats:
        return self.ua.stats

    @property
    def draining(self) -> bool:
        return self.ua.draining

    @property
    def transactions_in_flight(self) -> int:
        return len(self.ua.layer)

    def udp_backlog(self) -> float:
        """The fullest UDP receive buffer's share in use (overload control, issue 27)."""
        return max(
            (li.backlog() for li in self.listeners if isinstance(li, UdpListener)), default=0.0
        )

    def stream_backlog(self) -> int:
        """Unread bytes on the TCP/TLS connections (overload control, issue 27)."""
        return 0 if self._streams is None else self._streams.backlog()

    @property
    def connections(self) -> ConnectionTable:
        if self._streams is None:
            raise RuntimeError("endpoint not started")
        return self._streams

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind every listener; OSError (naming the address) if one cannot be bound."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self._clock is None:
            self._clock = loop.time
        self._streams = ConnectionTable(
            on_frame=self._on_frame,
            on_framing_error=self._on_framing_error,
            max_message_size=self.config.max_message_size,
            idle_timeout=self._idle_timeout,
            connect_timeout=self._connect_timeout,
            clock=self._clock,
        )
        self._client_ssl = client_context(self.config.tls_client)
        try:
            for lc in self.config.listeners:
                listener: Listener
                ctx = server_context(lc) if lc.transport in _SECURE else None
                if lc.transport is Transport.UDP:
                    listener = UdpListener(lc, self._on_datagram)
                elif lc.transport in _WEBSOCKET:
                    size = self.config.max_message_size
                    listener = WsListener(lc, self._streams, ctx, max_message_size=size)
                else:
                    listener = StreamListener(lc, self._streams, ctx)
                await listener.start()
                self.listeners.append(listener)
                log.info("sip listener up", extra={"fields": {"listener": listener.name}})
        except BaseException:
            self._close_all()
            raise

    def begin_drain(self) -> None:
        """From now on, new requests are answered 503 (the core's one drain policy)."""
        self.ua.begin_drain()

    async def stop(self, grace: float = 0.0) -> None:
        """Drain (new requests get 503), wait up to `grace` seconds for our own client
        transactions, then close listeners and connections and fail what is left."""
        self.ua.begin_drain()
        if grace > 0 and self.ua.clients and self._loop is not None:
            pending = []
            for waiter in self.ua.clients.values():
                settled: asyncio.Future[None] = self._loop.create_future()
                waiter.on_final = partial(_also_settle, waiter.on_final, settled)
                pending.append(settled)
            await asyncio.wait(pending, timeout=grace)
        closing = [li for li in self.listeners if isinstance(li, WsListener)]
        self._close_all()
        for ws_listener in closing:  # the aiohttp sites, after their 1001 closes
            await ws_listener.wait_closed()
        self.ua.fail_clients(TransportFailure("endpoint stopped"))
        for client_task in list(self._client_tasks):
            client_task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    def _close_all(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()
        if self._streams is not None:
            self._streams.close_all()
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, None

    def listener(self, transport: str, ipv6: bool = False) -> Listener | None:
        """The first listener of `transport` for that address family."""
        return next(
            (li for li in self.listeners if li.transport_name == transport and li.family6 == ipv6),
            None,
        )

    # ------------------------------------------------------------------ receive

    def _on_datagram(self, data: bytes, source: Address, listener: UdpListener) -> None:
        if not data.strip(b"\r\n"):
            return  # CRLF keep-alive over UDP: nothing to answer (STUN: udp.py answers it)

        def reply(out: bytes) -> None:
            listener.send(out, source)

        self.ua.receive(data, source, "udp", Origin(listener.name), now=self.now(), reply=reply)

    def _on_frame(self, conn: Connection, data: bytes) -> None:
        origin = Origin(conn.listener_name, conn.id, conn.peercert)
        now = self.now()
        if isinstance(conn, WsConnection):
            self._on_ws_message(conn, data, origin, now)
            return
        if self.ua.receive(data, conn.peer, conn.transport_name, origin, now=now, reply=conn.write):
            conn.close()

    def _on_ws_message(self, conn: WsConnection, data: bytes, origin: Origin, now: float) -> None:
        """One WebSocket message, one SIP message (RFC 7118 §5). A message that cannot be
        parsed is answered 400 by the core when its request line is readable; when
        nothing could be answered (no request line: a fragment of a message split over
        frames, binary garbage) the connection is closed 1002."""
        errors = self.ua.stats.parse_errors
        answered = False

        def reply(out: bytes) -> None:
            nonlocal answered
            answered = True
            conn.write(out)

        self.ua.receive(data, conn.peer, conn.transport_name, origin, now=now, reply=reply)
        if self.ua.stats.parse_errors > errors and not answered:
            conn.fail(CLOSE_PROTOCOL_ERROR, "not a SIP message")

    def _on_framing_error(self, conn: Connection, exc: RemoteProtocolError) -> None:
        self.ua.stats.parse_errors += 1
        event(log, logging.INFO, "stream framing error, closing", peer=conn.peer, error=exc.message)

    # ------------------------------------------------------------------ the core's Driver

    def now(self) -> float:
        assert self._clock is not None
        return self._clock()

    def transmit(self, transport: str, dest: Address, data: bytes) -> None:
        ip = address_of(dest[0])
        if ip is None:  # e.g. a Via maddr naming a host: we never resolve names here
            raise OSError(f"not an IP address: {dest[0]!r}")
        if transport == "udp":
            listener = self.listener("udp", ":" in ip)
            if not isinstance(listener, UdpListener):
                raise OSError(f"no udp listener for {ip}")
            listener.send(data, (ip, dest[1]))
            return
        conn = self.connections.get(transport, (ip, dest[1]))
        if conn is None:  # §18.2.2 would open a new connection; the peer must keep it open
            raise OSError(f"no {transport} connection to {ip}:{dest[1]}")
        conn.write(data)

    def spawn(self, request: IncomingRequest, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(self._guarded(request, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, incoming: IncomingRequest, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.ua.handler_failed(incoming, exc)

    def timer_changed(self, deadline: float | None) -> None:
        if deadline == self._timer_at or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at or 0.0
        # Read what is already queued on the UDP sockets first: a response that arrived
        # while the loop was busy (a fan-out burst) ends its client transaction here,
        # instead of Timer E/A retransmitting a request already answered (§17.1.2.2).
        for listener in self.listeners:
            if isinstance(listener, UdpListener):
                listener.read_pending(TIMER_READ_LIMIT)
        if self._timer is not None:  # re-armed by what was read: fired again below
            self._timer.cancel()
        self._timer, self._timer_at = None, None
        self.ua.handle_timer(max(self.now(), at))  # call_at may run a little early

    def traced(
        self, direction: str, msg: SipMessage, transport: str, peer: Address, data: bytes
    ) -> None:
        if not log.isEnabledFor(logging.DEBUG):
            return
        what = msg.method if isinstance(msg, SipRequest) else str(msg.status)
        fields: dict[str, Any] = {
            "msg": what,
            "call_id": msg.call_id,
            "peer": f"{transport}:{format_host(peer[0])}:{peer[1]}",
        }
        if self.trace:
            fields["wire"] = data.decode("utf-8", "replace")
        event(log, logging.DEBUG, f"sip {direction}", **fields)

    # ------------------------------------------------------------------ send

    async def request(
        self,
        req: SipRequest,
        target: Target,
        *,
        on_provisional: Callable[[SipResponse], None] | None = None,
        allow_tcp: bool = True,
    ) -> SipResponse:
        """Send `req` in a new client transaction and return its final response.

        Adds Via (with `rport` and a fresh branch), Max-Forwards and User-Agent.
        Requests too large for UDP go over TCP (§18.1.1), falling back to UDP when the
        connection fails and the request fits a datagram; `MessageTooLarge` otherwise.
        Raises `TransactionTimeout` (Timer B/F) and `TransportFailure`.
        """
        ip, plan, size, ready = self._plan(req, target, allow_tcp)
        if ready is not None and plan.transport == "udp":
            return await self._await_client(ready, on_provisional)
        try:
            return await self._request_over(plan.transport, req, ip, target, on_provisional)
        except TransportFailure as exc:
            if plan.transport == target.transport or not exc.connect_failed:
                raise
            if plan.fallback is None:
                raise MessageTooLarge(
                    f"{size} bytes: tcp failed ({exc}), too large for udp"
                ) from exc
            event(log, logging.INFO, "tcp failed, retrying over udp", dest=ip, error=str(exc))
            return await self._request_over(plan.fallback, req, ip, target, on_provisional)

    def request_nowait(
        self,
        req: SipRequest,
        target: Target,
        on_final: FinalCallback,
        *,
        allow_tcp: bool = True,
    ) -> None:
        """`request` without a task: `on_final(response, None)` with the final response,
        or `on_final(None, exc)` with the exception `request` would raise. Over UDP the
        client transaction starts at once (Timers E/F run in the layer as for `request`);
        the callback runs from the endpoint's event handling, never from this call. Other
        transports (a connection may have to be opened first) run `request` in a task."""
        loop = self._loop
        if loop is None or self._streams is None:
            raise TransportFailure("endpoint not started")
        try:
            _, plan, _, ready = self._plan(req, target, allow_tcp)
        except (TransportFailure, MessageTooLarge) as exc:
            loop.call_soon(on_final, None, exc)
            return
        if ready is not None and plan.transport == "udp":
            ua = self.ua
            ua.start_client(ready, "udp", self.now(), on_final)
            ua.unsent += 1
            if ua.unsent >= SEND_CHUNK and not ua.processing:
                ua.send_queued()
            if not self._drain_soon:  # one `process` for every request started this turn
                self._drain_soon = True
                loop.call_soon(self._deferred_process)
            return
        task = loop.create_task(self.request(req, target, allow_tcp=allow_tcp))
        self._client_tasks.add(task)
        task.add_done_callback(partial(self._client_task_done, on_final))

    def cancel(self, invite: SipRequest) -> bool:
        """`DialogSender.cancel`: the core's `cancel_invite` for `invite`'s Call-ID and CSeq."""
        cseq = invite.cseq
        if self._loop is None or invite.call_id is None or cseq is None:
            return False
        return self.ua.cancel_invite(invite.call_id, cseq.seq, self.now())

    async def ack(self, ack: SipRequest, target: Target) -> None:
        """`DialogSender.ack`: the ACK for a 2xx with our Via and a fresh branch, over
        the target's transport (never switched: an ACK is small), no transaction."""
        ip, plan, _, ready = self._plan(ack, target, allow_tcp=False)
        if ready is None:
            dest = (ip, target.port)
            sent_by = await self._sent_by(plan.transport, dest, target.host)
            ready = self.ua.prepare(ack, plan.transport, dest, sent_by)
        self.ua.send_ack(ready, plan.transport)

    def _deferred_process(self) -> None:
        self._drain_soon = False
        self.ua.process()

    def _client_task_done(self, on_final: FinalCallback, task: asyncio.Task[SipResponse]) -> None:
        self._client_tasks.discard(task)
        if task.cancelled():
            on_final(None, TransportFailure("endpoint stopped"))
            return
        exc = task.exception()
        if exc is None:
            on_final(task.result(), None)
        elif isinstance(exc, Exception):
            on_final(None, exc)

    def _plan(
        self, req: SipRequest, target: Target, allow_tcp: bool
    ) -> tuple[str, SizePlan, int, Prepared | None]:
        if self._streams is None:
            raise TransportFailure("endpoint not started")
        return self.ua.plan(req, target, allow_tcp, self._udp_sent_by)

    def _udp_sent_by(self, dest: Address) -> Address | None:
        listener = self.listener("udp", ":" in dest[0])
        if listener is None:
            return None
        return self._local_ip(listener.local[0], dest), listener.local[1]

    async def _await_client(
        self,
        ready: Prepared,
        on_provisional: Callable[[SipResponse], None] | None,
        transport: str = "udp",
    ) -> SipResponse:
        future: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()
        key = self.ua.start_client(
            ready, transport, self.now(), partial(_settle, future), on_provisional
        )
        self.ua.process()
        try:
            return await future
        finally:
            self.ua.forget_client(key)

    async def _request_over(
        self,
        transport: str,
        req: SipRequest,
        ip: str,
        target: Target,
        on_provisional: Callable[[SipResponse], None] | None,
    ) -> SipResponse:
        dest = (ip, target.port)
        sent_by = await self._sent_by(transport, dest, target.host)
        prepared = self.ua.prepare(req, transport, dest, sent_by)
        return await self._await_client(prepared, on_provisional, transport)

    async def _sent_by(self, transport: str, dest: Address, hostname: str) -> Address:
        """Via sent-by for a request: the listener of that transport and family, with
        the actual local address when it is bound to a wildcard; for streams, the
        connection is opened first (and a connection failure reported here)."""
        ipv6 = ":" in dest[0]
        listener = self.listener(transport, ipv6)
        if transport == "udp":
            if listener is None:
                raise TransportFailure(f"no udp listener for {dest[0]}")
            return self._local_ip(listener.local[0], dest), listener.local[1]
        try:
            conn = await self.connections.connect(
                transport,
                dest,
                ssl_context=self._client_ssl if transport == "tls" else None,
                server_hostname=hostname,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransportFailure(
                f"{transport} connection to {dest[0]}:{dest[1]} failed: {exc}",
                connect_failed=True,
            ) from exc
        if listener is None:
            return conn.local
        return self._local_ip(listener.local[0], dest, conn.local[0]), listener.local[1]

    @staticmethod
    def _local_ip(bound: str, dest: Address, known: str | None = None) -> str:
        if bound not in ("0.0.0.0", "::"):
            return bound
        if known is not None:
            return known
        family = socket.AF_INET6 if ":" in dest[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:  # no packet is sent
            s.connect(dest)
            return str(s.getsockname()[0])


def _settle(
    future: asyncio.Future[SipResponse], response: SipResponse | None, exc: Exception | None
) -> None:
    """`request`'s waiter: the core's final callback resolves the awaited future."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        assert response is not None
        future.set_result(response)


def _also_settle(
    on_final: FinalCallback,
    settled: asyncio.Future[None],
    response: SipResponse | None,
    exc: Exception | None,
) -> None:
    """`stop`'s grace wait: resolve `settled` when the waiter is settled."""
    if not settled.done():
        settled.set_result(None)
    on_final(response, exc)

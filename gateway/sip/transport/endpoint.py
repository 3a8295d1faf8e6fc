"""`SipEndpoint`: the asyncio driver of the pure `TransactionLayer` (aioquic shape).

Receive: datagram or stream frame -> `parse_message` -> (requests) `received`/`rport`
stamping and the transaction layer -> `RequestReceived` -> `validate_request` ->
OPTIONS answered here, anything else to the transaction user (`RequestHandler`).
Send: `request()` for client transactions, `IncomingRequest.respond()` for server ones.
After every input the layer's events and outgoing messages are drained and one
`loop.call_at` timer is re-armed at `layer.get_timer()`: no task or sleep per
transaction. Unparseable requests are answered statelessly to their source (RFC 3581)
or on their connection; a framing error closes the connection (RFC 3261 §18.3).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache, partial
from typing import Any, Protocol

from gateway.config import SipConfig, Transport
from gateway.logs import event
from gateway.sip import transaction_events as ev
from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.locate import Target
from gateway.sip.message import SipMessage, SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction import ClientKey, ServerKey, new_branch, server_key_for_request
from gateway.sip.transaction_layer import TransactionLayer
from gateway.sip.transport.stream import ConnectionTable, StreamConnection, StreamListener
from gateway.sip.transport.tls import client_context, server_context
from gateway.sip.transport.udp import UdpListener
from gateway.sip.ua import SizePlan, format_host, ip_literal, options_response, plan_transport
from gateway.sip.ua import prepare_request as add_client_headers
from gateway.sip.validate import (
    GATEWAY_POLICY,
    UasPolicy,
    error_response,
    validate_request,
    validate_response,
)
from mappings.errors import MappingError

__all__ = [
    "EndpointStats",
    "IncomingRequest",
    "MessageTooLarge",
    "RequestHandler",
    "SipEndpoint",
    "TransactionTimeout",
    "TransportFailure",
    "probe_via_delta",
]

log = logging.getLogger(__name__)

# Datagrams read per UDP listener before the timers fire, at most (see `_on_timer`): enough
# for the 200s of a fan-out burst, bounded so one timer cannot hold the loop for long.
TIMER_READ_LIMIT = 4096
# Requests started by `request_nowait` in one loop turn are sent in chunks of this many as
# they are started (a fan-out's first NOTIFYs leave before the last ones are built).
SEND_CHUNK = 64

Address = tuple[str, int]
Listener = UdpListener | StreamListener


class TransportFailure(Exception):
    """A request could not be sent: no route, connection refused, TLS refused, closed.
    `connect_failed` is True when the connection could not be established at all."""

    def __init__(self, message: str, *, connect_failed: bool = False) -> None:
        super().__init__(message)
        self.connect_failed = connect_failed


class TransactionTimeout(Exception):
    """No final response before Timer B/F fired (RFC 3261 §17.1.1.2, §17.1.2.2)."""


class MessageTooLarge(Exception):
    """Too large for UDP (§18.1.1) and no congestion-controlled transport could be used."""


class RequestHandler(Protocol):
    """The transaction user. `handle` may answer at once through `request.respond`, or
    return an awaitable that the endpoint runs as a task under its error boundary."""

    def handle(self, request: IncomingRequest) -> Awaitable[None] | None: ...


@dataclass
class EndpointStats:
    """Plain counters for the metrics endpoint (later)."""

    requests_in: int = 0
    responses_in: int = 0
    requests_out: int = 0
    responses_out: int = 0
    retransmissions: int = 0  # requests/responses we re-sent (Timers A, E, G)
    retransmissions_in: int = 0  # request retransmissions absorbed by the layer
    parse_errors: int = 0
    handler_errors: int = 0


@dataclass(frozen=True, slots=True)
class _Origin:
    listener: str  # listener name, or "outbound" for a connection we opened
    connection_id: int | None
    peer_certificate: dict[str, Any] | None


@dataclass(eq=False)
class IncomingRequest:
    """A request for the transaction user, with where it came from and how to answer."""

    request: SipRequest
    source: Address
    transport: str
    listener: str
    connection_id: int | None  # the flow (RFC 5626) for stream transports
    peer_certificate: dict[str, Any] | None  # TLS client certificate, when one was given
    server_key: ev.ServerKeyT | None  # None for an ACK to a 2xx: nothing to answer
    _endpoint: SipEndpoint = field(repr=False)
    to_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    final_sent: bool = False
    cancelled: bool = False

    def respond(self, response: SipResponse) -> bool:
        """Send `response` through the server transaction; a second final response (or
        any response to an ACK) is refused with a log line. False if not sent."""
        if self.server_key is None:
            log.warning("no response possible to %s", self.request.method)
            return False
        if self.final_sent:
            event(
                log,
                logging.WARNING,
                "second final response refused",
                call_id=self.request.call_id,
                status=response.status,
            )
            return False
        if response.status >= 200:
            self.final_sent = True
        return self._endpoint._respond(self.server_key, response)

    def reply(
        self,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> bool:
        """`respond` with a response built from the request (RFC 3261 §8.2.6)."""
        resp = make_response(
            self.request, status, reason, to_tag=self.to_tag, headers=headers, body=body
        )
        return self.respond(resp)


FinalCallback = Callable[[SipResponse | None, Exception | None], None]


@dataclass(slots=True)
class _Client:
    """A client transaction's waiter: the future `request` awaits, or the callback of
    `request_nowait` (then `future` only exists while `stop` waits for it)."""

    future: asyncio.Future[SipResponse] | None
    on_provisional: Callable[[SipResponse], None] | None
    on_final: FinalCallback | None = None

    @property
    def done(self) -> bool:
        if self.on_final is None:
            return self.future is None or self.future.done()
        return False

    def settle(self, response: SipResponse | None, exc: Exception | None) -> None:
        future = self.future
        on_final = self.on_final
        if on_final is not None:
            self.on_final = None
            if future is not None and not future.done():
                future.set_result(response)  # type: ignore[arg-type]  # stop's grace wait
            on_final(response, exc)
        elif future is not None and not future.done():
            if exc is not None:
                future.set_exception(exc)
            else:
                assert response is not None
                future.set_result(response)


class SipEndpoint:
    """Listeners, connections, one transaction layer and one timer."""

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
    ) -> None:
        self.config = config
        self.handler = handler
        self.policy = replace(policy, max_message_size=config.max_message_size)
        self.trace = trace
        self.path_mtu = path_mtu
        self._clock = clock
        timers = TimerConfig(t1=config.timers.t1, t2=config.timers.t2, t4=config.timers.t4)
        self.layer = TransactionLayer(timers)
        self.stats = EndpointStats()
        self.draining = False
        self.listeners: list[Listener] = []
        self._idle_timeout = idle_timeout
        self._connect_timeout = 64 * config.timers.t1
        self._streams: ConnectionTable | None = None
        self._client_ssl: ssl.SSLContext | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._in_drain = False
        self._drain_soon = False
        self._unsent = 0  # requests started by request_nowait since the last send
        self._origin: _Origin | None = None
        self._clients: dict[ClientKey, _Client] = {}
        self._incoming: dict[ev.ServerKeyT, IncomingRequest] = {}
        self._send_errors: dict[Any, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_tasks: set[asyncio.Task[SipResponse]] = set()
        self._allow = tuple(sorted(self.policy.methods))
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def transactions_in_flight(self) -> int:
        return len(self.layer)

    @property
    def connections(self) -> ConnectionTable:
        if self._streams is None:
            raise RuntimeError("endpoint not started")
        return self._streams

    def now(self) -> float:
        assert self._clock is not None
        return self._clock()

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
                if lc.transport is Transport.UDP:
                    listener = UdpListener(lc, self._on_datagram)
                else:
                    ctx = server_context(lc) if lc.transport is Transport.TLS else None
                    listener = StreamListener(lc, self._streams, ctx)
                await listener.start()
                self.listeners.append(listener)
                log.info("sip listener up", extra={"fields": {"listener": listener.name}})
        except BaseException:
            self._close_all()
            raise

    def begin_drain(self) -> None:
        """From now on, new requests are answered 503 (RFC 3261 §21.5.4)."""
        self.draining = True

    async def stop(self, grace: float = 0.0) -> None:
        """Drain (new requests get 503), wait up to `grace` seconds for our own client
        transactions, then close listeners and connections and fail what is left."""
        self.draining = True
        pending = []
        for c in self._clients.values():
            if c.on_final is not None and c.future is None and self._loop is not None:
                c.future = self._loop.create_future()  # resolved by `settle`
            if not c.done and c.future is not None:
                pending.append(c.future)
        if grace > 0 and pending:
            await asyncio.wait(pending, timeout=grace)
        self._close_all()
        for client in list(self._clients.values()):
            if not client.done:
                client.settle(None, TransportFailure("endpoint stopped"))
        self._clients.clear()
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
            return  # CRLF keep-alive over UDP: nothing to answer (STUN is out of scope)
        origin = _Origin(listener.name, None, None)

        def reply(out: bytes) -> None:
            listener.send(out, source)

        self._receive(data, source, "udp", origin, reply=reply, conn=None)

    def _on_frame(self, conn: StreamConnection, data: bytes) -> None:
        name = conn.listener.name if conn.listener is not None else "outbound"
        origin = _Origin(name, conn.id, conn.peercert)
        self._receive(data, conn.peer, conn.transport_name, origin, reply=conn.write, conn=conn)

    def _on_framing_error(self, conn: StreamConnection, exc: RemoteProtocolError) -> None:
        self.stats.parse_errors += 1
        event(log, logging.INFO, "stream framing error, closing", peer=conn.peer, error=exc.message)

    def _receive(
        self,
        data: bytes,
        source: Address,
        transport: str,
        origin: _Origin,
        *,
        reply: Callable[[bytes], None],
        conn: StreamConnection | None,
    ) -> None:
        try:
            msg = parse_message(data, allow=self._allow)
        except DropMessage as exc:
            log.debug("dropped message from %s: %s", source, exc)
            return
        except RemoteProtocolError as exc:
            self.stats.parse_errors += 1
            event(log, logging.DEBUG, "unparseable request", peer=source, error=exc.message)
            self._stateless(error_response(exc), reply)
            if exc.fatal and conn is not None:
                conn.close()
            return
        self._log_message("in", msg, transport, source, data)
        if isinstance(msg, SipResponse):
            try:
                validate_response(msg)
            except DropMessage as exc:
                log.debug("dropped response from %s: %s", source, exc)
                return
            self.stats.responses_in += 1
            self.layer.receive(msg, source, transport, self.now())
            self._drain()
            return
        self.stats.requests_in += 1
        if len(data) > self.config.max_message_size:  # §18.1.1 / RFC 3261 §21.5.14
            self._stateless(make_response(msg, 513, to_tag=secrets.token_hex(6)), reply)
            return
        self._count_retransmission(msg)
        self._origin = origin
        try:
            # `received` carries a bare IPv6 address (RFC 3261 §25.1 via-received).
            self.layer.receive(msg, source, transport, self.now())
        except RemoteProtocolError as exc:
            exc.headers, exc.method = msg.headers, msg.method
            self._stateless(error_response(exc, to_tag=secrets.token_hex(6)), reply)
        try:
            self._drain()
        finally:
            self._origin = None

    def _count_retransmission(self, req: SipRequest) -> None:
        if req.method in ("ACK", "CANCEL"):
            return
        try:
            key = server_key_for_request(req)
        except RemoteProtocolError:
            return
        if isinstance(key, ServerKey) and self.layer.state_of(key) is not None:
            self.stats.retransmissions_in += 1

    def _stateless(self, response: SipResponse | None, reply: Callable[[bytes], None]) -> None:
        if response is None:
            return
        data = serialize(response)
        try:
            reply(data)
        except OSError as exc:
            log.debug("stateless response not sent: %s", exc)
            return
        self.stats.responses_out += 1
        self._log_message("out", response, "", ("", 0), data)

    # ------------------------------------------------------------------ events

    def _drain(self) -> None:
        """Send what the layer has queued and handle its events until both are empty."""
        if self._in_drain:
            return
        self._in_drain = True
        self._unsent = 0
        try:
            while True:
                outgoing = self.layer.messages_to_send()
                for out in outgoing:
                    self._send(out)
                e = self.layer.next_event()
                if e is not None:
                    try:
                        _HANDLERS[type(e)](self, e)
                    except Exception:  # a bug: keep serving the other transactions
                        log.exception("error handling %s", type(e).__name__)
                elif not outgoing:
                    break
        finally:
            self._in_drain = False
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.layer.get_timer()
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
        self.layer.handle_timer(max(self.now(), at))  # call_at may run a little early
        self._drain()

    def _on_request(self, e: ev.RequestReceived) -> None:
        origin = self._origin or _Origin("", None, None)
        incoming = IncomingRequest(
            e.request,
            (_address_of(e.source[0]) or e.source[0], e.source[1]),
            e.transport,
            origin.listener,
            origin.connection_id,
            origin.peer_certificate,
            e.server_key,
            self,
        )
        req = e.request
        if e.server_key is None or req.method == "ACK":
            self._dispatch(incoming)
            return
        if req.method == "INVITE":  # only a CANCEL looks it up again (_on_cancelled)
            self._incoming[e.server_key] = incoming
        if self.draining:
            incoming.reply(503, headers=[("Retry-After", "30")])
            return
        try:
            validate_request(req, self.policy)
        except RemoteProtocolError as exc:
            resp = error_response(exc, to_tag=incoming.to_tag)
            if resp is not None:
                incoming.respond(resp)
            return
        if req.method == "OPTIONS":
            incoming.respond(
                options_response(
                    req, self.policy, to_tag=incoming.to_tag, server=self.config.user_agent
                )
            )
            return
        self._dispatch(incoming)

    def _on_response(self, e: ev.ResponseReceived) -> None:
        client = self._clients.get(e.client_key)
        if client is None or client.done:
            return
        if e.response.status < 200:
            if client.on_provisional is not None:
                client.on_provisional(e.response)
            return
        if client.on_final is not None:
            del self._clients[e.client_key]
        client.settle(e.response, None)

    def _on_cancelled(self, e: ev.RequestCancelled) -> None:
        incoming = self._incoming.get(e.invite_key)
        if incoming is not None:
            incoming.cancelled = True
            incoming.final_sent = True  # the layer answered 487

    def _fail_client(self, key: Any, exc: Exception) -> None:
        client = self._clients.get(key) if isinstance(key, ClientKey) else None
        if client is not None and not client.done:
            if client.on_final is not None:
                del self._clients[key]
            client.settle(None, exc)

    def _on_timeout(self, e: ev.TransactionTimeout) -> None:
        if isinstance(e.key, ClientKey):
            self._fail_client(e.key, TransactionTimeout(f"no final response ({e.key.method})"))
        else:
            log.debug("server transaction timed out: %s", e.key)

    def _on_transport_error(self, e: ev.TransportError) -> None:
        reason = self._send_errors.pop(e.key, "transport error")
        self._fail_client(e.key, TransportFailure(reason))

    def _on_terminated(self, e: ev.TransactionTerminated) -> None:
        self._send_errors.pop(e.key, None)
        if isinstance(e.key, ClientKey):
            self._clients.pop(e.key, None)
        else:
            self._incoming.pop(e.key, None)

    def _on_stray(self, e: ev.StrayResponse) -> None:
        log.debug("stray response %s from %s dropped", e.response.status, e.source)

    # ------------------------------------------------------------------ the error boundary

    def _dispatch(self, incoming: IncomingRequest) -> None:
        """Run the handler; any exception becomes a final response (the one boundary)."""
        try:
            result = self.handler.handle(incoming)
        except Exception as exc:
            self._handler_failed(incoming, exc)
            return
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(self._guarded(incoming, result))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _guarded(self, incoming: IncomingRequest, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._handler_failed(incoming, exc)

    def _handler_failed(self, incoming: IncomingRequest, exc: Exception) -> None:
        req = incoming.request
        cseq = req.cseq
        fields = {"call_id": req.call_id, "cseq": None if cseq is None else str(cseq)}
        if isinstance(exc, MappingError):
            event(log, logging.INFO, "request refused", status=exc.sip_status, **fields)
            status, reason = exc.sip_status, None
            extra: tuple[tuple[str, str], ...] = ()
        elif isinstance(exc, RemoteProtocolError):
            event(log, logging.INFO, "request refused", status=exc.status, **fields)
            status, reason, extra = exc.status, exc.reason, exc.extra_headers
        else:
            self.stats.handler_errors += 1
            log.error("handler failed", exc_info=exc, extra={"fields": fields})
            status, reason, extra = 500, None, ()
        if not incoming.final_sent and incoming.server_key is not None:
            incoming.reply(status, reason, headers=extra)

    # ------------------------------------------------------------------ send

    def _respond(self, key: ev.ServerKeyT, response: SipResponse) -> bool:
        sent = self.layer.send_response(response, self.now(), key)
        self._drain()
        return sent

    def _send(self, out: ev.Outgoing) -> None:
        t = out.transport.lower()
        if out.retransmission:
            self.stats.retransmissions += 1
        if isinstance(out.message, SipResponse):
            self.stats.responses_out += 1
        else:
            self.stats.requests_out += 1
        try:
            self._write(t, out.dest, out.data)
        except OSError as exc:
            event(log, logging.INFO, "send failed", dest=out.dest, transport=t, error=str(exc))
            if out.key is not None:
                self._send_errors[out.key] = f"{t} to {out.dest[0]}:{out.dest[1]}: {exc}"
                self.layer.transport_error(out.key, self.now())
            return
        self._log_message("out", out.message, t, out.dest, out.data)

    def _write(self, transport: str, dest: Address, data: bytes) -> None:
        ip = _address_of(dest[0])
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
            prepared, dest, data, branch = ready
            key = self.layer.send_request(
                prepared, dest, "udp", self.now(), data=data, branch=branch
            )
            self._clients[key] = _Client(None, None, on_final)
            self._unsent += 1
            if self._unsent >= SEND_CHUNK and not self._in_drain:
                self._send_queued()
            if not self._drain_soon:  # one drain for every request started this turn
                self._drain_soon = True
                loop.call_soon(self._deferred_drain)
            return
        task = loop.create_task(self.request(req, target, allow_tcp=allow_tcp))
        self._client_tasks.add(task)
        task.add_done_callback(partial(self._client_task_done, on_final))

    def _send_queued(self) -> None:
        """Send what the layer has queued, handling no event (no callback runs from
        `request_nowait`): a burst started in one loop turn leaves in chunks of
        `SEND_CHUNK` as it is built, not all at the end of the turn (issue 11)."""
        self._unsent = 0
        self._in_drain = True
        try:
            for out in self.layer.messages_to_send():
                self._send(out)
        finally:
            self._in_drain = False

    def _deferred_drain(self) -> None:
        self._drain_soon = False
        self._drain()

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
    ) -> tuple[str, SizePlan, int, tuple[SipRequest, Address, bytes, str] | None]:
        """The target's address, the transport plan (§18.1.1) and the request's size
        with our Via; for a UDP target with a UDP listener, also the request prepared
        for it (Via sent-by our listener), where it goes and its bytes.

        The size decision is made as if the Via named the target's address and port
        65535 (an upper bound on ours); the prepared request differs from that only in
        the Via value, so the size is its length corrected by the two Via lengths."""
        if self._streams is None:
            raise TransportFailure("endpoint not started")
        ip = _address_of(target.address or target.host)
        if ip is None:
            raise TransportFailure(f"target {target.host} has no address (resolve it first)")
        branch = new_branch()
        ready: tuple[SipRequest, Address, bytes, str] | None = None
        t = target.transport.lower()
        if t == "udp" and (listener := self.listener("udp", ":" in ip)) is not None:
            dest = (ip, target.port)
            host, port = self._local_ip(listener.local[0], dest), listener.local[1]
            prepared = add_client_headers(
                req,
                transport="udp",
                host=host,
                port=port,
                branch=branch,
                user_agent=self.config.user_agent,
            )
            data = serialize(prepared)
            size = len(data) + probe_via_delta(target.transport, ip, host, port, branch)
            ready = (prepared, dest, data, branch)
        elif t == "udp":
            probe = add_client_headers(
                req,
                transport=target.transport,
                host=ip,
                port=65535,
                branch=branch,
                user_agent=self.config.user_agent,
            )
            size = len(serialize(probe))
        else:
            size = 0  # a reliable target keeps its transport whatever the size (§18.1.1)
        plan = plan_transport(
            target.transport,
            size,
            max_message_size=self.config.max_message_size,
            path_mtu=self.path_mtu,
            allow_tcp=allow_tcp,
        )
        if plan is None:
            raise MessageTooLarge(f"{size} bytes is too large for udp")
        return ip, plan, size, ready

    async def _await_client(
        self,
        ready: tuple[SipRequest, Address, bytes | None, str | None],
        on_provisional: Callable[[SipResponse], None] | None,
        transport: str = "udp",
    ) -> SipResponse:
        prepared, dest, data, branch = ready
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SipResponse] = loop.create_future()
        key = self.layer.send_request(
            prepared, dest, transport, self.now(), data=data, branch=branch
        )
        self._clients[key] = _Client(future, on_provisional)
        self._drain()
        try:
            return await future
        finally:
            self._clients.pop(key, None)

    async def _request_over(
        self,
        transport: str,
        req: SipRequest,
        ip: str,
        target: Target,
        on_provisional: Callable[[SipResponse], None] | None,
    ) -> SipResponse:
        dest = (ip, target.port)
        host, port = await self._sent_by(transport, dest, target.host)
        prepared = add_client_headers(
            req,
            transport=transport,
            host=host,
            port=port,
            branch=new_branch(),
            user_agent=self.config.user_agent,
        )
        return await self._await_client((prepared, dest, None, None), on_provisional, transport)

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

    # ------------------------------------------------------------------ logs

    def _log_message(
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


# `ip_literal` (an `ipaddress` parse, ~10 µs) memoized for the send path (a fan-out sends
# to the same few addresses thousands of times) and for the source address of every request
# received (`_on_request`: peers send again and again). A pure function of its string.
_address_of = lru_cache(maxsize=4096)(ip_literal)


def probe_via_delta(target_transport: str, ip: str, host: str, port: int, branch: str) -> int:
    """How much longer the request is with the size-decision Via (the target's address,
    port 65535, its transport) than with ours (`host`:`port` over UDP, same branch)."""
    probe = f"SIP/2.0/{target_transport.upper()} {format_host(ip)}:65535;branch={branch};rport"
    ours = f"SIP/2.0/UDP {format_host(host)}:{port};branch={branch};rport"
    return len(probe.encode()) - len(ours.encode())


_HANDLERS: dict[type, Callable[[SipEndpoint, Any], None]] = {
    ev.RequestReceived: SipEndpoint._on_request,
    ev.ResponseReceived: SipEndpoint._on_response,
    ev.StrayResponse: SipEndpoint._on_stray,
    ev.RequestCancelled: SipEndpoint._on_cancelled,
    ev.TransactionTimeout: SipEndpoint._on_timeout,
    ev.TransportError: SipEndpoint._on_transport_error,
    ev.TransactionTerminated: SipEndpoint._on_terminated,
}

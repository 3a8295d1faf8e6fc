"""`UserAgent`: the pure SIP user-agent core that `transport.endpoint.SipEndpoint` drives.

The contract the transaction user sees lives here, with no I/O: `IncomingRequest` (a
request to answer, with where it came from), `RequestHandler` (the TU), `RequestSender`
(what the TU sends through), and the send exceptions (`TransportFailure`,
`TransactionTimeout`, `MessageTooLarge`). The core owns the decisions around one
`TransactionLayer`:

* receive (`receive`): parse, 513 for an oversize request (§18.1.1, §21.5.14), stateless
  error responses for unparseable requests (RFC 3581: to their source), then the layer;
  a new request is refused 503 while draining (the one Retry-After, §21.5.4), validated
  (`validate_request`, §8.2), OPTIONS is answered here (§11.2), the rest goes to the TU;
* the error boundary (`handler_failed`): an exception from the TU becomes a final response;
* client transactions (`plan`, `start_client`): the §18.1.1 transport plan, and one waiter
  per `ClientKey` settled with the final response or an exception;
* drain (`begin_drain`): THE policy, one Retry-After value for every 503 while draining;
* overload (`admission`, issue 27): a new request outside a dialog that the admission
  callable refuses is answered 503 with its Retry-After before it reaches the layer.

The asyncio side is the `Driver` protocol: it writes bytes (`transmit`), runs a handler's
awaitable under `handler_failed` (`spawn`), re-arms its one timer (`timer_changed`), tells
the time (`now`) and logs the wire (`traced`). Time enters as `now` on every input.
"""

from __future__ import annotations

import inspect
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from gateway.logs import event
from gateway.memo import Memo
from gateway.sip import transaction_events as ev
from gateway.sip.coding import decode_body
from gateway.sip.errors import DropMessage, RemoteProtocolError
from gateway.sip.locate import Target
from gateway.sip.message import SipMessage, SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction import ClientKey, ServerKey, new_branch, server_key_for_request
from gateway.sip.transaction_events import Origin
from gateway.sip.transaction_layer import TransactionLayer
from gateway.sip.ua import SizePlan, format_host, ip_literal, options_response, plan_transport
from gateway.sip.ua import prepare_request as add_client_headers
from gateway.sip.validate import (
    GATEWAY_POLICY,
    UasPolicy,
    error_response,
    validate_request,
    validate_response,
)

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "DialogSender",
    "Driver",
    "EndpointStats",
    "FinalCallback",
    "IncomingRequest",
    "MessageTooLarge",
    "Origin",
    "Prepared",
    "RequestHandler",
    "RequestSender",
    "TransactionTimeout",
    "TransportFailure",
    "UserAgent",
    "address_of",
    "probe_via_delta",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]
# Seconds a client is asked to wait before retrying while we drain (RFC 3261 §20.33).
DEFAULT_RETRY_AFTER = 30
# Keys of requests refused for overload, remembered per generation (two generations): at
# 8,000 refusals/s that is 4 s or more, longer than a copy waits in a receive buffer.
REFUSED_MEMO = 32768


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
    return an awaitable that the driver runs as a task under the error boundary."""

    def handle(self, request: IncomingRequest) -> Awaitable[None] | None: ...


FinalCallback = Callable[[SipResponse | None, Exception | None], None]


class RequestSender(Protocol):
    """What the TU sends requests through (`SipEndpoint` is one): `request` awaits the
    final response, `request_nowait` calls `on_final(response, None)` or
    `on_final(None, exc)`. Both raise/report the exceptions above."""

    async def request(
        self,
        req: SipRequest,
        target: Target,
        *,
        on_provisional: Callable[[SipResponse], None] | None = None,
        allow_tcp: bool = True,
    ) -> SipResponse: ...

    def request_nowait(
        self,
        req: SipRequest,
        target: Target,
        on_final: FinalCallback,
        *,
        allow_tcp: bool = True,
    ) -> None: ...


class DialogSender(RequestSender, Protocol):
    """What an INVITE dialog usage sends through, beyond `RequestSender` (`SipEndpoint`
    is one): the CANCEL of an INVITE we sent (§9.1) and the ACK for a 2xx, which is no
    transaction (§13.2.2.4, §17.1.1.3)."""

    def cancel(self, invite: SipRequest) -> bool:
        """CANCEL the pending client INVITE with `invite`'s Call-ID and CSeq (as given to
        `request`). False when there is none in Proceeding (no 1xx yet, or already
        final): the caller retries after the first provisional response."""

    async def ack(self, ack: SipRequest, target: Target) -> None:
        """Send the ACK for a 2xx (built from the dialog: its route set, the INVITE's
        CSeq number) with our Via and a fresh branch; each retransmission of that 2xx is
        answered with the same ACK by the core. Raises TransportFailure."""


class Driver(Protocol):
    """The I/O side of a `UserAgent` (the asyncio `SipEndpoint`, or a test double)."""

    def now(self) -> float: ...

    def transmit(self, transport: str, dest: Address, data: bytes) -> None:
        """Write `data` to `dest` over `transport` (lower case); OSError if it cannot."""

    def spawn(self, request: IncomingRequest, work: Awaitable[None]) -> None:
        """Run a handler's `work`; an exception from it goes to `handler_failed`."""

    def timer_changed(self, deadline: float | None) -> None:
        """Call `handle_timer` at `deadline` (None: no timer)."""

    def traced(
        self, direction: str, msg: SipMessage, transport: str, peer: Address, data: bytes
    ) -> None:
        """A message received ("in") or sent ("out"), for the wire log."""


@dataclass
class EndpointStats:
    """Plain counters for the metrics endpoint."""

    requests_in: int = 0
    responses_in: int = 0
    requests_out: int = 0
    responses_out: int = 0
    retransmissions: int = 0  # requests/responses we re-sent (Timers A, E, G)
    retransmissions_in: int = 0  # request retransmissions absorbed by the layer
    parse_errors: int = 0
    handler_errors: int = 0
    overload_refused: int = 0  # new requests answered 503 by overload control


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
    _ua: UserAgent = field(repr=False)
    to_tag: str = field(default_factory=lambda: secrets.token_hex(6))
    final_sent: bool = False
    cancelled: bool = False
    # called once when a CANCEL ended this INVITE (the layer answered 200 and 487, §9.2)
    on_cancel: Callable[[], None] | None = None
    _success: SipResponse | None = field(default=None, repr=False)

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
        if 200 <= response.status < 300 and self.request.method == "INVITE":
            self._success = response
        return self._ua.respond(self.server_key, response)

    def resend_success(self) -> bool:
        """Retransmit the 2xx sent to this INVITE (the TU's job until the ACK, RFC 3261
        §13.3.1.4) through its server transaction, which accepts it in the RFC 6026
        Accepted state. False once that transaction is gone (Timer L, 64*T1)."""
        if self._success is None or self.server_key is None:
            return False
        return self._ua.respond(self.server_key, self._success)

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


@dataclass(slots=True)
class _Waiter:
    """A client transaction's TU: `on_final` once, then the waiter is forgotten."""

    on_final: FinalCallback
    on_provisional: Callable[[SipResponse], None] | None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request with our Via, where it goes, and (UDP) its bytes and branch."""

    request: SipRequest
    dest: Address
    data: bytes | None = None
    branch: str | None = None


# `ip_literal` (an `ipaddress` parse, ~10 µs) memoized for the send path (a fan-out sends
# to the same few addresses thousands of times) and for the source address of every request
# received (peers send again and again). A pure function of its string; only IP literals
# are kept (a host name is parsed again, as it rarely comes here).
_ADDRESSES: Memo[str, str] = Memo(4096)


def address_of(host: str) -> str | None:
    """`ip_literal(host)`, remembered."""
    ip = _ADDRESSES.peek(host)
    if ip is None:
        ip = ip_literal(host)
        if ip is not None:
            _ADDRESSES.put(host, ip)
    return ip


def probe_via_delta(target_transport: str, ip: str, host: str, port: int, branch: str) -> int:
    """How much longer the request is with the size-decision Via (the target's address,
    port 65535, its transport) than with ours (`host`:`port` over UDP, same branch)."""
    probe = f"SIP/2.0/{target_transport.upper()} {format_host(ip)}:65535;branch={branch};rport"
    ours = f"SIP/2.0/UDP {format_host(host)}:{port};branch={branch};rport"
    return len(probe.encode()) - len(ours.encode())


class UserAgent:
    """One transaction layer, the receive decisions, client waiters, drain, the boundary."""

    def __init__(
        self,
        handler: RequestHandler,
        driver: Driver,
        *,
        max_message_size: int,
        user_agent: str | None = None,
        policy: UasPolicy = GATEWAY_POLICY,
        timers: TimerConfig | None = None,
        path_mtu: int | None = None,
        retry_after: int = DEFAULT_RETRY_AFTER,
    ) -> None:
        self.handler = handler
        self.driver = driver
        self.max_message_size = max_message_size
        self.user_agent = user_agent
        self.policy = replace(policy, max_message_size=max_message_size)
        self.path_mtu = path_mtu
        self.retry_after = retry_after
        self.layer = TransactionLayer(timers or TimerConfig())
        self.stats = EndpointStats()
        self.draining = False
        # Overload control (issue 27, set by the composition root): called for each new
        # request outside a dialog; None admits it, an int refuses it 503 with that
        # Retry-After. In-dialog requests, ACK, CANCEL, BYE, NOTIFY, PRACK and
        # retransmissions are never refused by it (they end work already admitted).
        self.admission: Callable[[], int | None] | None = None
        self._refused: Memo[ev.ServerKeyT, int] = Memo(REFUSED_MEMO)
        self._refused_old: Memo[ev.ServerKeyT, int] = Memo(REFUSED_MEMO)
        self.processing = False  # inside `process`: what is queued will be sent
        self.unsent = 0  # client requests started (by the driver) since the last send
        self._clients: dict[ClientKey, _Waiter] = {}
        self._incoming: dict[ev.ServerKeyT, IncomingRequest] = {}
        # INVITE client transactions by (Call-ID, CSeq number): what `cancel_invite` finds
        self._invites: dict[tuple[str, int], ClientKey] = {}
        self._invite_ids: dict[ClientKey, tuple[str, int]] = {}  # the reverse, to forget
        # ACKs we sent for 2xx, by (Call-ID, CSeq number, To tag): each 2xx retransmission
        # gets the same ACK again (§13.2.2.4); bounded, as a peer may retransmit for 64*T1
        self._acks: Memo[tuple[str, int, str], tuple[bytes, Address, str, SipRequest]] = Memo(4096)
        self._send_errors: dict[Any, str] = {}
        self._allow = tuple(sorted(self.policy.methods))

    # ------------------------------------------------------------------ drain

    def begin_drain(self) -> None:
        """From now on, new requests are answered 503 with Retry-After (RFC 3261 §21.5.4)."""
        self.draining = True

    def _refuse_draining(self, incoming: IncomingRequest) -> None:
        incoming.reply(503, headers=[("Retry-After", str(self.retry_after))])

    # ------------------------------------------------------------------ receive

    def receive(
        self,
        data: bytes,
        source: Address,
        transport: str,
        origin: Origin,
        *,
        now: float,
        reply: Callable[[bytes], None],
    ) -> bool:
        """One datagram or stream frame from `source`. `reply` writes a stateless response
        back where the message came from (OSError if it cannot). True: the message broke
        the framing, close its connection (§18.3)."""
        try:
            msg = parse_message(data, allow=self._allow)
        except DropMessage as exc:
            log.debug("dropped message from %s: %s", source, exc)
            return False
        except RemoteProtocolError as exc:
            self.stats.parse_errors += 1
            event(log, logging.DEBUG, "unparseable request", peer=source, error=exc.message)
            self._stateless(error_response(exc), reply)
            return exc.fatal
        self.driver.traced("in", msg, transport, source, data)
        if isinstance(msg, SipResponse):
            try:
                validate_response(msg)
            except DropMessage as exc:
                log.debug("dropped response from %s: %s", source, exc)
                return False
            self.stats.responses_in += 1
            self.layer.receive(msg, source, transport, now)
            self.process()
            return False
        self.stats.requests_in += 1
        if len(data) > self.max_message_size:  # §18.1.1 / RFC 3261 §21.5.14
            self._stateless(make_response(msg, 513, to_tag=secrets.token_hex(6)), reply)
            return False
        key = _server_key(msg)
        if key is not None and self.layer.state_of(key) is not None:
            self.stats.retransmissions_in += 1  # the layer answers it again (§17.2.3)
        elif self.admission is not None and not self.draining and _sheddable(msg):
            retry_after = self._refused_before(key)
            if retry_after is None:
                retry_after = self.admission()
            else:
                self.stats.retransmissions_in += 1
            if retry_after is not None:  # overload: refused before any state is kept
                self._refuse_overloaded(msg, key, retry_after, reply)
                return False
        try:
            # `received` carries a bare IPv6 address (RFC 3261 §25.1 via-received).
            self.layer.receive(msg, source, transport, now, origin)
        except RemoteProtocolError as exc:
            exc.headers, exc.method = msg.headers, msg.method
            self._stateless(error_response(exc, to_tag=secrets.token_hex(6)), reply)
        self.process()
        return False

    def _refused_before(self, key: ev.ServerKeyT | None) -> int | None:
        """The Retry-After a copy of this request was refused with, recently."""
        if key is None:
            return None
        return self._refused.peek(key) or self._refused_old.peek(key)

    def _refuse_overloaded(
        self,
        req: SipRequest,
        key: ev.ServerKeyT | None,
        retry_after: int,
        reply: Callable[[bytes], None],
    ) -> None:
        """503 + Retry-After (RFC 3261 §21.5.4) without a server transaction (§8.2.7: a
        stateless answer): nothing of a refused request but its key outlives this call,
        so overload cannot grow memory. The key (in two `Memo` generations, at least
        `REFUSED_MEMO` requests) makes a retransmission that was already queued behind
        the refused copy get the same 503, never an admission (its sender would see a 503
        for a message that was delivered). An INVITE keeps its transaction (the ACK of
        the 503 must be absorbed): `_on_request`."""
        if key is not None and self._refused.peek(key) is None:
            if len(self._refused) >= REFUSED_MEMO:
                self._refused_old, self._refused = self._refused, Memo(REFUSED_MEMO)
            self._refused.put(key, retry_after)
        headers = [("Retry-After", str(retry_after))]
        self.stats.overload_refused += 1
        resp = make_response(req, 503, to_tag=secrets.token_hex(6), headers=headers)
        self._stateless(resp, reply)

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
        self.driver.traced("out", response, "", ("", 0), data)

    def handle_timer(self, now: float) -> None:
        """The driver's timer fired (at or after the deadline it was given)."""
        self.layer.handle_timer(now)
        self.process()

    # ------------------------------------------------------------------ events

    def process(self) -> None:
        """Send what the layer has queued and handle its events until both are empty;
        then tell the driver the next deadline. Re-entrant calls return at once."""
        if self.processing:
            return
        self.processing = True
        self.unsent = 0
        layer = self.layer
        try:
            while True:
                outgoing = layer.messages_to_send()
                for out in outgoing:
                    self._send(out)
                e = layer.next_event()
                if e is not None:
                    try:
                        _HANDLERS[type(e)](self, e)
                    except Exception:  # a bug: keep serving the other transactions
                        log.exception("error handling %s", type(e).__name__)
                elif not outgoing:
                    break
        finally:
            self.processing = False
        self.driver.timer_changed(layer.get_timer())

    def send_queued(self) -> None:
        """Send what the layer has queued, handling no event (no TU callback runs): a
        burst of requests started in one loop turn leaves in chunks as it is built."""
        self.processing = True
        self.unsent = 0
        try:
            for out in self.layer.messages_to_send():
                self._send(out)
        finally:
            self.processing = False

    def _on_request(self, e: ev.RequestReceived) -> None:
        origin = e.origin
        incoming = IncomingRequest(
            e.request,
            (address_of(e.source[0]) or e.source[0], e.source[1]),
            e.transport,
            origin.listener,
            origin.connection_id,
            origin.peer_certificate,
            e.server_key,
            self,
        )
        req = e.request
        if e.server_key is None or req.method == "ACK":
            self.dispatch(incoming)
            return
        if req.method == "INVITE":  # only a CANCEL looks it up again (_on_cancelled)
            self._incoming[e.server_key] = incoming
        if self.draining:
            self._refuse_draining(incoming)
            return
        if req.method == "INVITE" and req.to_tag is None and self.admission is not None:
            # a new INVITE (not a re-INVITE in a dialog) is refused with its transaction
            retry_after = self.admission()
            if retry_after is not None:
                self.stats.overload_refused += 1
                incoming.reply(503, headers=[("Retry-After", str(retry_after))])
                return
        try:
            validate_request(req, self.policy)
            # a coded body (deflate, gzip) is decoded for the TU, within the size bound
            incoming.request = decode_body(req, self.policy.max_message_size)
        except RemoteProtocolError as exc:
            exc.headers, exc.method = req.headers, req.method
            resp = error_response(exc, to_tag=incoming.to_tag)
            if resp is not None:
                incoming.respond(resp)
            return
        if req.method == "OPTIONS":
            incoming.respond(
                options_response(req, self.policy, to_tag=incoming.to_tag, server=self.user_agent)
            )
            return
        self.dispatch(incoming)

    def _on_response(self, e: ev.ResponseReceived) -> None:
        waiter = self._clients.get(e.client_key)
        if waiter is None:
            self._reack(e.response)
            return
        if e.response.status < 200:
            if waiter.on_provisional is not None:
                waiter.on_provisional(e.response)
            return
        del self._clients[e.client_key]
        waiter.on_final(e.response, None)

    def _on_cancelled(self, e: ev.RequestCancelled) -> None:
        incoming = self._incoming.get(e.invite_key)
        if incoming is not None:
            incoming.cancelled = True
            incoming.final_sent = True  # the layer answered 487
            if incoming.on_cancel is not None:
                incoming.on_cancel()

    def _fail_client(self, key: Any, exc: Exception) -> None:
        waiter = self._clients.pop(key, None) if isinstance(key, ClientKey) else None
        if waiter is not None:
            waiter.on_final(None, exc)

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
            ids = self._invite_ids.pop(e.key, None) if e.key.method == "INVITE" else None
            if ids is not None and self._invites.get(ids) == e.key:
                del self._invites[ids]
        else:
            self._incoming.pop(e.key, None)

    def _on_stray(self, e: ev.StrayResponse) -> None:
        if self._reack(e.response):
            return
        log.debug("stray response %s from %s dropped", e.response.status, e.source)

    # ------------------------------------------------------------------ the error boundary

    def dispatch(self, incoming: IncomingRequest) -> None:
        """Run the handler; any exception becomes a final response (the one boundary)."""
        try:
            result = self.handler.handle(incoming)
        except Exception as exc:
            self.handler_failed(incoming, exc)
            return
        if result is not None and inspect.isawaitable(result):
            self.driver.spawn(incoming, result)

    def handler_failed(self, incoming: IncomingRequest, exc: Exception) -> None:
        """The handler raised `exc`: answer what it left unanswered. An exception with an
        int `sip_status` (`mappings.errors.MappingError`) is that status; a
        `RemoteProtocolError` its status and headers; anything else a bug, 500."""
        req = incoming.request
        cseq = req.cseq
        fields = {"call_id": req.call_id, "cseq": None if cseq is None else str(cseq)}
        sip_status = getattr(exc, "sip_status", None)
        extra: tuple[tuple[str, str], ...] = ()
        if isinstance(sip_status, int):
            event(log, logging.INFO, "request refused", status=sip_status, **fields)
            status, reason = sip_status, None
        elif isinstance(exc, RemoteProtocolError):
            event(log, logging.INFO, "request refused", status=exc.status, **fields)
            status, reason, extra = exc.status, exc.reason, exc.extra_headers
        else:
            self.stats.handler_errors += 1
            log.error("handler failed", exc_info=exc, extra={"fields": fields})
            status, reason = 500, None
        if not incoming.final_sent and incoming.server_key is not None:
            incoming.reply(status, reason, headers=extra)

    # ------------------------------------------------------------------ send

    def respond(self, key: ev.ServerKeyT, response: SipResponse) -> bool:
        sent = self.layer.send_response(response, self.driver.now(), key)
        self.process()
        return sent

    def _send(self, out: ev.Outgoing) -> None:
        t = out.transport.lower()
        stats = self.stats
        if out.retransmission:
            stats.retransmissions += 1
        if isinstance(out.message, SipResponse):
            stats.responses_out += 1
        else:
            stats.requests_out += 1
        try:
            self.driver.transmit(t, out.dest, out.data)
        except OSError as exc:
            event(log, logging.INFO, "send failed", dest=out.dest, transport=t, error=str(exc))
            if out.key is not None:
                self._send_errors[out.key] = f"{t} to {out.dest[0]}:{out.dest[1]}: {exc}"
                self.layer.transport_error(out.key, self.driver.now())
            return
        self.driver.traced("out", out.message, t, out.dest, out.data)

    # ------------------------------------------------------------------ client transactions

    @property
    def clients(self) -> dict[ClientKey, _Waiter]:
        """The client transactions waiting for a final response (the driver's `stop`)."""
        return self._clients

    def plan(
        self,
        req: SipRequest,
        target: Target,
        allow_tcp: bool,
        udp_sent_by: Callable[[Address], Address | None],
    ) -> tuple[str, SizePlan, int, Prepared | None]:
        """The target's address, the transport plan (§18.1.1) and the request's size
        with our Via; for a UDP target with a UDP listener (`udp_sent_by(dest)` gives its
        Via sent-by, None without one), also the request prepared for it.

        The size decision is made as if the Via named the target's address and port
        65535 (an upper bound on ours); the prepared request differs from that only in
        the Via value, so the size is its length corrected by the two Via lengths.
        Raises TransportFailure (no address) and MessageTooLarge."""
        ip = address_of(target.address or target.host)
        if ip is None:
            raise TransportFailure(f"target {target.host} has no address (resolve it first)")
        branch = new_branch()
        ready: Prepared | None = None
        t = target.transport.lower()
        dest = (ip, target.port)
        sent_by = udp_sent_by(dest) if t == "udp" else None
        if sent_by is not None:
            host, port = sent_by
            prepared = add_client_headers(
                req,
                transport="udp",
                host=host,
                port=port,
                branch=branch,
                user_agent=self.user_agent,
            )
            data = serialize(prepared)
            size = len(data) + probe_via_delta(target.transport, ip, host, port, branch)
            ready = Prepared(prepared, dest, data, branch)
        elif t == "udp":
            probe = add_client_headers(
                req,
                transport=target.transport,
                host=ip,
                port=65535,
                branch=branch,
                user_agent=self.user_agent,
            )
            size = len(serialize(probe))
        else:
            size = 0  # a reliable target keeps its transport whatever the size (§18.1.1)
        plan = plan_transport(
            target.transport,
            size,
            max_message_size=self.max_message_size,
            path_mtu=self.path_mtu,
            allow_tcp=allow_tcp,
        )
        if plan is None:
            raise MessageTooLarge(f"{size} bytes is too large for udp")
        return ip, plan, size, ready

    def prepare(self, req: SipRequest, transport: str, dest: Address, sent_by: Address) -> Prepared:
        """`req` with our Via (`sent_by`, a fresh branch), Max-Forwards and User-Agent."""
        host, port = sent_by
        prepared = add_client_headers(
            req,
            transport=transport,
            host=host,
            port=port,
            branch=new_branch(),
            user_agent=self.user_agent,
        )
        return Prepared(prepared, dest)

    def start_client(
        self,
        ready: Prepared,
        transport: str,
        now: float,
        on_final: FinalCallback,
        on_provisional: Callable[[SipResponse], None] | None = None,
    ) -> ClientKey:
        """A new client transaction; `on_final` is called once from `process`, with the
        final response or the exception (TransactionTimeout, TransportFailure). Nothing is
        sent before `process` (or `send_queued`)."""
        key = self.layer.send_request(
            ready.request, ready.dest, transport, now, data=ready.data, branch=ready.branch
        )
        self._clients[key] = _Waiter(on_final, on_provisional)
        req = ready.request
        if req.method == "INVITE" and req.call_id is not None and req.cseq is not None:
            ids = (req.call_id, req.cseq.seq)
            self._invites[ids] = key
            self._invite_ids[key] = ids
        return key

    def cancel_invite(self, call_id: str, seq: int, now: float) -> bool:
        """CANCEL our INVITE (Call-ID, CSeq number) if it is in Proceeding (§9.1); the
        CANCEL's own response is of no interest (the INVITE gets 487 or a final)."""
        key = self._invites.get((call_id, seq))
        if key is None:
            return False
        cancel = self.layer.cancel_client(key, now)
        if cancel is None:
            return False
        self._clients[cancel] = _Waiter(lambda response, exc: None, None)
        self.process()
        return True

    def send_ack(self, ready: Prepared, transport: str) -> None:
        """Send the ACK for a 2xx (no transaction, §17.1.1.3) and remember it for the 2xx
        retransmissions (`_reack`)."""
        ack = ready.request
        data = ready.data or serialize(ack)
        cseq, tag = ack.cseq, ack.to_tag
        if ack.call_id is not None and cseq is not None and tag is not None:
            self._acks.put((ack.call_id, cseq.seq, tag), (data, ready.dest, transport, ack))
        self.layer.send_raw(data, ready.dest, transport, ack)
        self.process()

    def _reack(self, response: SipResponse) -> bool:
        """A 2xx to an INVITE nobody waits for any more: a retransmission (§13.2.2.4)."""
        cseq, tag = response.cseq, response.to_tag
        if not response.is_success or cseq is None or cseq.method != "INVITE" or tag is None:
            return False
        sent = self._acks.peek((response.call_id or "", cseq.seq, tag))
        if sent is None:
            return False
        data, dest, transport, ack = sent
        self.layer.send_raw(data, dest, transport, ack, retransmission=True)
        return True

    def forget_client(self, key: ClientKey) -> None:
        """The TU no longer waits (its task was cancelled): later responses are dropped."""
        self._clients.pop(key, None)

    def fail_clients(self, exc: Exception) -> None:
        """Settle every waiting client transaction with `exc` (the driver stopped)."""
        clients, self._clients = self._clients, {}
        for waiter in clients.values():
            waiter.on_final(None, exc)


def _server_key(req: SipRequest) -> ev.ServerKeyT | None:
    """The server transaction key of a request (§17.2.3); None for ACK, CANCEL (matched
    by the layer against the INVITE) and requests without a usable Via."""
    if req.method in ("ACK", "CANCEL"):
        return None
    try:
        key = server_key_for_request(req)
    except RemoteProtocolError:
        return None
    return key if isinstance(key, ServerKey) else None


# Never refused statelessly for overload: requests that end or continue work already
# admitted, and INVITE (refused in `_on_request`, with the transaction its ACK needs).
_NEVER_SHED = frozenset({"ACK", "CANCEL", "BYE", "NOTIFY", "PRACK", "INVITE"})


def _sheddable(req: SipRequest) -> bool:
    """A new request outside a dialog (no To tag, RFC 3261 §12.2), refused statelessly
    under overload; INVITE is refused by `_on_request` with its transaction."""
    return req.method not in _NEVER_SHED and req.to_tag is None


_HANDLERS: dict[type, Callable[[UserAgent, Any], None]] = {
    ev.RequestReceived: UserAgent._on_request,
    ev.ResponseReceived: UserAgent._on_response,
    ev.StrayResponse: UserAgent._on_stray,
    ev.RequestCancelled: UserAgent._on_cancelled,
    ev.TransactionTimeout: UserAgent._on_timeout,
    ev.TransportError: UserAgent._on_transport_error,
    ev.TransactionTerminated: UserAgent._on_terminated,
}

"""The transaction layer of one SIP endpoint, sans-I/O (aioquic shape, STYLE.md).

Drive it with `receive(msg, source, transport, now)`, `send_request`, `send_response`,
`transport_error` and `handle_timer(now)`; re-arm one timer at `get_timer()`; drain
`next_event()` and `messages_to_send()`. All transactions share one heap of deadlines
with lazy deletion (a timer is current only while its (deadline, seq) is still recorded
on its transaction), so there is no task or callback per transaction.

Completed non-INVITE server transactions (§17.2.2: they only absorb retransmissions for
Timer J, 32 s over UDP) leave the general table for a side table of flat tuples: key ->
(response bytes, destination, transport, response summary, J deadline), with J on a
FIFO (every J has the same duration, so the FIFO is in deadline order). Those tuples
hold only atoms, so the garbage collector untracks them at the first collection that
sees them: at thousands of MESSAGEs/s the hundreds of thousands of completed
transactions cost full collections nothing to traverse (issue 11).
"""

from __future__ import annotations

import heapq
import logging
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import MAGIC_COOKIE, split_comma
from gateway.sip.message import Headers, SipMessage, SipRequest, SipResponse, make_response
from gateway.sip.serializer import serialize
from gateway.sip.timers import TimerConfig, TimerName, duration, next_retransmit_interval
from gateway.sip.transaction import (
    ALIVE,
    INITIAL,
    INITIAL_TIMERS,
    TABLES,
    TIMER_INPUTS,
    Action,
    ClientKey,
    Input,
    Kind,
    LegacyServerKey,
    ServerKey,
    State,
    Transaction,
    TransactionKey,
    client_key_for_response,
    make_ack,
    make_cancel,
    server_key_for_request,
)
from gateway.sip.transaction_events import (
    NO_ORIGIN,
    Address,
    Event,
    Origin,
    Outgoing,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    ServerKeyT,
    StrayResponse,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
)

__all__ = [
    "Event",
    "Outgoing",
    "RequestCancelled",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponse",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimeout",
    "TransportError",
]

log = logging.getLogger(__name__)


def response_destination(request: SipRequest, source: Address, transport: str) -> Address:
    """§18.2.2 (with RFC 3581 §4): where responses to `request` go."""
    via = request.top_via
    reliable = transport.lower() not in ("udp",)
    if via is None or reliable or via.rport_requested:
        return source  # the same connection / symmetric response
    if via.maddr:
        return (via.maddr, via.port or 5060)
    return (source[0], via.port or 5060)  # `received` is the source address


def _stamp_received(request: SipRequest, source: Address) -> SipRequest:
    """§18.2.1: add `received` when sent-by differs from the source; RFC 3581 §4 `rport`."""
    via = request.top_via
    if via is None or (via.host == source[0] and not via.rport_requested):
        return request
    stamped = str(via.with_received(source[0], source[1]))
    items = list(request.headers.items())
    for i, (name, value) in enumerate(items):
        if name == "Via":
            items[i] = (name, ", ".join([stamped, *split_comma(value)[1:]]))
            break
    return request.with_headers(Headers(items))


_ActionFn = Callable[["TransactionLayer", Transaction, float, "SipMessage | None"], None]

# A completed NIST in the side table. Keys are flattened to tuples of atoms: ServerKey is
# (branch, host, port, method), LegacyServerKey its seven fields.
_Flat = tuple[str | int | None, ...]
# (bytes, host, port, transport, status, reason, To, Call-ID, CSeq, J deadline): no
# nested containers, so one collection untracks it.
_Completed = tuple[bytes, str, int, str, int, str, str | None, str | None, str | None, float]
_SUMMARY = ("To", "Call-ID", "CSeq")


def _flat(key: ServerKeyT) -> _Flat:
    if isinstance(key, ServerKey):
        return (key.branch, key.host, key.port, key.method)
    return (key.uri, key.to_tag, key.from_tag, key.call_id, key.seq, key.via, key.method)


def _unflat(flat: _Flat) -> ServerKeyT:
    if len(flat) == 4:
        return ServerKey(*flat)  # type: ignore[arg-type]
    return LegacyServerKey(*flat)  # type: ignore[arg-type]


def _summary_response(entry: _Completed) -> SipResponse:
    """Status, reason and the To, Call-ID and CSeq of the final response: what a
    retransmission's `Outgoing.message` carries for the glue's counters and log lines."""
    values = zip(_SUMMARY, entry[6:9], strict=True)
    return SipResponse(entry[4], entry[5], Headers([(n, v) for n, v in values if v is not None]))


# --------------------------------------------------------------------------- the layer


class TransactionLayer:
    """Every client and server transaction of one endpoint (§17)."""

    def __init__(
        self,
        config: TimerConfig | None = None,
        *,
        encode: Callable[[SipMessage], bytes] = serialize,
        tag_factory: Callable[[], str] = lambda: secrets.token_hex(6),
    ) -> None:
        self.config = config or TimerConfig()
        self._encode = encode
        self._new_tag = tag_factory
        self._txs: dict[TransactionKey, Transaction] = {}
        self._completed: dict[_Flat, _Completed] = {}  # completed NISTs (module docstring)
        self._j_at: deque[float] = deque()  # the Timer J FIFO: deadlines ...
        self._j_keys: deque[_Flat] = deque()  # ... and keys, in step
        self._heap: list[tuple[float, int, TransactionKey, TimerName]] = []
        self._seq = 0
        self._events: deque[Event] = deque()
        self._out: list[Outgoing] = []

    # -- output ----------------------------------------------------------------------

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def messages_to_send(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def state_of(self, key: TransactionKey) -> State | None:
        """The transaction's state, None once terminated (or never created)."""
        tx = self._txs.get(key)
        if tx is not None:
            return tx.state
        if not isinstance(key, ClientKey) and _flat(key) in self._completed:
            return State.COMPLETED
        return None

    def __len__(self) -> int:
        return len(self._txs) + len(self._completed)

    # -- input from the TU -----------------------------------------------------------

    def send_request(
        self,
        request: SipRequest,
        dest: Address,
        transport: str,
        now: float,
        *,
        data: bytes | None = None,
        branch: str | None = None,
    ) -> ClientKey:
        """Start a client transaction (§17.1). The TU has set the top Via with a fresh
        RFC 3261 branch (§8.1.1.7). ACK for a 2xx is not a transaction: `send_stateless`.
        `data`, when given, is the request already encoded (the glue measured it);
        `branch`, the top Via's branch as the glue wrote it (spares parsing the Via)."""
        if request.method == "ACK":
            raise LocalProtocolError("ACK is sent with send_stateless (§17.1.1.3, §13.2.2.4)")
        if branch is None or not branch.startswith(MAGIC_COOKIE) or branch == MAGIC_COOKIE:
            via = request.top_via
            branch = None if via is None or not via.rfc3261_branch else via.branch
        cseq = request.cseq
        if branch is None or cseq is None:
            raise LocalProtocolError("request needs a top Via with an RFC 3261 branch and CSeq")
        key = ClientKey(branch, cseq.method)
        if key in self._txs:
            raise LocalProtocolError(f"client transaction {key} exists")
        kind = Kind.ICT if request.method == "INVITE" else Kind.NICT
        tx = Transaction(kind, key, request, dest, transport, INITIAL[kind])
        self._txs[key] = tx
        if data is None:
            data = self._encode(request)
        self._out.append(Outgoing(data, dest, transport, request, key, False))
        tx.last_sent = data
        for name in INITIAL_TIMERS[kind]:
            self._start_named(tx, name, now)
        return key

    def send_response(
        self, response: SipResponse, now: float, key: ServerKeyT | None = None
    ) -> bool:
        """Hand a response to its server transaction. `key` may be omitted for requests
        with an RFC 3261 branch. False if the transaction is gone or in a state that
        discards it (e.g. a final response after the layer answered a CANCEL with 487)."""
        if key is None:
            via, cseq = response.top_via, response.cseq
            if via is None or cseq is None or via.branch is None or not via.rfc3261_branch:
                raise LocalProtocolError("pass server_key for RFC 2543 transactions")
            key = ServerKey(via.branch, via.host.lower(), via.port, cseq.method)
        tx = self._txs.get(key)
        if tx is None:  # gone, or completed (which absorbs TU responses, §17.2.2)
            log.debug("response for gone or completed transaction %s dropped", key)
            return False
        if tx.kind is Kind.IST:
            inp = _IST_TU_INPUTS[min(response.status // 100, 3)]
        elif tx.kind is Kind.NIST:
            inp = Input.TU_PROVISIONAL if response.status < 200 else Input.TU_FINAL
        else:
            raise LocalProtocolError("send_response on a client transaction")
        return self._feed(tx, inp, now, response)

    def send_stateless(self, message: SipMessage, dest: Address, transport: str) -> None:
        """Send outside any transaction (ACK for a 2xx, stateless 4xx for bad requests)."""
        self._out.append(Outgoing(self._encode(message), dest, transport, message))

    def cancel_client(self, key: ClientKey, now: float) -> ClientKey | None:
        """Start the CANCEL of the INVITE client transaction `key` (§9.1): the INVITE's
        top Via (same branch), Request-URI, Call-ID, From, To, CSeq number and Routes, to
        the INVITE's destination over its transport. Only in Proceeding: a CANCEL "SHOULD
        NOT be sent" before a provisional response, and is useless after a final one.
        None when there is nothing to cancel."""
        tx = self._txs.get(key)
        if tx is None or tx.kind is not Kind.ICT or tx.state is not State.PROCEEDING:
            return None
        assert tx.request is not None
        cancel = make_cancel(tx.request)
        return self.send_request(cancel, tx.dest, tx.transport, now, branch=key.branch)

    def send_raw(
        self,
        data: bytes,
        dest: Address,
        transport: str,
        message: SipMessage,
        *,
        retransmission: bool = False,
    ) -> None:
        """Send bytes already encoded outside any transaction (an ACK for a 2xx, again for
        each retransmission of that 2xx, §13.2.2.4)."""
        self._out.append(Outgoing(data, dest, transport, message, None, retransmission))

    def transport_error(self, key: TransactionKey, now: float) -> None:
        """The glue failed to send an `Outgoing` of this transaction (§17.1.4, §17.2.4)."""
        tx = self._txs.get(key)
        if tx is not None:
            self._feed(tx, Input.TRANSPORT_ERROR, now)
        elif not isinstance(key, ClientKey) and self._completed.pop(_flat(key), None) is not None:
            # NIST Completed + transport error -> Terminated (§17.2.2 Figure 8)
            self._events.append(TransportError(key))
            self._events.append(TransactionTerminated(key))

    # -- input from the network ------------------------------------------------------

    def receive(
        self,
        message: SipMessage,
        source: Address,
        transport: str,
        now: float,
        origin: Origin = NO_ORIGIN,
    ) -> None:
        """Feed a message from the network; a new request's `RequestReceived` carries
        `origin` (the listener and connection it came on) for the TU."""
        if isinstance(message, SipResponse):
            self._receive_response(message, source, transport, now)
        elif message.method == "CANCEL":
            self._receive_cancel(_stamp_received(message, source), source, transport, now)
        else:
            self._receive_request(_stamp_received(message, source), source, transport, now, origin)

    def _receive_response(
        self, response: SipResponse, source: Address, transport: str, now: float
    ) -> None:
        try:
            key = client_key_for_response(response)
        except RemoteProtocolError as exc:  # §18.1.2: malformed responses are discarded
            log.info("dropping malformed response: %s", exc)
            return
        tx = None if key is None else self._txs.get(key)
        if tx is None:
            self._events.append(StrayResponse(response, source, transport))
            return
        status = response.status
        if status < 200:
            inp = Input.PROVISIONAL
        elif tx.kind is Kind.NICT:
            inp = Input.FINAL
        else:
            inp = Input.SUCCESS if status < 300 else Input.FAILURE
        self._feed(tx, inp, now, response)

    def _receive_request(
        self, request: SipRequest, source: Address, transport: str, now: float, origin: Origin
    ) -> None:
        key = server_key_for_request(request)
        if request.method == "ACK":
            tx = self._match_ack(request, key)
            if tx is None:  # ACK for a 2xx: no transaction (§17.2.3, RFC 6026 §8.7)
                self._events.append(RequestReceived(request, source, transport, None, origin))
                return
            queued = len(self._events)
            self._feed(tx, Input.ACK, now, request)
            if len(self._events) > queued and origin is not NO_ORIGIN:
                # the ACK for a 2xx in the RFC 6026 Accepted state (`_pass`): its origin
                passed = self._events[queued]
                if isinstance(passed, RequestReceived) and passed.request is request:
                    self._events[queued] = replace(passed, origin=origin)
            return
        tx = self._txs.get(key)
        if tx is not None:
            self._feed(tx, Input.REQUEST, now, request)  # a retransmission
            return
        if self._completed and self._resend_completed(key):
            return
        tx = self._new_server(request, key, source, transport)
        self._events.append(RequestReceived(request, source, transport, key, origin))
        for name in INITIAL_TIMERS[tx.kind]:
            self._start_named(tx, name, now)

    def _resend_completed(self, key: ServerKeyT) -> bool:
        """A request retransmission in NIST Completed gets the very bytes of the final
        response again (§17.2.2); False if `key` is not a completed NIST."""
        entry = self._completed.get(_flat(key))
        if entry is None:
            return False
        msg = _summary_response(entry)
        dest = (entry[1], entry[2])
        self._out.append(Outgoing(entry[0], dest, entry[3], msg, key, retransmission=True))
        return True

    def _compact(self, tx: Transaction, deadline: float) -> None:
        """NIST Completed over an unreliable transport: into the side table until J."""
        resp = tx.last_response
        assert tx.last_sent is not None and resp is not None and not isinstance(tx.key, ClientKey)
        del self._txs[tx.key]
        tx.deadlines.clear()
        flat = _flat(tx.key)
        h = resp.headers
        to, call_id, cseq = h.get("To"), h.get("Call-ID"), h.get("CSeq")
        host, port = tx.dest
        self._completed[flat] = (
            tx.last_sent, host, port, tx.transport, resp.status, resp.reason, to, call_id, cseq,
            deadline,
        )  # fmt: skip
        self._j_at.append(deadline)
        self._j_keys.append(flat)

    def _match_ack(self, ack: SipRequest, key: ServerKeyT) -> Transaction | None:
        """§17.2.3; for RFC 2543 ACKs the To tag must be that of our response."""
        if isinstance(key, ServerKey):
            return self._txs.get(key)
        for candidate in (replace(key, to_tag=None), key):
            tx = self._txs.get(candidate)
            if tx is not None and tx.kind is Kind.IST and tx.to_tag == ack.to_tag:
                return tx
        return None

    def _new_server(
        self, request: SipRequest, key: ServerKeyT, source: Address, transport: str
    ) -> Transaction:
        kind = Kind.IST if request.method == "INVITE" else Kind.NIST
        dest = response_destination(request, source, transport)
        tx = Transaction(kind, key, request, dest, transport, INITIAL[kind])
        self._txs[key] = tx
        return tx

    def _receive_cancel(
        self, cancel: SipRequest, source: Address, transport: str, now: float
    ) -> None:
        """§9.2: answer the CANCEL 200 (481 if nothing matches); a pending INVITE gets 487."""
        key = server_key_for_request(cancel)
        tx = self._txs.get(key)
        if tx is not None:
            self._feed(tx, Input.REQUEST, now, cancel)
            return
        if self._completed and self._resend_completed(key):
            return
        tx = self._new_server(cancel, key, source, transport)
        invite_key = server_key_for_request(cancel, method="INVITE")
        invite = self._txs.get(invite_key)
        if invite is None or invite.kind is not Kind.IST:
            self._feed(tx, Input.TU_FINAL, now, make_response(cancel, 481, to_tag=self._new_tag()))
            return
        if invite.to_tag is None:  # §9.2: the same To tag on both responses
            invite.to_tag = self._new_tag()
        self._feed(tx, Input.TU_FINAL, now, make_response(cancel, 200, to_tag=invite.to_tag))
        if invite.state is State.PROCEEDING:
            assert invite.request is not None  # only NIST forgets its request
            resp = make_response(invite.request, 487, to_tag=invite.to_tag)
            self._feed(invite, Input.TU_FAILURE, now, resp)
            self._events.append(RequestCancelled(invite_key, cancel))

    # -- timers ----------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest live deadline over every transaction."""
        heap, fifo = self._heap_timer(), self._fifo_timer()
        if heap is None or (fifo is not None and fifo < heap):
            return fifo
        return heap

    def _heap_timer(self) -> float | None:
        while self._heap:
            deadline, seq, key, name = self._heap[0]
            tx = self._txs.get(key)
            if tx is not None and tx.deadlines.get(name) == (deadline, seq):
                return deadline
            heapq.heappop(self._heap)  # lazy deletion: cancelled or superseded
        return None

    def _fifo_timer(self) -> float | None:
        at, keys, completed = self._j_at, self._j_keys, self._completed
        while at:
            entry = completed.get(keys[0])
            if entry is not None and entry[9] == at[0]:
                return at[0]
            at.popleft()  # ended early (transport error), or the key is now a later one's
            keys.popleft()
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at `now`, earliest first."""
        while (deadline := self.get_timer()) is not None and deadline <= now:
            if self._j_at and self._j_at[0] == deadline:
                self._j_at.popleft()
                flat = self._j_keys.popleft()
                del self._completed[flat]  # NIST Completed + Timer J -> Terminated
                self._events.append(TransactionTerminated(_unflat(flat)))
                continue
            _, _, key, name = heapq.heappop(self._heap)
            tx = self._txs[key]
            del tx.deadlines[name]
            self._feed(tx, TIMER_INPUTS[name], deadline)

    def _start(self, tx: Transaction, name: TimerName, now: float, interval: float) -> None:
        self._seq += 1
        deadline = now + interval
        tx.deadlines[name] = (deadline, self._seq)
        tx.intervals[name] = interval
        heapq.heappush(self._heap, (deadline, self._seq, tx.key, name))

    def _start_named(self, tx: Transaction, name: TimerName, now: float) -> None:
        d = duration(name, self.config, tx.reliable)
        if d is None:
            return  # not used on this transport
        if d == 0:
            self._feed(tx, TIMER_INPUTS[name], now)  # a zero timer fires at once
        else:
            self._start(tx, name, now, d)

    # -- the driver ------------------------------------------------------------------

    def _feed(self, tx: Transaction, inp: Input, now: float, msg: SipMessage | None = None) -> bool:
        """Apply one input through the transaction's table; False if absorbed."""
        row = TABLES[tx.kind].get((tx.state, inp))
        if row is None or self._txs.get(tx.key) is not tx:
            return False
        next_state, actions = row
        if next_state is not tx.state:
            tx.state = next_state
            alive = ALIVE[tx.kind].get(next_state, frozenset())
            for name in [n for n in tx.deadlines if n not in alive]:
                del tx.deadlines[name]
        for action in actions:
            _ACTIONS[action](self, tx, now, msg)
        if tx.state is State.TERMINATED and self._txs.get(tx.key) is tx:
            del self._txs[tx.key]
            tx.deadlines.clear()
            self._events.append(TransactionTerminated(tx.key))
        return True

    def _emit(self, tx: Transaction, msg: SipMessage, data: bytes | None = None) -> bytes:
        """Queue `msg`; `data` given means a retransmission of those very bytes."""
        again = data is not None
        data = self._encode(msg) if data is None else data
        self._out.append(Outgoing(data, tx.dest, tx.transport, msg, tx.key, again))
        return data


_IST_TU_INPUTS = {1: Input.TU_PROVISIONAL, 2: Input.TU_SUCCESS, 3: Input.TU_FAILURE}


# --------------------------------------------------------------------------- actions


def _pass(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
    if isinstance(msg, SipResponse) and isinstance(tx.key, ClientKey):
        layer._events.append(ResponseReceived(msg, tx.key))
    elif isinstance(msg, SipRequest) and not isinstance(tx.key, ClientKey):
        # the ACK for a 2xx in the RFC 6026 Accepted state
        layer._events.append(RequestReceived(msg, tx.dest, tx.transport, tx.key))


def _send(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
    assert isinstance(msg, SipResponse)
    tx.last_sent = layer._emit(tx, msg)
    tx.last_response = msg
    if msg.status < 200:
        tx.provisional_sent = True
    if tx.to_tag is None and msg.status != 100:
        tx.to_tag = msg.to_tag


def _retransmit(
    layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None
) -> None:
    message = tx.last_response or tx.request
    if tx.last_sent is not None and message is not None:
        layer._emit(tx, message, tx.last_sent)


def _send_trying(
    layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None
) -> None:
    if not tx.provisional_sent:
        assert tx.request is not None
        _send(layer, tx, now, make_response(tx.request, 100))


def _retransmit_provisional(
    layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None
) -> None:
    if tx.provisional_sent:
        _retransmit(layer, tx, now, msg)
    else:
        _send_trying(layer, tx, now, msg)


def _send_ack(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
    assert isinstance(msg, SipResponse) and tx.request is not None
    tx.ack = layer._emit(tx, make_ack(tx.request, msg))
    tx.last_response = msg


def _resend_ack(
    layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None
) -> None:
    assert tx.ack is not None and tx.last_response is not None and tx.request is not None
    layer._emit(tx, make_ack(tx.request, tx.last_response), tx.ack)


def _compact(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
    """NIST Completed: start J; on a reliable transport J = 0 ends it at once (§17.2.2),
    otherwise the transaction moves to the side table (module docstring)."""
    d = duration(TimerName.J, layer.config, tx.reliable)
    if not d:
        layer._feed(tx, Input.TIMER_J, now)
    else:
        layer._compact(tx, now + d)


def _timeout(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
    layer._events.append(TransactionTimeout(tx.key))


def _transport_error(
    layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None
) -> None:
    layer._events.append(TransportError(tx.key))


def _starter(name: TimerName) -> _ActionFn:
    def start(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
        layer._start_named(tx, name, now)

    return start


def _doubler(name: TimerName) -> _ActionFn:
    def double(
        layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None
    ) -> None:
        layer._start(
            tx, name, now, next_retransmit_interval(name, tx.intervals[name], layer.config)
        )

    return double


def _e_at_t2(layer: TransactionLayer, tx: Transaction, now: float, msg: SipMessage | None) -> None:
    layer._start(tx, TimerName.E, now, layer.config.t2)  # §17.1.2.2: in Proceeding, every T2


_ACTIONS: dict[Action, _ActionFn] = {
    Action.PASS: _pass,
    Action.SEND: _send,
    Action.RETRANSMIT: _retransmit,
    Action.RETRANSMIT_PROVISIONAL: _retransmit_provisional,
    Action.SEND_TRYING: _send_trying,
    Action.SEND_ACK: _send_ack,
    Action.RESEND_ACK: _resend_ack,
    Action.TIMEOUT: _timeout,
    Action.TRANSPORT_ERROR: _transport_error,
    Action.DOUBLE_A: _doubler(TimerName.A),
    Action.START_D: _starter(TimerName.D),
    Action.DOUBLE_E: _doubler(TimerName.E),
    Action.E_AT_T2: _e_at_t2,
    Action.START_G: _starter(TimerName.G),
    Action.DOUBLE_G: _doubler(TimerName.G),
    Action.START_H: _starter(TimerName.H),
    Action.START_I: _starter(TimerName.I),
    Action.START_K: _starter(TimerName.K),
    Action.START_L: _starter(TimerName.L),
    Action.START_M: _starter(TimerName.M),
    Action.COMPACT: _compact,
}

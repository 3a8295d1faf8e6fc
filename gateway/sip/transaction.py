"""RFC 3261 §17 transaction state machines as tables (with RFC 6026 Accepted states).

Each of the four machines is a dict `(state, input) -> (next state, actions)`. A missing
entry means "absorb": the input is ignored (e.g. a response retransmission in Completed).
`ALIVE[kind][state]` lists the timers that survive entering `state`; the layer cancels
the others. Actions are names; `gateway.sip.transaction_layer` executes them. This module
also holds transaction keys (§17.1.3, §17.2.3) and the requests a transaction derives
(ACK for a non-2xx, §17.1.1.3; CANCEL, §9.1).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field

from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import MAGIC_COOKIE
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.timers import TimerName

__all__ = [
    "ALIVE",
    "INITIAL",
    "INITIAL_TIMERS",
    "RELIABLE_TRANSPORTS",
    "TABLES",
    "Action",
    "ClientKey",
    "Input",
    "Kind",
    "LegacyServerKey",
    "ServerKey",
    "State",
    "Transaction",
    "TransactionKey",
    "client_key_for_response",
    "make_ack",
    "make_cancel",
    "new_branch",
    "server_key_for_request",
]

RELIABLE_TRANSPORTS = frozenset({"tcp", "tls", "sctp", "tls-sctp", "ws", "wss"})


class Kind(enum.Enum):
    ICT = "INVITE client"  # §17.1.1
    NICT = "non-INVITE client"  # §17.1.2
    IST = "INVITE server"  # §17.2.1
    NIST = "non-INVITE server"  # §17.2.2


class State(enum.Enum):
    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"  # RFC 6026 §7.1 / §7.2
    TERMINATED = "Terminated"


class Input(enum.Enum):
    # from the network
    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    FINAL = "200-699"  # non-INVITE client: 2xx and failures behave alike
    REQUEST = "request retransmission"
    ACK = "ACK"
    # from the TU
    TU_PROVISIONAL = "1xx from TU"
    TU_SUCCESS = "2xx from TU"
    TU_FAILURE = "300-699 from TU"
    TU_FINAL = "200-699 from TU"
    # timers and errors
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"
    TIMER_TRYING = "100"
    TRANSPORT_ERROR = "transport error"


TIMER_INPUTS: dict[TimerName, Input] = {t: Input["TIMER_" + t.name] for t in TimerName}


class Action(enum.Enum):
    PASS = "pass to TU"
    SEND = "send the TU's response"
    RETRANSMIT = "retransmit the last message sent"
    RETRANSMIT_PROVISIONAL = "resend the latest provisional, else 100 Trying"  # §17.2.1
    SEND_TRYING = "send 100 Trying unless a provisional was sent"
    SEND_ACK = "build and send ACK"  # §17.1.1.3
    RESEND_ACK = "retransmit ACK"
    TIMEOUT = "inform TU: timeout"
    TRANSPORT_ERROR = "inform TU: transport error"
    DOUBLE_A = "restart A doubled"
    START_D = "start D"
    DOUBLE_E = "restart E doubled, capped at T2"
    E_AT_T2 = "restart E at T2"  # §17.1.2.2 in Proceeding
    START_G = "start G"
    DOUBLE_G = "restart G doubled, capped at T2"
    START_H = "start H"
    START_I = "start I"
    START_K = "start K"
    START_L = "start L"
    START_M = "start M"
    COMPACT = "move to the completed side table (response bytes, destination, Timer J)"


S, I, A = State, Input, Action  # noqa: E741
_Row = tuple[State, tuple[Action, ...]]
_Table = dict[tuple[State, Input], _Row]

# §17.1.1.2 Figure 5 with RFC 6026 §8.4 (2xx -> Accepted, Timer M).
ICT: _Table = {
    (S.CALLING, I.TIMER_A): (S.CALLING, (A.RETRANSMIT, A.DOUBLE_A)),
    (S.CALLING, I.TIMER_B): (S.TERMINATED, (A.TIMEOUT,)),
    (S.CALLING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS,)),
    (S.CALLING, I.SUCCESS): (S.ACCEPTED, (A.PASS, A.START_M)),
    (S.PROCEEDING, I.SUCCESS): (S.ACCEPTED, (A.PASS, A.START_M)),
    (S.CALLING, I.FAILURE): (S.COMPLETED, (A.PASS, A.SEND_ACK, A.START_D)),
    (S.PROCEEDING, I.FAILURE): (S.COMPLETED, (A.PASS, A.SEND_ACK, A.START_D)),
    (S.COMPLETED, I.FAILURE): (S.COMPLETED, (A.RESEND_ACK,)),
    (S.COMPLETED, I.TIMER_D): (S.TERMINATED, ()),
    (S.ACCEPTED, I.SUCCESS): (S.ACCEPTED, (A.PASS,)),  # RFC 6026 §8.4: 2xx retransmits to TU
    (S.ACCEPTED, I.TIMER_M): (S.TERMINATED, ()),
    (S.CALLING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
}

# §17.1.2.2 Figure 6.
NICT: _Table = {
    (S.TRYING, I.TIMER_E): (S.TRYING, (A.RETRANSMIT, A.DOUBLE_E)),
    (S.PROCEEDING, I.TIMER_E): (S.PROCEEDING, (A.RETRANSMIT, A.E_AT_T2)),
    (S.TRYING, I.TIMER_F): (S.TERMINATED, (A.TIMEOUT,)),
    (S.PROCEEDING, I.TIMER_F): (S.TERMINATED, (A.TIMEOUT,)),
    (S.TRYING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS,)),
    (S.PROCEEDING, I.PROVISIONAL): (S.PROCEEDING, (A.PASS,)),
    (S.TRYING, I.FINAL): (S.COMPLETED, (A.PASS, A.START_K)),
    (S.PROCEEDING, I.FINAL): (S.COMPLETED, (A.PASS, A.START_K)),
    (S.COMPLETED, I.TIMER_K): (S.TERMINATED, ()),
    (S.TRYING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
}

# §17.2.1 Figure 7 with RFC 6026 §8.5-§8.7 (2xx -> Accepted, Timer L; ACK there to TU).
IST: _Table = {
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RETRANSMIT_PROVISIONAL,)),
    (S.PROCEEDING, I.TIMER_TRYING): (S.PROCEEDING, (A.SEND_TRYING,)),
    (S.PROCEEDING, I.TU_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, I.TU_SUCCESS): (S.ACCEPTED, (A.SEND, A.START_L)),
    (S.PROCEEDING, I.TU_FAILURE): (S.COMPLETED, (A.SEND, A.START_G, A.START_H)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RETRANSMIT,)),
    (S.COMPLETED, I.TIMER_G): (S.COMPLETED, (A.RETRANSMIT, A.DOUBLE_G)),
    (S.COMPLETED, I.TIMER_H): (S.TERMINATED, (A.TIMEOUT,)),
    (S.COMPLETED, I.ACK): (S.CONFIRMED, (A.START_I,)),
    (S.CONFIRMED, I.TIMER_I): (S.TERMINATED, ()),
    (S.ACCEPTED, I.ACK): (S.ACCEPTED, (A.PASS,)),
    (S.ACCEPTED, I.TU_SUCCESS): (S.ACCEPTED, (A.SEND,)),
    (S.ACCEPTED, I.TIMER_L): (S.TERMINATED, ()),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
    (S.ACCEPTED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
}

# §17.2.2 Figure 8. Completed only absorbs retransmissions for Timer J (64*T1 over UDP):
# COMPACT starts J and moves the transaction out of the general table into the layer's
# side table of completed NISTs (key -> response bytes and destination, J on a FIFO),
# issue 11: at 10,000 MESSAGEs/s that is 320,000 completed transactions. On a reliable
# transport J = 0 and COMPACT terminates it at once.
NIST: _Table = {
    (S.TRYING, I.TU_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.TRYING, I.TU_FINAL): (S.COMPLETED, (A.SEND, A.COMPACT)),
    (S.PROCEEDING, I.TU_PROVISIONAL): (S.PROCEEDING, (A.SEND,)),
    (S.PROCEEDING, I.TU_FINAL): (S.COMPLETED, (A.SEND, A.COMPACT)),
    (S.PROCEEDING, I.REQUEST): (S.PROCEEDING, (A.RETRANSMIT,)),
    (S.COMPLETED, I.REQUEST): (S.COMPLETED, (A.RETRANSMIT,)),
    (S.COMPLETED, I.TIMER_J): (S.TERMINATED, ()),
    (S.PROCEEDING, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
    (S.COMPLETED, I.TRANSPORT_ERROR): (S.TERMINATED, (A.TRANSPORT_ERROR,)),
}

TABLES: dict[Kind, _Table] = {Kind.ICT: ICT, Kind.NICT: NICT, Kind.IST: IST, Kind.NIST: NIST}
INITIAL: dict[Kind, State] = {
    Kind.ICT: S.CALLING,
    Kind.NICT: S.TRYING,
    Kind.IST: S.PROCEEDING,
    Kind.NIST: S.TRYING,
}

T = TimerName
# Timers started with the transaction (the layer skips those unused on the transport).
INITIAL_TIMERS: dict[Kind, tuple[TimerName, ...]] = {
    Kind.ICT: (T.A, T.B),
    Kind.NICT: (T.E, T.F),
    Kind.IST: (T.TRYING,),
    Kind.NIST: (),
}
# Timers kept running when a state is entered; every other timer is cancelled.
ALIVE: dict[Kind, dict[State, frozenset[TimerName]]] = {
    Kind.ICT: {S.CALLING: frozenset({T.A, T.B})},
    Kind.NICT: {S.TRYING: frozenset({T.E, T.F}), S.PROCEEDING: frozenset({T.E, T.F})},
    Kind.IST: {S.PROCEEDING: frozenset({T.TRYING}), S.COMPLETED: frozenset({T.G, T.H})},
    Kind.NIST: {},
}


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class ClientKey:
    """§17.1.3: top Via branch of the request + CSeq method."""

    branch: str
    method: str


@dataclass(frozen=True, slots=True)
class ServerKey:
    """§17.2.3 for an RFC 3261 branch: branch + sent-by + method (ACK counts as INVITE)."""

    branch: str
    host: str
    port: int | None
    method: str


@dataclass(frozen=True, slots=True)
class LegacyServerKey:
    """§17.2.3 RFC 2543 fallback: Request-URI, To tag, From tag, Call-ID, CSeq, top Via.

    Used when the branch lacks the magic cookie, and for the RFC 4475 §3.2.1 "badbranch"
    case of a branch that is exactly the cookie."""

    uri: str
    to_tag: str | None
    from_tag: str | None
    call_id: str
    seq: int
    via: str
    method: str


TransactionKey = ClientKey | ServerKey | LegacyServerKey


def new_branch() -> str:
    """A fresh RFC 3261 branch (§8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_urlsafe(12)


def client_key_for_response(response: SipResponse) -> ClientKey | None:
    via, cseq = response.top_via, response.cseq
    if via is None or cseq is None or via.branch is None:
        return None
    return ClientKey(via.branch, cseq.method)


def server_key_for_request(
    request: SipRequest, method: str | None = None, to_tag: str | None = None
) -> ServerKey | LegacyServerKey:
    """The key of the transaction `request` belongs to, as if its method were `method`
    (ACK and CANCEL look up their INVITE). `to_tag` overrides the To tag (2543 ACK)."""
    via, cseq = request.top_via, request.cseq
    if via is None or cseq is None:
        raise RemoteProtocolError("request without Via or CSeq")
    m = method or ("INVITE" if request.method == "ACK" else request.method)
    if via.rfc3261_branch:
        assert via.branch is not None
        return ServerKey(via.branch, via.host.lower(), via.port, m)
    if request.call_id is None:
        raise RemoteProtocolError("request without Call-ID")
    tag = request.to_tag if to_tag is None else to_tag
    return LegacyServerKey(
        str(request.uri), tag, request.from_tag, request.call_id, cseq.seq, str(via), m
    )


# --------------------------------------------------------------------------- derived requests


def _derived(original: SipRequest, method: str, to_value: str) -> SipRequest:
    """Common part of the non-2xx ACK (§17.1.1.3) and CANCEL (§9.1): same Request-URI,
    Call-ID, From, CSeq number; one Via equal to the original top Via; its Routes."""
    h = original.headers
    vias, cseq = h.get_all("Via"), original.cseq
    if not vias or cseq is None:
        raise LocalProtocolError("original request lacks Via or CSeq")
    top = original.top_via
    pairs = [("Via", str(top))]
    pairs += [("Route", r) for r in h.get_all("Route")]
    pairs += [
        ("Max-Forwards", h.get("Max-Forwards") or "70"),
        ("From", h.get("From") or ""),
        ("To", to_value),
        ("Call-ID", h.get("Call-ID") or ""),
        ("CSeq", f"{cseq.seq} {method}"),
    ]
    return SipRequest(method, original.uri, Headers(pairs))


def make_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    """ACK for a non-2xx final response: To taken from the response (§17.1.1.3)."""
    return _derived(invite, "ACK", response.headers.get("To") or "")


def make_cancel(invite: SipRequest) -> SipRequest:
    """CANCEL for a pending INVITE (§9.1): To as in the INVITE, same branch."""
    return _derived(invite, "CANCEL", invite.headers.get("To") or "")


# --------------------------------------------------------------------------- state holder


@dataclass(eq=False, slots=True)
class Transaction:
    """Mutable per-transaction state. The layer owns it; nothing else mutates it."""

    kind: Kind
    key: TransactionKey
    request: SipRequest | None
    dest: tuple[str, int]  # where requests (client) or responses (server) go
    transport: str
    state: State
    last_sent: bytes | None = None  # request (client) or latest response (server)
    last_response: SipResponse | None = None  # last sent (server) or received (client)
    ack: bytes | None = None  # ICT: the ACK sent for a non-2xx
    provisional_sent: bool = False
    to_tag: str | None = None  # IST/NIST: the tag our responses carry
    intervals: dict[TimerName, float] = field(default_factory=dict)
    deadlines: dict[TimerName, tuple[float, int]] = field(default_factory=dict)

    @property
    def reliable(self) -> bool:
        return self.transport.lower() in RELIABLE_TRANSPORTS

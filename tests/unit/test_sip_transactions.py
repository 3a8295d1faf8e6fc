"""RFC 3261 §17 transactions (+RFC 6026), two layers joined in memory, a fake clock.

Every message crosses as bytes: serialized by the sender, parsed by the receiver.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.errors import LocalProtocolError
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.parser import parse_message
from gateway.sip.timers import TimerConfig, TimerName, duration
from gateway.sip.transaction import (
    ClientKey,
    LegacyServerKey,
    ServerKey,
    State,
    make_cancel,
)
from gateway.sip.transaction_layer import (
    Event,
    Outgoing,
    RequestCancelled,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportError,
)
from gateway.sip.uri import parse_uri

E = TypeVar("E")
CLIENT = ("192.0.2.1", 5060)
SERVER = ("192.0.2.2", 5060)
CFG = TimerConfig()  # T1 0.5, T2 4, T4 5


def request(
    method: str = "MESSAGE",
    branch: str | None = "z9hG4bKabc1",
    *,
    transport: str = "UDP",
    cseq: int = 1,
    to_tag: str | None = None,
    via_host: str = CLIENT[0],
) -> SipRequest:
    bparam = "" if branch is None else f";branch={branch}"
    to = "<sip:bob@example.org>" + ("" if to_tag is None else f";tag={to_tag}")
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {via_host}:5060{bparam}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=ft1"),
            ("To", to),
            ("Call-ID", "call-1@192.0.2.1"),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    body = b"hello" if method == "MESSAGE" else b""
    return SipRequest(method, parse_uri("sip:bob@192.0.2.2"), headers, body)


Responder = Callable[[SipRequest], SipResponse | None]


def answer(status: int) -> Responder:
    def tu(req: SipRequest) -> SipResponse | None:
        return None if req.method == "ACK" else make_response(req, status, to_tag="srv")

    return tu


def silent(req: SipRequest) -> SipResponse | None:
    return None


@dataclass
class Pair:
    """A client layer and a server layer joined by a lossy in-memory network."""

    responder: Responder = silent
    drop: Callable[[str, Outgoing, int], bool] = lambda side, out, n: False
    transport: str = "udp"
    now: float = 0.0
    client: TransactionLayer = field(default_factory=lambda: _layer("c"))
    server: TransactionLayer = field(default_factory=lambda: _layer("s"))
    wire: list[tuple[float, str, Outgoing]] = field(default_factory=list)
    client_events: list[tuple[float, Event]] = field(default_factory=list)
    server_events: list[tuple[float, Event]] = field(default_factory=list)

    def send(self, req: SipRequest) -> ClientKey:
        key = self.client.send_request(req, SERVER, self.transport, self.now)
        self.pump()
        return key

    def pump(self, max_rounds: int = 50) -> None:
        for _ in range(max_rounds):
            moved = False
            for side, layer, peer, src in (
                ("c", self.client, self.server, CLIENT),
                ("s", self.server, self.client, SERVER),
            ):
                for out in layer.messages_to_send():
                    moved = True
                    n = sum(1 for _, s, _ in self.wire if s == side)
                    self.wire.append((self.now, side, out))
                    if not self.drop(side, out, n):
                        peer.receive(parse_message(out.data), src, out.transport, self.now)
            moved |= self._drain()
            if not moved:
                return
        raise AssertionError("livelock: messages still moving after max_rounds")

    def _drain(self) -> bool:
        moved = False
        while (ev := self.client.next_event()) is not None:
            self.client_events.append((self.now, ev))
        while (ev := self.server.next_event()) is not None:
            moved = True
            self.server_events.append((self.now, ev))
            if isinstance(ev, RequestReceived) and ev.server_key is not None:
                resp = self.responder(ev.request)
                if resp is not None:
                    self.server.send_response(resp, self.now, ev.server_key)
        return moved

    def advance(self, until: float) -> None:
        """Step the fake clock from deadline to deadline up to `until`."""
        while True:
            deadlines = [t for t in (self.client.get_timer(), self.server.get_timer()) if t]
            if not deadlines or min(deadlines) > until:
                break
            self.now = min(deadlines)
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.pump()
        self.now = until

    def sent(self, side: str, start: str) -> list[float]:
        return [t for t, s, out in self.wire if s == side and out.data.startswith(start.encode())]

    def events(self, side: str, kind: type[E]) -> list[tuple[float, E]]:
        evs = self.client_events if side == "c" else self.server_events
        return [(t, e) for t, e in evs if isinstance(e, kind)]


def _layer(prefix: str, config: TimerConfig = CFG) -> TransactionLayer:
    counter = itertools.count(1)
    return TransactionLayer(config, tag_factory=lambda: f"{prefix}{next(counter)}")


def _retransmit_times(first: float, cap: float | None, end: float) -> list[float]:
    """Send times after the first: interval T1 doubling (capped at `cap`) until `end`."""
    times, t, interval = [], 0.0, first
    while t + interval < end:
        t += interval
        times.append(t)
        interval = interval * 2 if cap is None else min(interval * 2, cap)
    return times


# --- timer table (RFC 3261 Table 4, RFC 6026) --------------------------------------------


@pytest.mark.parametrize(
    ("name", "udp", "tcp"),
    [
        (TimerName.A, 0.5, None),
        (TimerName.B, 32.0, 32.0),
        (TimerName.D, 32.0, 0.0),
        (TimerName.E, 0.5, None),
        (TimerName.F, 32.0, 32.0),
        (TimerName.G, 0.5, None),
        (TimerName.H, 32.0, 32.0),
        (TimerName.I, 5.0, 0.0),
        (TimerName.J, 32.0, 0.0),
        (TimerName.K, 5.0, 0.0),
        (TimerName.L, 32.0, 32.0),
        (TimerName.M, 32.0, 32.0),
    ],
)
def test_rfc3261_table4_durations(name: TimerName, udp: float, tcp: float | None) -> None:
    assert duration(name, CFG, reliable=False) == udp
    assert duration(name, CFG, reliable=True) == tcp


def test_timer_config_validation() -> None:
    with pytest.raises(ValueError):
        TimerConfig(t1=5.0, t2=4.0)


# --- non-INVITE client (§17.1.2) --------------------------------------------------------


def test_timer_e_doubles_to_t2_then_f_times_out() -> None:
    pair = Pair(drop=lambda side, out, n: side == "c")  # the request never arrives
    key = pair.send(request())
    pair.advance(40.0)
    assert pair.sent("c", "MESSAGE") == [0.0, *_retransmit_times(0.5, 4.0, 32.0)]
    assert pair.sent("c", "MESSAGE")[1:5] == [0.5, 1.5, 3.5, 7.5]  # §17.1.2.2 17.1.2.2 example
    first = pair.wire[0][2].data
    assert all(out.data is first for _, s, out in pair.wire if s == "c")  # same bytes
    assert [(t, e) for t, e in pair.client_events] == [
        (32.0, TransactionTimeout(key)),
        (32.0, TransactionTerminated(key)),
    ]
    assert pair.client.state_of(key) is None and len(pair.client) == 0


def test_timer_e_every_t2_in_proceeding() -> None:
    def provisional_only(req: SipRequest) -> SipResponse | None:
        return make_response(req, 100)

    # The server's 100 arrives; later client retransmissions are lost.
    pair = Pair(provisional_only, drop=lambda side, out, n: side == "c" and n > 0)
    key = pair.send(request())
    assert pair.client.state_of(key) is State.PROCEEDING
    pair.advance(40.0)
    assert pair.sent("c", "MESSAGE") == [0.0, 0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert pair.events("c", TransactionTimeout) == [(32.0, TransactionTimeout(key))]
    assert len(pair.events("c", ResponseReceived)) == 1


def test_timer_k_over_udp_and_zero_over_tcp() -> None:
    pair = Pair(answer(200))
    key = pair.send(request())
    assert pair.client.state_of(key) is State.COMPLETED
    pair.advance(4.99)
    assert pair.client.state_of(key) is State.COMPLETED
    pair.advance(5.0)
    assert pair.events("c", TransactionTerminated) == [(5.0, TransactionTerminated(key))]

    tcp = Pair(answer(200), transport="tcp")
    key = tcp.send(request(transport="TCP"))
    assert tcp.client.state_of(key) is None  # K = 0 on a reliable transport
    assert [type(e) for _, e in tcp.client_events] == [ResponseReceived, TransactionTerminated]


def test_lost_response_retransmission_absorbed_tu_sees_message_once() -> None:
    # The first 200 is lost; Timer E retransmits; the server answers from Completed.
    pair = Pair(answer(200), drop=lambda side, out, n: side == "s" and n == 0)
    key = pair.send(request())
    pair.advance(0.5)
    assert pair.sent("c", "MESSAGE") == [0.0, 0.5]
    assert pair.sent("s", "SIP/2.0 200") == [0.0, 0.5]
    assert pair.wire[-1][2].data is pair.wire[1][2].data  # the same 200 bytes again
    assert len(pair.events("s", RequestReceived)) == 1
    assert [e.response.status for _, e in pair.events("c", ResponseReceived)] == [200]
    assert pair.client.state_of(key) is State.COMPLETED


def test_timer_j_absorbs_retransmissions_until_64t1() -> None:
    layer = _layer("s")
    req = request()
    layer.receive(req, CLIENT, "udp", 0.0)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and isinstance(ev.server_key, ServerKey)
    key = ev.server_key
    layer.receive(req, CLIENT, "udp", 0.1)  # in Trying: discarded silently
    assert layer.messages_to_send() == [] and layer.next_event() is None
    assert layer.send_response(make_response(req, 200, to_tag="t"), 0.2)  # key from Via
    first = layer.messages_to_send()
    assert [o.dest for o in first] == [CLIENT]
    for t in (1.0, 20.0, 32.1):
        layer.receive(req, CLIENT, "udp", t)
        again = layer.messages_to_send()
        assert [o.data for o in again] == [first[0].data] and layer.next_event() is None
    assert layer.get_timer() == pytest.approx(32.2)
    layer.handle_timer(32.2)
    assert layer.next_event() == TransactionTerminated(key)
    layer.receive(req, CLIENT, "udp", 33.0)  # after J it is a new request
    assert isinstance(layer.next_event(), RequestReceived)


def test_nist_proceeding_resends_provisional_and_drops_late_finals() -> None:
    layer = _layer("s")
    req = request()
    layer.receive(req, CLIENT, "udp", 0.0)
    layer.next_event()
    layer.send_response(make_response(req, 100), 0.0)
    p = layer.messages_to_send()
    layer.receive(req, CLIENT, "udp", 0.5)
    assert [o.data for o in layer.messages_to_send()] == [p[0].data]
    assert layer.send_response(make_response(req, 200, to_tag="x"), 1.0)
    layer.messages_to_send()
    assert not layer.send_response(make_response(req, 500, to_tag="x"), 1.1)  # §17.2.2
    assert layer.messages_to_send() == []


def test_reliable_transport_no_retransmission_f_still_fires() -> None:
    pair = Pair(transport="tcp", drop=lambda side, out, n: True)
    key = pair.send(request(transport="TCP"))
    pair.advance(40.0)
    assert pair.sent("c", "MESSAGE") == [0.0]
    assert pair.events("c", TransactionTimeout) == [(32.0, TransactionTimeout(key))]


def test_server_non_invite_j_zero_over_tcp() -> None:
    pair = Pair(answer(202), transport="tcp")
    pair.send(request(transport="TCP"))
    assert len(pair.server) == 0 and len(pair.client) == 0
    assert [type(e) for _, e in pair.server_events] == [RequestReceived, TransactionTerminated]


# --- INVITE client (§17.1.1, RFC 6026) --------------------------------------------------


def test_timer_a_doubles_without_cap_and_b_times_out() -> None:
    pair = Pair(drop=lambda side, out, n: True)
    key = pair.send(request("INVITE"))
    pair.advance(40.0)
    assert pair.sent("c", "INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert pair.events("c", TransactionTimeout) == [(32.0, TransactionTimeout(key))]


def test_provisional_stops_a_and_b() -> None:
    pair = Pair(lambda r: None if r.method == "ACK" else make_response(r, 180, to_tag="s1"))
    key = pair.send(request("INVITE"))
    pair.advance(100.0)
    assert pair.sent("c", "INVITE") == [0.0]
    assert pair.client.state_of(key) is State.PROCEEDING
    assert pair.events("c", TransactionTimeout) == []


def test_failure_acked_in_transaction_then_timer_d() -> None:
    pair = Pair(answer(486))
    key = pair.send(request("INVITE"))
    acks = [out for _, s, out in pair.wire if s == "c" and out.data.startswith(b"ACK")]
    assert len(acks) == 1
    ack = acks[0].message
    assert isinstance(ack, SipRequest)
    assert ack.top_via is not None and ack.top_via.branch == "z9hG4bKabc1"  # same branch
    assert ack.to_tag == "srv" and ack.cseq is not None and ack.cseq.method == "ACK"
    assert str(ack.uri) == "sip:bob@192.0.2.2" and len(ack.vias) == 1
    assert pair.client.state_of(key) is State.COMPLETED
    # Server: the ACK moved it to Confirmed; Timer I (T4) ends it.
    assert [type(e) for _, e in pair.server_events] == [RequestReceived]
    pair.advance(5.0)
    assert pair.events("s", TransactionTerminated)[0][0] == 5.0
    pair.advance(31.9)
    assert pair.client.state_of(key) is State.COMPLETED
    pair.advance(32.0)
    assert pair.events("c", TransactionTerminated) == [(32.0, TransactionTerminated(key))]
    assert len(pair.events("c", ResponseReceived)) == 1


def test_lost_ack_makes_g_retransmit_and_client_resends_same_ack() -> None:
    pair = Pair(answer(486), drop=lambda side, out, n: out.data.startswith(b"ACK") and n == 1)
    pair.send(request("INVITE"))
    pair.advance(0.5)
    acks = [out.data for _, s, out in pair.wire if s == "c" and out.data.startswith(b"ACK")]
    assert len(acks) == 2 and acks[0] is acks[1]
    assert pair.sent("s", "SIP/2.0 486") == [0.0, 0.5]
    assert len(pair.events("c", ResponseReceived)) == 1  # retransmission absorbed
    pair.advance(10.0)
    assert pair.sent("s", "SIP/2.0 486") == [0.0, 0.5]  # Confirmed: G stopped


def test_client_accepted_passes_2xx_retransmissions_until_m() -> None:
    pair = Pair(answer(200))
    key = pair.send(request("INVITE"))
    assert pair.client.state_of(key) is State.ACCEPTED  # RFC 6026 §8.4
    assert not [o for _, s, o in pair.wire if s == "c" and o.data.startswith(b"ACK")]
    # The server TU retransmits its 2xx (RFC 6026 §8.5: the server transaction doesn't).
    invite = pair.events("s", RequestReceived)[0][1]
    assert isinstance(invite, RequestReceived)
    pair.server.send_response(make_response(invite.request, 200, to_tag="srv"), 0.5)
    pair.pump()
    assert len(pair.events("c", ResponseReceived)) == 2
    pair.advance(32.0)
    assert (32.0, TransactionTerminated(key)) in pair.client_events


# --- INVITE server (§17.2.1, RFC 6026) --------------------------------------------------


def _invite_server(config: TimerConfig = CFG) -> tuple[TransactionLayer, SipRequest, ServerKey]:
    layer = _layer("s", config)
    req = request("INVITE")
    layer.receive(req, CLIENT, "udp", 0.0)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and isinstance(ev.server_key, ServerKey)
    return layer, req, ev.server_key


def _statuses(outs: list[Outgoing]) -> list[int]:
    return [o.message.status for o in outs if isinstance(o.message, SipResponse)]


def test_100_trying_after_200ms_of_tu_silence_only() -> None:
    layer, _req, _key = _invite_server()
    assert layer.messages_to_send() == [] and layer.get_timer() == pytest.approx(0.2)
    layer.handle_timer(0.2)
    assert _statuses(layer.messages_to_send()) == [100]
    quick, req2, _key2 = _invite_server()
    quick.send_response(make_response(req2, 180, to_tag="a"), 0.1)
    quick.handle_timer(0.3)
    assert _statuses(quick.messages_to_send()) == [180]
    immediate, _, _ = _invite_server(TimerConfig(trying_delay=0.0))
    assert _statuses(immediate.messages_to_send()) == [100]


def test_invite_retransmission_in_proceeding_resends_provisional() -> None:
    layer, req, _key = _invite_server()
    layer.receive(req, CLIENT, "udp", 0.1)  # before any provisional: 100 at once
    assert _statuses(layer.messages_to_send()) == [100]
    layer.send_response(make_response(req, 180, to_tag="a"), 0.3)
    ringing = layer.messages_to_send()
    layer.receive(req, CLIENT, "udp", 0.6)
    assert [o.data for o in layer.messages_to_send()] == [ringing[0].data]
    assert layer.next_event() is None  # never passed to the TU again


def test_timer_g_capped_at_t2_and_h_without_ack() -> None:
    layer, req, key = _invite_server()
    layer.send_response(make_response(req, 486, to_tag="a"), 0.0)
    times = [0.0]
    layer.messages_to_send()
    while (t := layer.get_timer()) is not None and t < 40:
        layer.handle_timer(t)
        if layer.messages_to_send():
            times.append(t)
    assert times == [0.0, *_retransmit_times(0.5, 4.0, 32.0)]
    assert layer.next_event() == TransactionTimeout(key)  # §17.2.1: inform the TU
    assert layer.next_event() == TransactionTerminated(key)


def test_server_accepted_absorbs_invite_passes_ack_and_ends_at_l() -> None:
    layer, req, key = _invite_server()
    assert layer.send_response(make_response(req, 200, to_tag="a"), 0.0)
    assert layer.state_of(key) is State.ACCEPTED
    layer.messages_to_send()
    layer.receive(req, CLIENT, "udp", 0.5)  # RFC 6026 §8.5: absorbed
    assert layer.messages_to_send() == [] and layer.next_event() is None
    assert layer.send_response(make_response(req, 200, to_tag="a"), 1.0)  # TU retransmits
    assert _statuses(layer.messages_to_send()) == [200]
    ack_same_branch = request("ACK", to_tag="a")
    layer.receive(ack_same_branch, CLIENT, "udp", 1.1)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and ev.server_key == key
    ack_2xx = request("ACK", "z9hG4bKother", to_tag="a")  # §13.2.2.4: a new branch
    layer.receive(ack_2xx, CLIENT, "udp", 1.2)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and ev.server_key is None
    layer.handle_timer(32.0)
    assert layer.next_event() == TransactionTerminated(key)


# --- RFC 2543 matching (§17.2.3, RFC 4475 §3.2.1 badbranch) -----------------------------


@pytest.mark.parametrize("branch", [None, "z9hG4bK", "1234abcd"])
def test_rfc2543_matching(branch: str | None) -> None:
    layer = _layer("s")
    invite = request("INVITE", branch)
    layer.receive(invite, CLIENT, "udp", 0.0)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and isinstance(ev.server_key, LegacyServerKey)
    key = ev.server_key
    layer.receive(invite, CLIENT, "udp", 0.1)  # retransmission: matched, TU not told
    assert layer.next_event() is None
    layer.send_response(make_response(invite, 404, to_tag="tt"), 0.2, key)
    layer.messages_to_send()
    # An ACK with another To tag does not match (§17.2.3) and goes to the TU.
    layer.receive(request("ACK", branch, to_tag="zz"), CLIENT, "udp", 0.3)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and ev.server_key is None
    layer.receive(request("ACK", branch, to_tag="tt"), CLIENT, "udp", 0.4)
    assert layer.state_of(key) is State.CONFIRMED and layer.next_event() is None
    # A different CSeq is a different transaction.
    layer.receive(request("INVITE", branch, cseq=2), CLIENT, "udp", 0.5)
    assert isinstance(layer.next_event(), RequestReceived)


def test_rfc2543_message_retransmission_reaches_tu_once() -> None:
    layer = _layer("s")
    msg = request("MESSAGE", None)
    for t in (0.0, 0.5, 1.5):
        layer.receive(msg, CLIENT, "udp", t)
    assert len([e for e in iter(layer.next_event, None) if isinstance(e, RequestReceived)]) == 1


def test_sent_by_is_part_of_the_server_key() -> None:
    layer = _layer("s")
    layer.receive(request(), CLIENT, "udp", 0.0)
    layer.receive(request(via_host="198.51.100.7"), ("198.51.100.7", 5060), "udp", 0.0)
    assert len([e for e in iter(layer.next_event, None) if isinstance(e, RequestReceived)]) == 2


# --- CANCEL (§9) ------------------------------------------------------------------------


def test_cancel_gets_200_and_invite_487() -> None:
    pair = Pair(lambda r: make_response(r, 180, to_tag="s1") if r.method == "INVITE" else None)
    invite = request("INVITE")
    ikey = pair.send(invite)
    ckey = pair.send(make_cancel(invite))
    assert ckey == ClientKey("z9hG4bKabc1", "CANCEL")
    statuses = {
        (e.client_key.method, e.response.status)
        for _, e in pair.events("c", ResponseReceived)
        if isinstance(e, ResponseReceived)
    }
    assert statuses == {("INVITE", 180), ("CANCEL", 200), ("INVITE", 487)}
    cancelled = pair.events("s", RequestCancelled)
    assert len(cancelled) == 1
    assert pair.client.state_of(ikey) is State.COMPLETED  # 487 was ACKed
    to_tags = {
        o.message.to_tag
        for _, s, o in pair.wire
        if s == "s" and isinstance(o.message, SipResponse) and o.message.status in (200, 487)
    }
    assert to_tags == {"s1"}  # §9.2: same To tag
    # The server TU's late 200 for the INVITE is discarded.
    ev = pair.events("s", RequestReceived)[0][1]
    assert isinstance(ev, RequestReceived) and ev.server_key is not None
    assert not pair.server.send_response(
        make_response(invite, 200, to_tag="s1"), pair.now, ev.server_key
    )


def test_cancel_without_invite_gets_481() -> None:
    layer = _layer("s")
    layer.receive(make_cancel(request("INVITE")), CLIENT, "udp", 0.0)
    assert _statuses(layer.messages_to_send()) == [481]
    assert [type(e) for e in iter(layer.next_event, None)] == []


# --- matching, errors, the timer heap ---------------------------------------------------


def test_stray_response_and_cseq_method_in_client_key() -> None:
    layer = _layer("c")
    layer.send_request(request(), SERVER, "udp", 0.0)
    other = make_response(request(branch="z9hG4bKnope"), 200)
    layer.receive(other, SERVER, "udp", 0.1)
    same_branch_other_method = make_response(request("OPTIONS"), 200)
    layer.receive(same_branch_other_method, SERVER, "udp", 0.1)
    assert [type(e) for e in iter(layer.next_event, None)] == [StrayResponse, StrayResponse]


def test_transport_error_terminates() -> None:
    layer = _layer("c")
    key = layer.send_request(request(), SERVER, "tcp", 0.0)
    (out,) = layer.messages_to_send()
    assert out.key == key
    layer.transport_error(key, 0.01)
    assert list(iter(layer.next_event, None)) == [TransportError(key), TransactionTerminated(key)]
    assert layer.get_timer() is None


def test_api_misuse_raises() -> None:
    layer = _layer("c")
    layer.send_request(request(), SERVER, "udp", 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(), SERVER, "udp", 0.0)  # same branch + method
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK"), SERVER, "udp", 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(branch="z9hG4bK"), SERVER, "udp", 0.0)  # §8.1.1.7
    with pytest.raises(LocalProtocolError):
        layer.send_response(make_response(request(branch=None), 200), 0.0)


def test_get_timer_is_earliest_over_all_transactions_with_lazy_deletion() -> None:
    layer = _layer("c")
    for i in range(5):
        layer.send_request(request(branch=f"z9hG4bKb{i}"), SERVER, "udp", i * 0.1)
    assert layer.get_timer() == pytest.approx(0.5)  # E of the first
    # Completing the first cancels its E and F; the heap skips the stale entries.
    layer.receive(make_response(request(branch="z9hG4bKb0"), 200), SERVER, "udp", 0.05)
    assert layer.get_timer() == pytest.approx(0.6)
    layer.handle_timer(0.65)
    assert layer.get_timer() == pytest.approx(0.7)


def test_received_param_added_when_sent_by_differs() -> None:
    layer = _layer("s")
    req = request(via_host="client.example.com")
    layer.receive(req, ("203.0.113.9", 5999), "udp", 0.0)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived)
    assert ev.request.top_via is not None and ev.request.top_via.received == "203.0.113.9"
    layer.send_response(make_response(ev.request, 200, to_tag="x"), 0.0)
    (out,) = layer.messages_to_send()
    assert out.dest == ("203.0.113.9", 5060)  # §18.2.2: received + sent-by port


# --- property: any loss pattern -------------------------------------------------------


@given(st.lists(st.booleans(), min_size=0, max_size=24), st.sampled_from(["MESSAGE", "INVITE"]))
@settings(max_examples=200, deadline=None)
def test_any_loss_pattern_tu_sees_request_at_most_once_and_one_outcome(
    losses: list[bool], method: str
) -> None:
    lost = iter(losses)
    pair = Pair(
        answer(486 if method == "INVITE" else 200), drop=lambda side, out, n: next(lost, False)
    )
    key = pair.send(request(method))
    pair.advance(100.0)
    assert len(pair.server) == 0 and len(pair.client) == 0  # everything terminated
    assert len(pair.events("s", RequestReceived)) <= 1
    finals = [
        e
        for _, e in pair.events("c", ResponseReceived)
        if isinstance(e, ResponseReceived) and e.response.status >= 200
    ]
    timeouts = pair.events("c", TransactionTimeout)
    assert len(finals) + len(timeouts) == 1
    assert pair.events("c", TransactionTerminated) == [
        (pair.events("c", TransactionTerminated)[0][0], TransactionTerminated(key))
    ]

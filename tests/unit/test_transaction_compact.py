"""A completed non-INVITE server transaction keeps only what absorbing retransmissions
needs (issue 11: over UDP it lives Timer J = 64*T1, i.e. 320,000 of them at 10,000/s)."""

from __future__ import annotations

import gc

import pytest

from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction import ServerKey, State
from gateway.sip.transaction_layer import (
    RequestReceived,
    TransactionLayer,
    TransactionTerminated,
    TransportError,
)
from gateway.sip.uri import parse_uri

pytestmark = pytest.mark.unit

CLIENT = ("192.0.2.1", 5060)


def _message(branch: str = "z9hG4bKc1") -> SipRequest:
    headers = Headers(
        [
            ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@example.com>;tag=ft1"),
            ("To", "<sip:bob@example.org>"),
            ("Call-ID", "call-1@192.0.2.1"),
            ("CSeq", "7 MESSAGE"),
            ("Content-Type", "text/plain"),
        ]
    )
    return SipRequest("MESSAGE", parse_uri("sip:bob@192.0.2.2"), headers, b"x" * 500)


def _completed() -> tuple[TransactionLayer, SipRequest, ServerKey, bytes]:
    layer = TransactionLayer(TimerConfig())
    req = _message()
    layer.receive(req, CLIENT, "udp", 0.0)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and isinstance(ev.server_key, ServerKey)
    assert layer.send_response(make_response(req, 200, to_tag="gw1"), 0.1, ev.server_key)
    (out,) = layer.messages_to_send()
    return layer, req, ev.server_key, out.data


def test_completed_nist_leaves_the_general_table_for_atoms_only() -> None:
    layer, _, key, first = _completed()
    assert layer.state_of(key) is State.COMPLETED and len(layer) == 1
    assert key not in layer._txs  # no Transaction, key object or heap entry kept
    assert not layer._heap
    ((flat, entry),) = layer._completed.items()
    data, host, port, transport, status, _, to, call_id, cseq, _ = entry
    assert data is first and (host, port) == CLIENT and transport == "udp" and status == 200
    assert (to, call_id, cseq) == ("<sip:bob@example.org>;tag=gw1", "call-1@192.0.2.1", "7 MESSAGE")
    gc.collect(0)  # tuples of atoms: one young collection untracks them
    assert not gc.is_tracked(flat) and not gc.is_tracked(entry)
    assert not layer.send_response(make_response(_message(), 200, to_tag="x"), 1.0, key)
    assert layer.messages_to_send() == []


def test_timer_j_fifo_order_and_a_transport_error_ending_one_early() -> None:
    layer = TransactionLayer(TimerConfig())
    keys = []
    for i, t in enumerate((0.0, 1.0, 2.0)):
        req = _message(f"z9hG4bKfifo{i}")
        layer.receive(req, CLIENT, "udp", t)
        ev = layer.next_event()
        assert isinstance(ev, RequestReceived) and isinstance(ev.server_key, ServerKey)
        assert layer.send_response(make_response(req, 200, to_tag="gw"), t, ev.server_key)
        keys.append(ev.server_key)
    layer.messages_to_send()
    layer.transport_error(keys[0], 3.0)
    assert list(iter(layer.next_event, None)) == [
        TransportError(keys[0]),
        TransactionTerminated(keys[0]),
    ]
    assert layer.get_timer() == pytest.approx(33.0)  # the first J no longer counts
    layer.handle_timer(33.5)
    assert list(iter(layer.next_event, None)) == [TransactionTerminated(keys[1])]
    assert layer.state_of(keys[2]) is State.COMPLETED
    layer.handle_timer(40.0)
    assert list(iter(layer.next_event, None)) == [TransactionTerminated(keys[2])]
    assert len(layer) == 0 and layer.get_timer() is None


def test_reliable_transport_terminates_at_once() -> None:
    layer = TransactionLayer(TimerConfig())
    req = _message("z9hG4bKtcp")
    layer.receive(req, CLIENT, "tcp", 0.0)
    ev = layer.next_event()
    assert isinstance(ev, RequestReceived) and ev.server_key is not None
    assert layer.send_response(make_response(req, 200, to_tag="gw"), 0.0, ev.server_key)
    assert layer.next_event() == TransactionTerminated(ev.server_key)
    assert len(layer) == 0 and not layer._completed


def test_retransmitted_cancel_gets_its_stored_answer() -> None:
    layer = TransactionLayer(TimerConfig())
    cancel = SipRequest(
        "CANCEL", parse_uri("sip:bob@192.0.2.2"), _message().headers.set("CSeq", "7 CANCEL")
    )
    layer.receive(cancel, CLIENT, "udp", 0.0)
    (first,) = layer.messages_to_send()
    assert isinstance(first.message, SipResponse) and first.message.status == 481
    layer.receive(cancel, CLIENT, "udp", 1.0)
    (again,) = layer.messages_to_send()
    assert again.data is first.data and again.retransmission and not first.retransmission


def test_retransmission_in_completed_gets_the_same_bytes_and_status() -> None:
    layer, req, key, first = _completed()
    for t in (0.6, 1.6, 20.0):
        layer.receive(req, CLIENT, "udp", t)
        (again,) = layer.messages_to_send()
        assert again.data is first  # the very bytes first sent (RFC 3261 §17.2.2)
        assert again.retransmission
        assert isinstance(again.message, SipResponse)
        assert again.message.status == 200
        assert again.message.to_tag == "gw1"
        assert again.message.call_id == "call-1@192.0.2.1"
        assert again.dest == CLIENT and again.key == key
        assert layer.next_event() is None  # absorbed, not passed to the TU


def test_timer_j_still_ends_the_compacted_transaction() -> None:
    layer, _, key, _ = _completed()
    assert layer.get_timer() == pytest.approx(0.1 + 32.0)
    layer.handle_timer(32.2)
    assert len(layer) == 0
    assert layer.next_event() == TransactionTerminated(key)

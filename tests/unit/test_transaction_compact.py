"""A completed non-INVITE server transaction keeps only what absorbing retransmissions
needs (issue 11: over UDP it lives Timer J = 64*T1, i.e. 320,000 of them at 10,000/s)."""

from __future__ import annotations

import pytest

from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction import ServerKey, State
from gateway.sip.transaction_layer import RequestReceived, TransactionLayer, TransactionTerminated
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


def test_completed_nist_forgets_the_request_and_the_parsed_response() -> None:
    layer, _, key, _ = _completed()
    tx = layer._txs[key]
    assert tx.state is State.COMPLETED
    assert tx.request is None
    assert tx.last_response is None
    assert tx.summary is not None
    status, _, headers = tx.summary
    assert status == 200
    assert [n for n, _ in headers] == ["To", "Call-ID", "CSeq"]


def test_retransmission_in_completed_gets_the_same_bytes_and_status() -> None:
    layer, req, key, first = _completed()
    for t in (0.6, 1.6, 20.0):
        layer.receive(req, CLIENT, "udp", t)
        (again,) = layer.messages_to_send()
        assert again.data is first  # the very bytes first sent (RFC 3261 §17.2.2)
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

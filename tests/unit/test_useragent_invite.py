"""What the user-agent core adds for INVITE dialog usages (issue 18): the TU retransmits
its 2xx through the server transaction (RFC 3261 §13.3.1.4, RFC 6026 Accepted), hears of
a CANCEL (§9.2), cancels its own INVITE with the INVITE's Via (§9.1) and sends the ACK for
a 2xx outside any transaction, again for every retransmission of that 2xx (§13.2.2.4)."""

from __future__ import annotations

import pytest

from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import IncomingRequest, Prepared
from tests.unit.test_useragent import PEER, _answer, _sent_by, make, receive

pytestmark = pytest.mark.unit


def invite_wire(branch: str = "z9hG4bK-inv", method: str = "INVITE", to_tag: str = "") -> bytes:
    to = "<sip:gw@192.0.2.1>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:gw@192.0.2.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {PEER[0]}:{PEER[1]};branch={branch};rport\r\n"
        "From: <sip:alice@example.org>;tag=a1\r\n"
        f"To: {to}\r\n"
        "Call-ID: inv-1@example.org\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:alice@192.0.2.7>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def statuses(data: list[tuple[str, tuple[str, int], bytes]]) -> list[int]:
    out = [parse_message(d) for _, _, d in data]
    return [m.status for m in out if isinstance(m, SipResponse)]


def test_resend_success_goes_through_the_accepted_transaction_until_timer_l() -> None:
    ua, driver, handler = make(lambda r: r.reply(200))
    receive(ua, invite_wire())
    (incoming,) = handler.seen
    assert statuses(driver.sent) == [200]
    assert incoming.resend_success() is True
    assert statuses(driver.sent) == [200, 200]
    assert driver.sent[0][2] == driver.sent[1][2]  # the same response, byte for byte
    driver.t += 64 * 0.5  # Timer L (RFC 6026 §8.5) ends the transaction
    ua.handle_timer(driver.t)
    assert incoming.resend_success() is False
    assert statuses(driver.sent) == [200, 200]


def test_resend_success_without_a_2xx_sends_nothing() -> None:
    ua, driver, handler = make(lambda r: r.reply(486))
    receive(ua, invite_wire())
    assert handler.seen[0].resend_success() is False
    assert statuses(driver.sent) == [486]


def test_cancel_calls_on_cancel_once_and_the_layer_answers_487() -> None:
    heard: list[IncomingRequest] = []

    def hold(incoming: IncomingRequest) -> None:
        incoming.on_cancel = lambda: heard.append(incoming)
        incoming.reply(100)

    ua, driver, handler = make(hold)
    receive(ua, invite_wire())
    receive(ua, invite_wire(method="CANCEL"))
    assert heard == handler.seen
    assert sorted(statuses(driver.sent)) == [100, 200, 487]
    assert heard[0].reply(200) is False  # the INVITE is answered already


def _invite() -> SipRequest:
    headers = Headers(
        [
            ("From", "<sip:gw@192.0.2.1>;tag=g1"),
            ("To", "<sip:bob@example.org>"),
            ("Call-ID", "out-inv"),
            ("CSeq", "7 INVITE"),
            ("Contact", "<sip:gw@192.0.2.1>"),
        ]
    )
    return SipRequest("INVITE", parse_uri("sip:bob@192.0.2.9"), headers)


def _start_invite(ua: object) -> list[tuple[SipResponse | None, Exception | None]]:
    from gateway.sip.useragent import UserAgent

    assert isinstance(ua, UserAgent)
    results: list[tuple[SipResponse | None, Exception | None]] = []
    target = Target("udp", "192.0.2.9", "192.0.2.9", 5060)
    _, _, _, ready = ua.plan(_invite(), target, True, _sent_by)
    assert ready is not None
    ua.start_client(ready, "udp", ua.driver.now(), lambda r, e: results.append((r, e)))
    ua.process()
    return results


def test_cancel_invite_waits_for_a_provisional_then_copies_the_invite_via() -> None:
    ua, driver, _ = make()
    results = _start_invite(ua)
    ((_, dest, data),) = driver.sent
    assert ua.cancel_invite("out-inv", 7, driver.t) is False  # §9.1: no 1xx yet
    receive(ua, _answer(data, 180))
    assert ua.cancel_invite("out-inv", 8, driver.t) is False  # another INVITE
    assert ua.cancel_invite("out-inv", 7, driver.t) is True
    invite, cancel = (parse_message(d) for _, _, d in driver.sent)
    assert isinstance(invite, SipRequest) and isinstance(cancel, SipRequest)
    assert cancel.method == "CANCEL" and driver.sent[1][1] == dest
    assert cancel.headers.get_all("Via") == invite.headers.get_all("Via")
    assert str(cancel.cseq) == "7 CANCEL" and cancel.uri == invite.uri
    receive(ua, _answer(driver.sent[1][2], 200))  # the CANCEL's answer: nobody waits
    receive(ua, _answer(data, 487))
    ((resp, exc),) = results
    assert exc is None and resp is not None and resp.status == 487


def _ok_with_tag(invite_data: bytes) -> bytes:
    return _answer(invite_data, 200).replace(
        b"To: <sip:bob@example.org>", b"To: <sip:bob@example.org>;tag=b9"
    )


def test_2xx_retransmissions_get_the_same_ack_again() -> None:
    ua, driver, _ = make()
    results = _start_invite(ua)
    data = driver.sent[0][2]
    receive(ua, _ok_with_tag(data))
    assert results and results[0][0] is not None
    ack_req = SipRequest(
        "ACK",
        parse_uri("sip:bob@192.0.2.9"),
        Headers(
            [
                ("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-ack1"),
                ("From", "<sip:gw@192.0.2.1>;tag=g1"),
                ("To", "<sip:bob@example.org>;tag=b9"),
                ("Call-ID", "out-inv"),
                ("CSeq", "7 ACK"),
            ]
        ),
    )
    ua.send_ack(Prepared(ack_req, ("192.0.2.9", 5060)), "udp")
    assert len(driver.sent) == 2 and driver.sent[1][2].startswith(b"ACK ")
    receive(ua, _ok_with_tag(data))  # a retransmission, Accepted state (RFC 6026 §8.4)
    assert len(driver.sent) == 3 and driver.sent[2][2] == driver.sent[1][2]
    driver.t += 64 * 0.5
    ua.handle_timer(driver.t)  # Timer M: the transaction is gone, the 2xx is stray
    receive(ua, _ok_with_tag(data))
    assert len(driver.sent) == 4 and driver.sent[3][2] == driver.sent[1][2]
    other = _ok_with_tag(data).replace(b"tag=b9", b"tag=fork2")  # another fork: no ACK known
    receive(ua, other)
    assert len(driver.sent) == 4

"""Linked identities (issue 22 item 4, RFC 7081): the XMPP address of an XMPP user on the SIP
requests the gateway sends for them (RFC 6993 ``Call-Info: <xmpp:...>;purpose=impp``), as
an xmpp: URI (RFC 5122 §2.7)."""

from __future__ import annotations

import pytest

from gateway.bridge.pager import sip_message as sm
from gateway.bridge.presence.context import PresenceConfig, PresenceContext
from gateway.bridge.presence.scheduler import Scheduler
from gateway.bridge.presence.x2s import X2s
from gateway.sip.headers import parse_name_addr
from gateway.sip.subscriber import Subscriber, SubscriberConfig
from gateway.sip.subscription import SendSubscribe
from gateway.sip.uri import parse_uri
from gateway.store.api import SubscriptionRecord
from mappings.addresses import AddressingMode, DomainMap, impp_call_info, xmpp_uri
from mappings.jid import Jid, parse_jid

pytestmark = pytest.mark.unit

IMPP = "<xmpp:juliet@example.com>;purpose=impp"  # RFC 6993 §1's example


@pytest.mark.parametrize(
    ("jid", "uri"),
    [
        # RFC 5122 §2.7.2: the nasty node
        (
            Jid("nasty!#$%()*+,-.;=?[\\]^_`{|}~node", "example.com"),
            "xmpp:nasty!%23$%25()*+,-.;=%3F%5B%5C%5D%5E_%60%7B%7C%7D~node@example.com",
        ),
        # RFC 5122 §2.7.3 (the resource is dropped: a bare JID is advertised)
        (parse_jid("ji\u0159i@\u010dechy.example/v Praze"), "xmpp:ji%C5%99i@%C4%8Dechy.example"),
        # XEP-0106 escapes stay in the wire form, their backslash percent-encoded
        (parse_jid("d\\27artagnan@musketeers.lit"), "xmpp:d%5C27artagnan@musketeers.lit"),
        (parse_jid("juliet@example.com/balcony"), "xmpp:juliet@example.com"),
        (parse_jid("example.com"), "xmpp:example.com"),
    ],
)
def test_xmpp_uri_follows_rfc_5122(jid: Jid, uri: str) -> None:
    assert xmpp_uri(jid) == uri


def test_impp_call_info_is_rfc_6993s_value() -> None:
    assert impp_call_info(parse_jid("juliet@example.com/balcony")) == IMPP


def _out(call_info: str | None) -> sm.OutboundMessage:
    return sm.OutboundMessage(
        request_uri="sip:romeo@sip.example",
        from_uri="sip:juliet@example.com;gr=balcony",
        to_uri="sip:romeo@sip.example",
        call_id="c1@x",
        cseq=1,
        from_tag="t1",
        content=("text/plain;charset=UTF-8", b"hi"),
        subject="s",
        call_info=call_info,
    )


def test_message_carries_call_info_after_cseq() -> None:
    req = sm.build_message(_out(IMPP))
    assert req.headers.items() == (
        ("Max-Forwards", "70"),
        ("From", "<sip:juliet@example.com;gr=balcony>;tag=t1"),
        ("To", "<sip:romeo@sip.example>"),
        ("Call-ID", "c1@x"),
        ("CSeq", "1 MESSAGE"),
        ("Call-Info", IMPP),
        ("Subject", "s"),
        ("Content-Type", "text/plain;charset=UTF-8"),
    )
    assert req.headers.keys()[5] == "call-info"
    assert req.headers.get_all("Call-Info") == (IMPP,)
    assert "Call-Info" not in sm.build_message(_out(None)).headers


def _subscriber(config: SubscriberConfig | None = None) -> Subscriber:
    ids = iter(f"id{n}" for n in range(100))
    return Subscriber(
        parse_uri("sip:romeo@example.net"),
        local=parse_name_addr("<sip:juliet@example.com>"),
        remote=parse_name_addr("<sip:romeo@example.net>"),
        contact=parse_name_addr("<sip:gw@192.0.2.1>"),
        config=config,
        ids=lambda: next(ids),
    )


def _request(actions: list[object]) -> SendSubscribe:
    (send,) = [a for a in actions if isinstance(a, SendSubscribe)]
    return send


def test_subscriber_config_headers_ride_on_every_subscribe() -> None:
    """The SIP core stays free of XMPP: the caller's headers, as given, on the initial
    SUBSCRIBE, the resend with credentials and the unsubscribe."""
    sub = _subscriber(SubscriberConfig(headers=(("Call-Info", IMPP),)))
    first = _request(sub.subscribe(0.0)).request
    assert first.headers.get_all("Call-Info") == (IMPP,)
    again = _request(sub.send_with_credentials([("Authorization", "Digest x")], 1.0)).request
    assert again.headers.get_all("Call-Info") == (IMPP,)
    assert again.headers.get("Authorization") == "Digest x"
    assert "Call-Info" not in _request(_subscriber().subscribe(0.0)).request.headers


def _x2s() -> X2s:
    ctx = PresenceContext(
        config=PresenceConfig(contact="sip:presence@127.0.0.1:5060"),
        endpoint=None,  # type: ignore[arg-type]
        resolver=None,  # type: ignore[arg-type]
        xmpp=None,  # type: ignore[arg-type]
        store=None,  # type: ignore[arg-type]
        maps={"sip.localhost": DomainMap("sip.localhost", AddressingMode.MIRRORED)},
        scheduler=Scheduler(lambda keys, now: None, clock=lambda: 0.0),
    )
    return X2s(ctx)


@pytest.mark.parametrize("state", ["terminated", "active"])
def test_x2s_subscriptions_carry_the_watchers_bare_jid(state: str) -> None:
    """X2S passes the watcher's address in through `SubscriberConfig.headers`, also for a
    subscription restored from the store (new dialog, or the live one's unsubscribe)."""
    x2s = _x2s()
    record = SubscriptionRecord(
        direction="x2s",
        watcher="d\\27artagnan@localhost",
        target="sip:bob@sip.localhost",
        call_id="c1",
        local_tag="t1",
        remote_tag="r1",
        remote_target="sip:bob@127.0.0.1:5070",
        state=state,
        expires_at=1000.0,
        xmpp_authorization="to",
    )
    assert x2s.restore([record], 0.0) == 1
    (entry,) = x2s.subs.values()
    actions = entry.sub.subscribe(0.0) if state == "terminated" else entry.sub.unsubscribe(0.0)
    request = _request(list(actions)).request
    assert request.headers.get_all("Call-Info") == ("<xmpp:d%5C27artagnan@localhost>;purpose=impp",)

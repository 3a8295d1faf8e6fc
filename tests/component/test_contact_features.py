"""issue 22 item 2: each contact's disco#info and XEP-0115 caps list only what holds for
that SIP contact, as its traffic showed it to the pager (`Pager.contact_features`).

A real `Pager` (stub links and router) feeds a `GatewayComponent` in memory (SlixTest):
SIP MESSAGEs go into `Pager.sip_message`; a client's disco#info requests and the presence
the component builds come out, and the presence's ``ver`` is checked against the §5.1
hash of the disco#info answer, as a client verifies it (XEP-0115 §5.4).
"""

from __future__ import annotations

import tomllib
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.pager.service import Pager
from gateway.bridge.routing import Domains
from gateway.config import load_config
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from gateway.xmpp.caps import CAPS_NODE, NS_CAPS, caps_ver
from gateway.xmpp.disco import NS_CHATSTATES, NS_RECEIPTS, NS_XHTML_IM, Features
from gateway.xmpp.presence_convert import build_presence
from mappings import imdn as imdn_fmt
from mappings import iscomposing as isc
from mappings.jid import parse_jid
from mappings.presence import XmppPresence
from tests.component.test_xmpp_component import DOMAIN, JULIET, GatewayTest
from tests.harness.gateway_proc import gateway_config

pytestmark = pytest.mark.unit

INFO = "{http://jabber.org/protocol/disco#info}"
ALL = Features(chat_states=True, receipts=True, xhtml_im=True)
OPTIONAL = {NS_CHATSTATES, NS_RECEIPTS, NS_XHTML_IM}


class _Links:
    domains = (DOMAIN,)

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def is_up(self, domain: str) -> bool:
        return True

    def retry_after(self, domain: str) -> int:
        return 1

    async def send_confirmed(self, domain: str, stanza: Any) -> None:
        self.sent.append(stanza)


class _Router:
    def __init__(self, cfg: Any) -> None:
        self.domains = Domains(cfg)


class _Incoming:
    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.replies: list[int] = []

    def reply(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self.replies.append(status)


def message(user: str, ctype: str, body: bytes, *extra: str) -> SipRequest:
    head = [
        "MESSAGE sip:juliet@localhost SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-" + user,
        "Max-Forwards: 70",
        f"From: <sip:{user}@{DOMAIN}>;tag=t1",
        "To: <sip:juliet@localhost>",
        f"Call-ID: {user}-1@127.0.0.1",
        "CSeq: 1 MESSAGE",
        f"Content-Type: {ctype}",
        *extra,
        f"Content-Length: {len(body)}",
    ]
    req = parse_message("\r\n".join(head).encode() + b"\r\n\r\n" + body)
    assert isinstance(req, SipRequest)
    return req


def composing(user: str) -> SipRequest:
    doc = isc.build_iscomposing(isc.IsComposing("active", contenttype="text/plain", refresh=90))
    return message(user, isc.MEDIA_TYPE, doc)


def imdn(user: str) -> SipRequest:
    doc = imdn_fmt.Imdn("m1", datetime(2026, 1, 1, tzinfo=UTC), "delivery", "delivered")
    return message(user, imdn_fmt.MEDIA_TYPE, imdn_fmt.build_imdn(doc))


class TestContactFeatures(GatewayTest):
    def setUp(self) -> None:
        super().setUp()
        cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
        self.pager = Pager(
            cfg, _Links(), _Router(cfg), Metrics(),  # type: ignore[arg-type]
            clock=lambda: 1000.0,
        )  # fmt: skip
        self.start(features=ALL, contact_features=self.pager.contact_features)

    def sip(self, request: SipRequest) -> list[int]:
        incoming = _Incoming(request)
        self.xmpp.loop.run_until_complete(self.pager.sip_message(incoming))  # type: ignore[arg-type]
        return incoming.replies

    def disco(self, to: str, node: str | None = None) -> tuple[list[tuple[str, ...]], list[str]]:
        attr = "" if node is None else f' node="{node}"'
        self.recv(f'<iq type="get" id="c1" from="{JULIET}" to="{to}">'
                  f'<query xmlns="http://jabber.org/protocol/disco#info"{attr}/></iq>')  # fmt: skip
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(0.5)  # type: ignore[union-attr]
        assert raw is not None
        reply = ET.fromstring(raw)
        assert reply.get("type") == "result", raw
        query = reply.find(f"{INFO}query")
        assert query is not None and query.get("node") == node
        idents = [(i.get("category") or "", i.get("type") or "", "", i.get("name") or "")
                  for i in query.findall(f"{INFO}identity")]  # fmt: skip
        return idents, [f.get("var") or "" for f in query.findall(f"{INFO}feature")]

    def caps(self, user: str) -> str:
        """The ver of the presence the component builds for `user` now (verified: §5.4)."""
        jid = parse_jid(f"{user}@{DOMAIN}/phone")
        presence = build_presence(self.xmpp, sender=jid, recipient=parse_jid(JULIET),
                                  presence=XmppPresence())  # fmt: skip
        c = presence.xml.find(f"{{{NS_CAPS}}}c")
        assert c is not None and c.get("node") == CAPS_NODE
        ver = c.get("ver") or ""
        idents, features = self.disco(str(jid), f"{CAPS_NODE}#{ver}")
        assert caps_ver(idents, features) == ver  # what a client checks before caching
        assert (idents, features) == self.disco(str(jid))  # the contact's own disco#info
        return ver

    def optional(self, user: str) -> set[str]:
        return OPTIONAL & set(self.disco(f"{user}@{DOMAIN}")[1])

    def test_chat_states_only_once_the_peer_sent_iscomposing(self) -> None:
        before = self.caps("romeo")
        assert self.optional("romeo") == set()
        assert self.sip(composing("romeo")) == [200]
        assert self.optional("romeo") == {NS_CHATSTATES}
        after = self.caps("romeo")
        assert after != before  # the next presence carries the new ver
        # both vers stay answered (a client may ask for one it saw before)
        old = self.disco(f"romeo@{DOMAIN}/phone", f"{CAPS_NODE}#{before}")
        assert caps_ver(*old) == before and NS_CHATSTATES not in old[1]
        assert self.optional("tybalt") == set() and self.caps("tybalt") == before

    def test_receipts_once_the_peer_sent_an_imdn(self) -> None:
        self.sip(imdn("romeo"))
        assert self.optional("romeo") == {NS_RECEIPTS}
        self.caps("romeo")

    def test_xhtml_im_while_the_peer_accepts_html(self) -> None:
        self.sip(message("romeo", "text/plain", b"hi", "Accept: text/plain, text/html"))
        assert self.optional("romeo") == {NS_XHTML_IM}
        self.caps("romeo")
        self.sip(message("romeo", "text/plain", b"hi", "Accept: text/plain"))
        assert self.optional("romeo") == set()

    def test_iscomposing_in_accept_and_unknown_node(self) -> None:
        self.sip(message("romeo", "text/plain", b"hi", f"Accept: text/plain, {isc.MEDIA_TYPE}"))
        assert self.optional("romeo") == {NS_CHATSTATES}
        self.recv(f'<iq type="get" id="c2" from="{JULIET}" to="romeo@{DOMAIN}">'
                  '<query xmlns="http://jabber.org/protocol/disco#info" '
                  f'node="{CAPS_NODE}#AAAA"/></iq>')  # fmt: skip
        self.wait_for_send_queue()
        raw = self.xmpp.socket.next_sent(0.5)  # type: ignore[union-attr]
        reply = ET.fromstring(raw)
        assert reply.get("type") == "error" and b"item-not-found" in ET.tostring(reply)

"""issue 22: vCards (XEP-0054) and caps nodes (XEP-0115) of bridged SIP contacts, answered by
a GatewayComponent in memory (SlixTest; the exact stanzas written are parsed and checked)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.config import Addressing
from gateway.xmpp.caps import CAPS_NODE, NS_CAPS, caps_ver
from gateway.xmpp.disco import Features
from gateway.xmpp.presence_convert import build_presence
from mappings.jid import parse_jid
from mappings.presence import XmppPresence
from tests.component.test_xmpp_component import DOMAIN, JULIET, STANZAS, GatewayTest

pytestmark = pytest.mark.unit

V = "{vcard-temp}"
C = "{jabber:client}"  # what slixmpp writes for <error/> (tests/component/test_xmpp_component.py)
INFO = "{http://jabber.org/protocol/disco#info}"
ALL = Features(chat_states=True, receipts=True, xhtml_im=True)


class TestVCard(GatewayTest):
    def _get(self, to: str, iq_type: str = "get", iq_id: str = "v1") -> ET.Element:
        self.recv(f'<iq type="{iq_type}" id="{iq_id}" from="{JULIET}" to="{to}">'
                  '<vCard xmlns="vcard-temp"/></iq>')  # fmt: skip
        return self.sent_xml()

    def _card(self, reply: ET.Element) -> dict[str, str | None]:
        assert (reply.get("type"), reply.get("id"), reply.get("to")) == ("result", "v1", JULIET)
        card = reply.find(f"{V}vCard")
        assert card is not None
        return {
            "FN": card.findtext(f"{V}FN"),
            "NUMBER": card.findtext(f"{V}TEL/{V}NUMBER"),
            "VOICE": "yes" if card.find(f"{V}TEL/{V}VOICE") is not None else "no",
            "URL": card.findtext(f"{V}URL"),
        }

    def _error(self, reply: ET.Element) -> tuple[str | None, str]:
        assert reply.get("type") == "error"
        error = reply.find(f"{C}error")
        assert error is not None
        conditions = [c.tag for c in error if c.tag.startswith(f"{{{STANZAS}}}")]
        return error.get("type"), conditions[0].rpartition("}")[2]

    def test_contact_vcard_mirrored(self) -> None:
        self.start()
        reply = self._get(f"romeo@{DOMAIN}")
        assert reply.get("from") == f"romeo@{DOMAIN}"
        assert self._card(reply) == {"FN": "romeo", "NUMBER": f"sip:romeo@{DOMAIN}",
                                     "VOICE": "yes", "URL": f"sip:romeo@{DOMAIN}"}  # fmt: skip

    def test_hosted_user_display_name_and_full_jid(self) -> None:
        names = {f"sip:romeo@{DOMAIN}": "Romeo Montague"}
        self.start(display_names=names.get)
        reply = self._get(f"romeo@{DOMAIN}/phone")
        assert reply.get("from") == f"romeo@{DOMAIN}/phone"
        assert self._card(reply)["FN"] == "Romeo Montague"

    def test_hosted_user_linked_xmpp_account(self) -> None:
        """RFC 7081: the user file's `xmpp` of a hosted user is its vCard's JABBERID."""
        linked = {f"sip:romeo@{DOMAIN}": "romeo@example.org"}
        self.start(linked_accounts=linked.get)
        card = self._get(f"romeo@{DOMAIN}").find(f"{V}vCard")
        assert card is not None
        assert [c.tag for c in card] == [f"{V}FN", f"{V}TEL", f"{V}JABBERID", f"{V}URL"]
        assert card.findtext(f"{V}JABBERID") == "romeo@example.org"
        other = self._get(f"tybalt@{DOMAIN}", iq_id="v2").find(f"{V}vCard")
        assert other is not None and other.find(f"{V}JABBERID") is None

    def test_escaped_contact(self) -> None:
        self.start(addressing=Addressing.ESCAPED)
        card = self._card(self._get(f"romeo\\40example.com@{DOMAIN}"))
        assert card["FN"] == "romeo" and card["URL"] == "sip:romeo@example.com"

    def test_jids_that_map_to_no_sip_user(self) -> None:
        self.start(addressing=Addressing.ESCAPED)
        for to, want in (
            (DOMAIN, ("cancel", "item-not-found")),
            (f"romeo@{DOMAIN}", ("cancel", "item-not-found")),
            ("romeo@elsewhere.example", ("cancel", "item-not-found")),
            (f"a\\5cb@{DOMAIN}", ("modify", "jid-malformed")),
        ):
            with self.assertLogs("gateway.xmpp.boundary", "INFO") as logs:
                reply = self._get(to)
            assert self._error(reply) == want, to
            assert any("answering iq" in line and want[1] in line for line in logs.output)

    def test_set_is_not_allowed(self) -> None:
        self.start()
        with self.assertLogs("gateway.xmpp.boundary", "INFO"):
            reply = self._get(f"romeo@{DOMAIN}", iq_type="set")
        assert self._error(reply) == ("cancel", "not-allowed")

    def test_results_are_not_answered(self) -> None:
        self.start()
        self.recv(f'<iq type="result" id="r1" from="{JULIET}" to="romeo@{DOMAIN}">'
                  '<vCard xmlns="vcard-temp"/></iq>')  # fmt: skip
        self.wait_for_send_queue()
        assert self.xmpp.socket.next_sent(0.2) is None  # type: ignore[union-attr]


class TestCaps(GatewayTest):
    def _disco(self, to: str, node: str | None) -> ET.Element:
        attr = "" if node is None else f' node="{node}"'
        self.recv(f'<iq type="get" id="c1" from="{JULIET}" to="{to}">'
                  f'<query xmlns="http://jabber.org/protocol/disco#info"{attr}/></iq>')  # fmt: skip
        return self.sent_xml()

    def test_presence_caps_verify_against_the_node_disco(self) -> None:
        """XEP-0115 §5.4: what a client does with the <c/> of a contact's presence."""
        self.start(features=ALL)
        presence = build_presence(self.xmpp, sender=parse_jid(f"romeo@{DOMAIN}/phone"),
                                  recipient=parse_jid(JULIET), presence=XmppPresence())  # fmt: skip
        c = presence.xml.find(f"{{{NS_CAPS}}}c")
        assert c is not None and c.get("hash") == "sha-1" and c.get("node") == CAPS_NODE
        node = f"{c.get('node')}#{c.get('ver')}"
        for to in (f"romeo@{DOMAIN}/phone", f"romeo@{DOMAIN}"):
            reply = self._disco(to, node)
            assert reply.get("type") == "result"
            query = reply.find(f"{INFO}query")
            assert query is not None and query.get("node") == node
            idents = [(i.get("category") or "", i.get("type") or "", "", i.get("name") or "")
                      for i in query.findall(f"{INFO}identity")]  # fmt: skip
            features = [f.get("var") or "" for f in query.findall(f"{INFO}feature")]
            assert idents == [("client", "phone", "", "")]
            assert set(features) >= {
                "urn:xmpp:receipts",
                "http://jabber.org/protocol/chatstates",
                "http://jabber.org/protocol/xhtml-im",
                "vcard-temp",
            }
            assert caps_ver(idents, features) == c.get("ver")

    def test_other_nodes_and_the_domain_are_item_not_found(self) -> None:
        self.start()
        for to, node in ((f"romeo@{DOMAIN}", f"{CAPS_NODE}#AAAA"),
                         (DOMAIN, self.xmpp.caps.node_ver)):  # fmt: skip
            reply = self._disco(to, node)
            assert reply.get("type") == "error"
            assert reply.find(f"{C}error/{{{STANZAS}}}item-not-found") is not None

"""issue 22: avatars in vCards and presence (XEP-0153), disco#items (XEP-0030/XEP-0100), and
bad input to the IQs the component answers itself, each answered with a stanza error and
a log line (SlixTest: the exact stanzas written are parsed and checked)."""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET

import pytest

from gateway.config import Addressing
from gateway.xmpp.presence_convert import build_presence
from mappings.avatar import NS_VCARD_UPDATE, parse_avatar
from mappings.jid import parse_jid
from mappings.presence import XmppPresence
from tests.component.test_xmpp_component import DOMAIN, JULIET, STANZAS, GatewayTest

pytestmark = pytest.mark.unit

V = "{vcard-temp}"
C = "{jabber:client}"
ITEMS = "http://jabber.org/protocol/disco#items"
INFO = "http://jabber.org/protocol/disco#info"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ROMEO = f"romeo@{DOMAIN}"
AVATARS = {f"sip:{ROMEO}": parse_avatar(PNG)}


class BadIqTest(GatewayTest):
    def ask(self, to: str, payload: str, iq_type: str = "get") -> ET.Element:
        self.recv(f'<iq type="{iq_type}" id="q1" from="{JULIET}" to="{to}">{payload}</iq>')
        return self.sent_xml()

    def refused(self, to: str, payload: str, iq_type: str = "get") -> tuple[str | None, str, str]:
        """(type, condition, text) of the error answering the IQ, which must be logged."""
        with self.assertLogs("gateway.xmpp.boundary", "INFO") as logs:
            reply = self.ask(to, payload, iq_type)
        assert reply.get("type") == "error", ET.tostring(reply)
        error = reply.find(f"{C}error")
        assert error is not None
        conditions = [c.tag.rpartition("}")[2] for c in error if c.tag.startswith(f"{{{STANZAS}}}")]
        assert conditions and conditions[0] != "text"
        text = error.findtext(f"{{{STANZAS}}}text") or ""
        want = f"answering iq type={iq_type} id=q1 from={JULIET} to={to}"
        assert any(want in line and conditions[0] in line for line in logs.output), logs.output
        return error.get("type"), conditions[0], text


class TestAvatars(BadIqTest):
    def test_vcard_photo_of_a_hosted_user(self) -> None:
        self.start(avatars=AVATARS.get)
        card = self.ask(ROMEO, '<vCard xmlns="vcard-temp"/>').find(f"{V}vCard")
        assert card is not None
        assert [c.tag for c in card][:3] == [f"{V}FN", f"{V}PHOTO", f"{V}TEL"]
        assert card.findtext(f"{V}PHOTO/{V}TYPE") == "image/png"
        assert base64.b64decode(card.findtext(f"{V}PHOTO/{V}BINVAL") or "") == PNG
        other = self.ask(f"tybalt@{DOMAIN}", '<vCard xmlns="vcard-temp"/>').find(f"{V}vCard")
        assert other is not None and other.find(f"{V}PHOTO") is None

    def test_every_presence_of_the_contact_carries_the_hash(self) -> None:
        self.start(avatars=AVATARS.get)
        for available in (True, False):
            for sender in (f"{ROMEO}/phone", ROMEO):
                stanza = build_presence(self.xmpp, sender=parse_jid(sender),
                                        recipient=parse_jid(JULIET),
                                        presence=XmppPresence(available=available))  # fmt: skip
                photo = stanza.xml.findtext(f"{{{NS_VCARD_UPDATE}}}x/{{{NS_VCARD_UPDATE}}}photo")
                assert photo == hashlib.sha1(PNG).hexdigest()
        none = build_presence(self.xmpp, sender=parse_jid(f"tybalt@{DOMAIN}"),
                              recipient=parse_jid(JULIET), presence=XmppPresence())  # fmt: skip
        assert none.xml.find(f"{{{NS_VCARD_UPDATE}}}x") is None

    def test_no_avatars_no_update_element(self) -> None:
        self.start()
        stanza = build_presence(self.xmpp, sender=parse_jid(ROMEO), recipient=parse_jid(JULIET),
                                presence=XmppPresence())  # fmt: skip
        assert stanza.xml.find(f"{{{NS_VCARD_UPDATE}}}x") is None


class TestDiscoItems(BadIqTest):
    def test_items_of_the_domain_and_of_a_contact_are_empty_results(self) -> None:
        self.start()
        for to in (DOMAIN, ROMEO, f"{ROMEO}/phone"):
            reply = self.ask(to, f'<query xmlns="{ITEMS}"/>')
            assert (reply.get("type"), reply.get("from")) == ("result", to)
            query = reply.find(f"{{{ITEMS}}}query")
            assert query is not None and len(query) == 0

    def test_jids_that_map_to_no_sip_user(self) -> None:
        """Escaped mode: `romeo@` has no escaped @ (item-not-found), `a\\5cb` is no
        canonical XEP-0106 (jid-malformed); another domain: item-not-found. disco#info and
        disco#items alike, as the vCard (RFC 6120 §8.3.3.7-8)."""
        self.start(addressing=Addressing.ESCAPED)
        for ns in (INFO, ITEMS):
            for to, want in (
                (ROMEO, ("cancel", "item-not-found")),
                (f"a\\5cb@{DOMAIN}", ("modify", "jid-malformed")),
                ("romeo@elsewhere.example", ("cancel", "item-not-found")),
            ):
                assert self.refused(to, f'<query xmlns="{ns}"/>')[:2] == want, (ns, to)
        reply = self.ask(f"romeo\\40example.com@{DOMAIN}", f'<query xmlns="{INFO}"/>')
        assert reply.get("type") == "result"

    def test_a_node_of_items_is_item_not_found(self) -> None:
        self.start()
        got = self.refused(DOMAIN, f'<query xmlns="{ITEMS}" node="x"/>')
        assert got[:2] == ("cancel", "item-not-found")


DEEP = 3000  # far past what a recursive walk of the payload would survive (~1000)


def _deep(depth: int) -> str:
    return "<a>" * depth + "</a>" * depth


HOSTILE_PAYLOADS = {
    "children": lambda root: f"<{root}>" + "<x/>" * 5000 + f"</{root.split()[0]}>",
    "deep": lambda root: f"<{root}>" + _deep(DEEP) + f"</{root.split()[0]}>",
    "text": lambda root: f"<{root}>" + "A" * 200_000 + f"</{root.split()[0]}>",
    "two payloads": lambda root: f"<{root}/><{root}/>",
}
ROOTS = {
    "vcard": '<vCard xmlns="vcard-temp"/>',
    "disco#info": f'<query xmlns="{INFO}"/>',
    "disco#items": f'<query xmlns="{ITEMS}"/>',
    "jabber:iq:gateway": '<query xmlns="jabber:iq:gateway"/>',
}


class TestHostilePayloads(BadIqTest):
    @pytest.mark.filterwarnings("ignore")
    def test_gets_with_anything_but_an_empty_payload_are_bad_request(self) -> None:
        self.start()
        for name, empty in ROOTS.items():
            root = empty.removesuffix("/>").removeprefix("<")
            for kind, make in HOSTILE_PAYLOADS.items():
                for to in (DOMAIN, ROMEO):
                    if name == "jabber:iq:gateway" and to == ROMEO:
                        continue  # the prompt is the domain's
                    started = time.perf_counter()
                    got = self.refused(to, make(root))
                    assert time.perf_counter() - started < 2.0, (name, kind)
                    assert got[:2] == ("modify", "bad-request"), (name, kind, to)
                    assert got[2], (name, kind)  # says what was wrong
        # and the component still answers a well-formed request
        assert self.ask(ROMEO, '<vCard xmlns="vcard-temp"/>').get("type") == "result"

    def test_prompt_sets_that_are_no_address(self) -> None:
        self.start(addressing=Addressing.ESCAPED)
        g = 'xmlns="jabber:iq:gateway"'
        for payload, text in (
            (f"<query {g}><prompt>  </prompt></query>", "empty <prompt/>"),
            (f"<query {g}/>", "one <prompt/>"),
            (f"<query {g}><prompt>a@b</prompt><prompt>c@d</prompt></query>", "one <prompt/>"),
            (f"<query {g}><prompt>a@b</prompt><jid>x@y</jid></query>", "one <prompt/>"),
            (f"<query {g}><prompt><b>a@b</b></prompt></query>", "text only"),
            (f"<query {g}><prompt>{'a ' * 40_000}</prompt></query>", "longer than 2048"),
            (f"<query {g}><prompt>romeo montague</prompt></query>", "is not a SIP address"),
            (f"<query {g}><prompt>x" + " " * 2000 + "y</prompt></query>", "spaces"),
        ):
            started = time.perf_counter()
            kind, condition, said = self.refused(DOMAIN, payload, "set")
            assert time.perf_counter() - started < 2.0
            assert (kind, condition) == ("modify", "bad-request"), payload[:80]
            assert text in said, (payload[:80], said)

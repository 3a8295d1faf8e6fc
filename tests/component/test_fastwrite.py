"""gateway.xmpp.fastwrite: the serialized <message/> means what slixmpp would write.

The oracle is the slow path: `convert.op_to_message` on a real `GatewayComponent` and
slixmpp's own serializer. Both outputs are parsed (inside a component stream element, so the
default namespace applies) and compared as trees: tag, attributes, text, children in order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.xmlstream import tostring

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.convert import XHTML_PART, op_to_message
from gateway.xmpp.fastwrite import escape_attr, escape_text, message_xml
from mappings.model import Address, BodyPart, ChatState, MessageOp, Subject

pytestmark = pytest.mark.unit

DOMAIN = "sip.localhost"
SRC = Address("alice", "example.com")
DST = Address("juliet", "localhost")


@pytest.fixture(scope="module")
def component() -> GatewayComponent:
    return GatewayComponent(
        ComponentConfig(DOMAIN, "secret", Addressing.MIRRORED), server="127.0.0.1", port=5347
    )


def _tree(text: str) -> Any:
    root = ET.fromstring(f'<stream xmlns="jabber:component:accept">{text}</stream>')
    (message,) = list(root)
    return _norm(message)


def _norm(el: ET.Element) -> tuple[Any, ...]:
    return (el.tag, dict(el.attrib), el.text or "", tuple(_norm(c) for c in el))


def _slow(component: GatewayComponent, op: MessageOp, mfrom: str, mto: str, sid: str) -> str:
    msg = op_to_message(component, op, mfrom=mfrom, mto=mto, stanza_id=sid)
    return tostring(msg.xml, xmlns=component.default_ns, stream=component, top_level=True)


def _same(component: GatewayComponent, op: MessageOp, mfrom: str, mto: str, sid: str) -> None:
    fast = message_xml(op, mfrom=mfrom, mto=mto, stanza_id=sid)
    assert _tree(fast) == _tree(_slow(component, op, mfrom, mto, sid))


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=40,
)
LANG = st.sampled_from([None, "en", "fr", "de-CH"])


@st.composite
def ops(draw: Any) -> MessageOp:
    subjects_langs = draw(st.lists(LANG, unique=True, max_size=2))
    subjects = tuple(Subject(draw(TEXT) or "s", lang) for lang in subjects_langs)
    body = draw(st.one_of(st.none(), TEXT))
    lang = draw(LANG)
    parts: tuple[BodyPart, ...] = ()
    if body is not None:
        parts = (BodyPart.plain(body, lang),)
        if draw(st.booleans()):
            xhtml = f'<body xmlns="http://www.w3.org/1999/xhtml"><p>{escape_text(body)}</p></body>'
            parts += (BodyPart(XHTML_PART, xhtml.encode(), lang),)
    chat_state = draw(st.one_of(st.none(), st.sampled_from(list(ChatState))))
    receipt_for = draw(st.one_of(st.none(), TEXT.filter(bool)))
    if not (parts or subjects or chat_state or receipt_for):
        chat_state = ChatState.ACTIVE
    return MessageOp(
        source=SRC,
        destination=DST,
        trans_id="t",
        parts=parts,
        subjects=subjects,
        thread=draw(st.one_of(st.none(), TEXT.filter(bool))),
        lang=lang,
        receipt_request=draw(st.booleans()),
        receipt_for=receipt_for,
        chat_state=chat_state,
    )


@settings(max_examples=200, deadline=None)
@given(op=ops(), sid=TEXT.filter(bool))
def test_same_tree_as_slixmpp(component: GatewayComponent, op: MessageOp, sid: str) -> None:
    _same(component, op, "alice%example.com@sip.localhost", "juliet@localhost/r", sid)


def test_escaping_in_every_place(component: GatewayComponent) -> None:
    nasty = "a<b>&c\"d'e]]>"
    op = MessageOp(
        source=SRC,
        destination=DST,
        trans_id="t",
        parts=(BodyPart.plain(nasty),),
        subjects=(Subject(nasty, "fr"),),
        thread=nasty,
        lang="en",
        receipt_request=True,
        receipt_for=nasty,
        chat_state=ChatState.COMPOSING,
    )
    _same(component, op, 'x"&<y@sip.localhost', "juliet@localhost", nasty)
    fast = message_xml(op, mfrom="a@b", mto="c@d", stanza_id="i")
    assert "]]>" not in fast  # '>' is escaped too
    assert _tree(fast)[3][1] == ("{jabber:component:accept}body", {}, nasty, ())


def test_standalone_chat_state_is_type_chat(component: GatewayComponent) -> None:
    op = MessageOp(source=SRC, destination=DST, trans_id="t", chat_state=ChatState.GONE)
    fast = message_xml(op, mfrom="a@b", mto="c@d", stanza_id="i")
    assert _tree(fast)[1] == {"to": "c@d", "from": "a@b", "id": "i", "type": "chat"}
    _same(component, op, "a@b", "c@d", "i")


def test_escapers() -> None:
    assert escape_text("a&b<c>d\"e'") == "a&amp;b&lt;c&gt;d\"e'"
    assert escape_attr("a&b<c>d\"e'") == "a&amp;b&lt;c&gt;d&quot;e'"
    assert escape_text("plain") == "plain"

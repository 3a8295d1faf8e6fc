"""gateway.xmpp.fastwrite: the one `<message/>` writer, checked against the specification.

Every output is parsed by a real XML parser inside a component stream element (default
namespace ``jabber:component:accept``, RFC 6120 §4.8.3 / XEP-0114) and read back through
`convert.message_to_op`, the reader production runs on every incoming `<message/>`: the
`MessageOp` must come back (up to what a stanza cannot say, `_readable`), the attributes
must be the exact texts given (XML 1.0 §3.1 escaping), and the structure must be what RFC
7572 / XEP-0085 / XEP-0184 / XEP-0071 ask for.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.stanza import Message

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.convert import (
    NS_CHATSTATES,
    NS_RECEIPTS,
    NS_XHTML,
    NS_XHTML_IM,
    XHTML_PART,
    message_to_op,
)
from gateway.xmpp.fastwrite import escape_attr, escape_text, message_xml
from mappings import files
from mappings.model import Address, BodyPart, ChatState, MessageOp, Subject, XmppMessageType

pytestmark = pytest.mark.unit

DOMAIN = "sip.localhost"
SRC = Address("alice", "example.com")
DST = Address("juliet", "localhost")


@pytest.fixture(scope="module")
def component() -> GatewayComponent:
    return GatewayComponent(
        ComponentConfig(DOMAIN, "secret", Addressing.MIRRORED), server="127.0.0.1", port=5347
    )


NS = "jabber:component:accept"


def _parse(text: str) -> ET.Element:
    root = ET.fromstring(f'<stream xmlns="{NS}">{text}</stream>')
    (message,) = list(root)
    return message


def _tree(text: str) -> Any:
    return _norm(_parse(text))


def _norm(el: ET.Element) -> tuple[Any, ...]:
    return (el.tag, dict(el.attrib), el.text or "", tuple(_norm(c) for c in el))


def _readable(op: MessageOp) -> dict[str, Any] | None:
    """What a `<message/>` can carry back of `op`: an empty body is no part (RFC 7572
    Table 1 reads only non-empty bodies); a subject in the message's language carries no
    xml:lang of its own; a thread is trimmed; the XHTML body is compared as a tree."""
    text = op.text()
    parts = op.parts if text else ()
    subjects: list[Subject] = []
    for subj in op.subjects:
        lang = subj.lang if subj.lang != op.lang else None
        if all(s.lang != lang for s in subjects):
            subjects.append(Subject(subj.text, lang))
    if not (text or subjects or op.chat_state or op.receipt_for):
        return None  # an empty <body/> alone: nothing the model knows (message_to_op)
    standalone = op.chat_state is not None and not op.parts and not op.subjects
    return {
        "text": text or None,
        "xhtml": [_norm(ET.fromstring(p.content)) for p in parts if p.media_type == XHTML_PART],
        "subjects": subjects,
        "thread": (op.thread or "").strip() or None,
        "lang": op.lang,
        "type": XmppMessageType.CHAT if standalone else XmppMessageType.NORMAL,
        "chat_state": op.chat_state,
        "receipt_for": op.receipt_for,
    }


XHTML = XHTML_PART


def _read(component: GatewayComponent, text: str) -> dict[str, Any] | None:
    try:
        back = message_to_op(Message(component, _parse(text)), source=SRC, destination=DST)
    except ValueError:
        return None
    return {
        "text": back.text(),
        "xhtml": [
            _norm(ET.fromstring(p.content)) for p in back.parts if p.media_type == XHTML_PART
        ],
        "subjects": list(back.subjects),
        "thread": back.thread,
        "lang": back.lang,
        "type": back.xmpp_type,
        "chat_state": back.chat_state,
        "receipt_for": back.receipt_for,
    }


def _same(component: GatewayComponent, op: MessageOp, mfrom: str, mto: str, sid: str) -> None:
    fast = message_xml(op, mfrom=mfrom, mto=mto, stanza_id=sid)
    assert fast.startswith("<message ")  # no xmlns: the stream's default (RFC 6120 §4.8.3)
    el = _parse(fast)
    # XML 1.0 §3.1: the attribute values are the exact texts given
    assert el.tag == f"{{{NS}}}message"
    assert (el.get("to"), el.get("from"), el.get("id")) == (mto, mfrom, sid)
    assert _read(component, fast) == _readable(op)
    # XEP-0184 §5.1: a request is its own child, written whenever asked (the reader keeps
    # it only for a stanza with content and an id); XEP-0085 §5: one chat state element
    requests = el.findall(f"{{{NS_RECEIPTS}}}request")
    assert len(requests) == int(op.receipt_request)
    states = [c for c in el if c.tag.startswith(f"{{{NS_CHATSTATES}}}")]
    assert len(states) == int(op.chat_state is not None)
    # XEP-0071 §7: <html/> holds the XHTML <body/>, only next to a plain <body/>
    for html in el.findall(f"{{{NS_XHTML_IM}}}html"):
        assert [c.tag for c in html] == [f"{{{NS_XHTML}}}body"]
    assert len(el.findall(f"{{{NS_XHTML_IM}}}html")) <= len(el.findall(f"{{{NS}}}body"))


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


def test_file_link_is_written_as_oob_and_read_back(component: GatewayComponent) -> None:
    """XEP-0066 §3: the link's URL in <x xmlns='jabber:x:oob'>, the file name as desc,
    next to the URL as the body; read back it is the same link (issue 17)."""
    link = files.FileLink("https://f.example/a&b.jpg", name="a<b>.jpg", content_type="image/jpeg")
    op = MessageOp(
        source=SRC,
        destination=DST,
        trans_id="t",
        parts=(BodyPart.plain(link.url), BodyPart(files.FT_HTTP_TYPE, files.build_ft_http(link))),
    )
    fast = message_xml(op, mfrom="a@b", mto="c@d", stanza_id="i")
    el = _parse(fast)
    (x,) = el.findall(f"{{{files.OOB_NS}}}x")
    assert x.findtext(f"{{{files.OOB_NS}}}url") == link.url
    assert x.findtext(f"{{{files.OOB_NS}}}desc") == "a<b>.jpg"
    assert el.findtext(f"{{{NS}}}body") == link.url
    back = message_to_op(Message(component, el), source=SRC, destination=DST)
    assert back.text() == link.url
    (ft,) = [p for p in back.parts if p.media_type == files.FT_HTTP_TYPE]
    assert files.parse_ft_http(ft.content).url == link.url


@pytest.mark.parametrize(
    ("body", "url", "text", "ft"),
    [
        ("https://u.example/f.txt", "https://u.example/f.txt", "https://u.example/f.txt", True),
        (None, "https://u.example/f.txt", "https://u.example/f.txt", True),
        ("see this", "https://u.example/f.txt", "see this\nhttps://u.example/f.txt", True),
        ("hi", "javascript:alert(1)", "hi\njavascript:alert(1)", False),
    ],
)
def test_oob_from_xmpp_becomes_text_and_a_link(
    component: GatewayComponent, body: str | None, url: str, text: str, ft: bool
) -> None:
    b = f"<body>{escape_text(body)}</body>" if body is not None else ""
    stanza = (
        f'<message to="r@sip.localhost" from="j@localhost/x" id="m1">{b}'
        f'<x xmlns="jabber:x:oob"><url>{escape_text(url)}</url><desc>d</desc></x></message>'
    )
    op = message_to_op(Message(component, _parse(stanza)), source=SRC, destination=DST)
    assert op.text() == text
    links = [p for p in op.parts if p.media_type == files.FT_HTTP_TYPE]
    assert len(links) == int(ft)  # only http(s) links become FT-HTTP
    if ft:
        assert files.parse_ft_http(links[0].content).url == url

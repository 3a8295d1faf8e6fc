"""Stanzas <-> neutral values: the one place that reads or writes slixmpp stanza fields.

* errors: `XmppErrorInfo` (mappings/errors.py) -> an error reply; any exception -> an
  `XmppErrorInfo`; an error stanza -> its condition, text and new address (`stanza_error`);
* messages (RFC 7572 Tables 1/2 on the XMPP side): `<message/>` -> `MessageOp`
  (`message_to_op`), with XEP-0085 chat states, XEP-0184 receipt requests and receipts,
  and XEP-0071 XHTML-IM (carried in the model as an ``application/xhtml+xml`` part
  holding the XHTML ``<body/>``). The way back, `MessageOp` -> `<message/>`, is
  fastwrite.py's `message_xml`: the one writer (tests/component/test_fastwrite.py reads
  its output back through `message_to_op`).

Elements are read and written on the raw ElementTree (`stanza.xml`), which is faster than
slixmpp's plugin interfaces and keeps the namespaces explicit.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.exceptions import XMPPError
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Message

from mappings import files
from mappings.errors import XMPP_CONDITIONS, MappingError, XmppErrorInfo, XmppErrorType
from mappings.model import (
    Address,
    BodyPart,
    ChatState,
    MessageOp,
    Subject,
    XmppMessageType,
)

STANZA_ERROR_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
INTERNAL_ERROR = XmppErrorInfo.of("internal-server-error")

_ERROR_TYPES: dict[object, XmppErrorType] = {
    t: t for t in ("auth", "cancel", "continue", "modify", "wait")
}


def error_info_for(exc: BaseException) -> XmppErrorInfo | None:
    """The stanza error an exception stands for; None when it is unexpected (a bug).

    * `MappingError` (raised by the core): its condition with the RFC 6120 type.
    * slixmpp's `XMPPError` (raised by plugins, e.g. disco item-not-found): kept as is when
      the condition is an RFC 6120 one.
    * `InvalidJID` (a `to`/`from` or payload JID that does not parse, RFC 7622 §3):
      jid-malformed.
    """
    if isinstance(exc, MappingError):
        return exc.to_xmpp()
    if isinstance(exc, XMPPError):
        cond = str(exc.condition)
        if cond not in XMPP_CONDITIONS:
            return None
        info = XmppErrorInfo.of(cond, text=exc.text or None)
        etype = _ERROR_TYPES.get(exc.etype)
        return XmppErrorInfo(cond, etype, info.text) if etype else info
    if isinstance(exc, InvalidJID):
        return XmppErrorInfo.of("jid-malformed", text="malformed JID")
    return None


def may_answer_with_error(stanza: Any) -> bool:
    """RFC 6120 §8.3.1: never answer an error with an error; IQ results get no reply."""
    kind = stanza.name
    stype = stanza["type"]
    if stype == "error":
        return False
    return not (kind == "iq" and stype not in ("get", "set"))


def error_reply(stanza: Any, info: XmppErrorInfo) -> Any:
    """An error stanza answering `stanza` (to/from swapped, same id, RFC 6120 §8.3.1).

    The payload of an IQ is dropped (clear); `from` is the original `to`, which is in the
    component's domain (XEP-0114 §3.2 requires from/to on every stanza). The reply is made
    from a payload-less copy of `stanza`: slixmpp's `reply` deep-copies the whole stanza
    first, which a payload nested a few hundred levels deep turns into a RecursionError.
    """
    keep_id = stanza["id"]
    bare = ET.Element(stanza.xml.tag, dict(stanza.xml.attrib))
    reply = type(stanza)(stanza.stream, xml=bare).reply(clear=True)
    reply["id"] = keep_id
    reply["type"] = "error"
    err = reply["error"]
    err["type"] = info.type
    # Written by hand: slixmpp's Error stanza knows only the RFC 3920 conditions and silently
    # ignores policy-violation (RFC 6120 §8.3.3.12) when set through err["condition"].
    del err["condition"]
    cond = ET.SubElement(err.xml, f"{{{STANZA_ERROR_NS}}}{info.condition}")
    if info.new_address is not None:
        cond.text = info.new_address  # <gone/>, <redirect/>: RFC 6120 §8.3.3.5, §8.3.3.14
    if info.text:
        ET.SubElement(err.xml, f"{{{STANZA_ERROR_NS}}}text").text = info.text
    return reply


# --- messages -----------------------------------------------------------------------------

NS_CHATSTATES = "http://jabber.org/protocol/chatstates"  # XEP-0085
NS_RECEIPTS = "urn:xmpp:receipts"  # XEP-0184
NS_MARKERS = "urn:xmpp:chat-markers:0"  # XEP-0333
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"  # XEP-0071
NS_XHTML = "http://www.w3.org/1999/xhtml"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
XHTML_PART = "application/xhtml+xml"  # same value as gateway.bridge.pager.sip_message.XHTML_PART

_CHAT_STATES = {f"{{{NS_CHATSTATES}}}{s.value}": s for s in ChatState}
_TYPES = {t.value: t for t in XmppMessageType}


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


_MESSAGE_GET_ID = Message.get_id


def stanza_id_of(msg: Any) -> str:
    """``msg["id"]`` of a `<message/>` without slixmpp's interface lookup: the attribute or
    ""; through ``msg["id"]`` when a plugin overrides ``get_id`` or a subclass redefines it."""
    if msg.plugin_overrides or type(msg).get_id is not _MESSAGE_GET_ID:
        return msg["id"] or ""
    return msg.xml.get("id") or ""


def message_to_op(msg: Any, *, source: Address, destination: Address) -> MessageOp:
    """A `<message/>` (not of type error) -> `MessageOp`; ValueError when it carries nothing
    the model knows (no body, subject, chat state or receipt)."""
    xml = msg.xml
    ns = f"{{{msg.namespace}}}"
    stanza_id = stanza_id_of(msg)
    lang = xml.get(XML_LANG) or None
    body_text: str | None = None
    subjects: list[Subject] = []
    thread = None
    chat_state = None
    request = False
    receipt_for = None
    markable = False
    displayed_for = None
    xhtml: bytes | None = None
    oob: tuple[str, str | None] | None = None  # XEP-0066 (url, desc), the first one
    for child in xml:
        tag = child.tag
        if tag == f"{ns}body":
            if body_text is None or (child.get(XML_LANG) or lang) == lang:
                body_text = body_text if body_text is not None else (child.text or "")
        elif tag == f"{ns}subject":
            slang = child.get(XML_LANG) or None
            if child.text and all(s.lang != slang for s in subjects):
                subjects.append(Subject(child.text, slang))
        elif tag == f"{ns}thread":
            thread = (child.text or "").strip() or None
        elif tag in _CHAT_STATES:
            chat_state = _CHAT_STATES[tag]
        elif tag == f"{{{NS_RECEIPTS}}}request":
            request = True
        elif tag == f"{{{NS_RECEIPTS}}}received":
            receipt_for = child.get("id") or None
        elif tag == f"{{{NS_MARKERS}}}markable":
            markable = True
        elif tag == f"{{{NS_MARKERS}}}displayed":
            displayed_for = child.get("id") or None
        elif tag == f"{{{NS_MARKERS}}}received" and receipt_for is None:
            receipt_for = child.get("id") or None  # XEP-0333 < 0.5: a delivery receipt
        elif tag == f"{{{NS_XHTML_IM}}}html":
            xbody = child.find(f"{{{NS_XHTML}}}body")
            if xbody is not None:
                xhtml = ET.tostring(xbody, encoding="utf-8")
        elif tag == _OOB_X and oob is None:
            oob = _oob(child)
    parts: list[BodyPart] = []
    if oob is not None:  # a file link (docs/pager.md "Files")
        body_text = files.text_with_url(body_text, oob[0])
    if body_text:
        parts.append(BodyPart.plain(body_text, lang))
        if xhtml is not None:
            parts.append(BodyPart(XHTML_PART, xhtml, lang))
    if oob is not None and (link := files.link_from_oob(*oob)) is not None:
        parts.append(BodyPart(files.FT_HTTP_TYPE, files.build_ft_http(link), lang))
    return MessageOp(
        source=source,
        destination=destination,
        trans_id=stanza_id or "-",
        parts=tuple(parts),
        subjects=tuple(subjects),
        thread=thread,
        lang=lang,
        xmpp_type=_TYPES.get(xml.get("type") or "normal"),
        receipt_request=request and bool(parts) and bool(stanza_id),
        receipt_for=receipt_for,
        chat_state=chat_state,
        markable=markable and bool(parts) and bool(stanza_id),
        displayed_for=displayed_for,
    )


_OOB_X = f"{{{files.OOB_NS}}}x"


def _oob(x: Any) -> tuple[str, str | None] | None:
    """XEP-0066 §3 ``<x xmlns='jabber:x:oob'>``: (url, desc), None without a URL."""
    url = x.find(f"{{{files.OOB_NS}}}url")
    text = (url.text or "").strip() if url is not None else ""
    if not text or len(text) > files.MAX_URL_CHARS:
        return None
    desc = x.find(f"{{{files.OOB_NS}}}desc")
    return text, (desc.text if desc is not None else None)


def stanza_error(stanza: Any) -> XmppErrorInfo:
    """The condition, type, text and new address of an error stanza (RFC 6120 §8.3);
    undefined-condition when it names none we know."""
    err = stanza.xml.find(f"{{{stanza.namespace}}}error")
    condition, text, address = "undefined-condition", None, None
    etype: object = None
    if err is not None:
        etype = err.get("type")
        for child in err:
            if not child.tag.startswith(f"{{{STANZA_ERROR_NS}}}"):
                continue
            name = _local(child.tag)
            if name == "text":
                text = (child.text or "").strip() or None
            elif name in XMPP_CONDITIONS and condition == "undefined-condition":
                condition = name
                address = (child.text or "").strip() or None
    if condition not in ("gone", "redirect"):
        address = None
    info = XmppErrorInfo.of(condition, text=text, new_address=address)
    known = _ERROR_TYPES.get(etype)
    return XmppErrorInfo(condition, known, text, address) if known else info

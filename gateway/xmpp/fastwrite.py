"""Outgoing `<message/>` stanzas written straight to text: the one `MessageOp` writer.

`message_xml` is how the gateway writes a `<message/>` (the pager hot path, issue 11):
no slixmpp `ElementBase` objects, no outgoing filters, no per-character escaper. The
result is serialized text for `XmppLinks.send_confirmed` / `send`, on a component stream
(default namespace ``jabber:component:accept``, so the `<message/>` itself carries no
xmlns, RFC 6120 §4.8.3). tests/component/test_fastwrite.py parses it with a real XML
parser and reads it back through `convert.message_to_op`, the production reader.

Text and attribute values are escaped for XML 1.0 (`escape_text`, `escape_attr`: the
escapers of every hand-written stanza, links.py's pings included); characters XML cannot
carry never reach here: the mappings strip them (mappings/xmlsafe.py). The XHTML-IM body
(XEP-0071) is re-serialized from its parsed tree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from slixmpp.xmlstream import tostring

from gateway.xmpp.convert import (
    NS_CHATSTATES,
    NS_MARKERS,
    NS_RECEIPTS,
    NS_XHTML_IM,
    XHTML_PART,
)
from mappings import files
from mappings.model import MessageOp, XmppMessageType

__all__ = ["escape_attr", "escape_text", "message_xml"]


def escape_text(text: str) -> str:
    """Character data (XML 1.0 §2.4): `&`, `<` and `>` (for `]]>`) escaped."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def escape_attr(text: str) -> str:
    """An attribute value between double quotes (XML 1.0 §3.1)."""
    text = escape_text(text)
    if '"' in text:
        text = text.replace('"', "&quot;")
    return text


def _lang(lang: str) -> str:
    return f' xml:lang="{escape_attr(lang)}"'


def _oob_xml(link: files.FileLink) -> str:
    """XEP-0066 §3: the URL, and the file name as the description."""
    desc = f"<desc>{escape_text(link.name)}</desc>" if link.name else ""
    return f'<x xmlns="{files.OOB_NS}"><url>{escape_text(link.url)}</url>{desc}</x>'


def message_xml(op: MessageOp, *, mfrom: str, mto: str, stanza_id: str) -> str:
    """`MessageOp` -> serialized `<message/>` from `mfrom` to `mto` (R7572-06: no type for
    pager-mode content; ``chat`` for a standalone chat state, XEP-0085 §5.2)."""
    to, frm, sid = escape_attr(mto), escape_attr(mfrom), escape_attr(stanza_id)
    head = [f'<message to="{to}" from="{frm}" id="{sid}"']
    standalone_state = op.chat_state is not None and not op.parts and not op.subjects
    if standalone_state or op.xmpp_type is XmppMessageType.CHAT:  # RFC 7573 §5: chat
        head.append(' type="chat"')
    if op.lang:
        head.append(_lang(op.lang))
    head.append(">")
    out = ["".join(head)]
    for subject in op.subjects:
        attr = _lang(subject.lang) if subject.lang and subject.lang != op.lang else ""
        out.append(f"<subject{attr}>{escape_text(subject.text)}</subject>")
    text = op.text()
    if text is not None:
        out.append(f"<body>{escape_text(text)}</body>" if text else "<body />")
    if op.thread:
        out.append(f"<thread>{escape_text(op.thread)}</thread>")
    for part in op.parts:
        if part.media_type == XHTML_PART:
            body = tostring(ET.fromstring(part.content), xmlns=NS_XHTML_IM)
            out.append(f'<html xmlns="{NS_XHTML_IM}">{body}</html>')
        elif part.media_type == files.FT_HTTP_TYPE:
            out.append(_oob_xml(files.parse_ft_http(part.content)))
    if op.chat_state is not None:
        out.append(f'<{op.chat_state.value} xmlns="{NS_CHATSTATES}" />')
    if op.receipt_request:
        out.append(f'<request xmlns="{NS_RECEIPTS}" />')
    if op.receipt_for is not None:
        out.append(f'<received xmlns="{NS_RECEIPTS}" id="{escape_attr(op.receipt_for)}" />')
    if op.markable:
        out.append(f'<markable xmlns="{NS_MARKERS}" />')
    if op.displayed_for is not None:
        marker = escape_attr(op.displayed_for)
        out.append(f'<displayed xmlns="{NS_MARKERS}" id="{marker}" />')
    out.append("</message>")
    return "".join(out)

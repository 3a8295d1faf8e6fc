"""Stanzas <-> neutral values: the one place that reads or writes slixmpp stanza fields.

For now it holds the error side: `XmppErrorInfo` (mappings/errors.py) -> an error reply, and
the classification of any exception into an `XmppErrorInfo`. Message and presence conversion
to the mappings/model.py dataclasses belongs to the pager and presence work and will live here
too, so that handlers keep no mapping logic.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.exceptions import XMPPError
from slixmpp.jid import InvalidJID

from mappings.errors import XMPP_CONDITIONS, MappingError, XmppErrorInfo, XmppErrorType

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
    component's domain (XEP-0114 §3.2 requires from/to on every stanza).
    """
    keep_id = stanza["id"]
    reply = stanza.reply(clear=True)
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

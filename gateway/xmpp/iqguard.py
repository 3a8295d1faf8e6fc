"""The shape of the IQs the component answers itself (issue 22 "Bad input"), checked first.

RFC 6120 §8.2.3: an IQ get or set carries exactly one payload element. The gets the
component answers (XEP-0030 §3.1/§4.1 disco#info and disco#items, XEP-0054 §3.1 vCard,
XEP-0100 §6.3 jabber:iq:gateway) carry an EMPTY one; the jabber:iq:gateway set carries
one ``<prompt/>`` of text only. Anything else (extra payloads, children, text, a prompt
longer than `disco.PROMPT_MAX_CHARS`) is answered bad-request (modify, RFC 6120
§8.3.3.1) with a `<text/>` saying what was wrong, and logged by the error boundary
("answering iq ... with modify/bad-request"): it is never read further.

How much XML reaches these checks at all is bounded before: the server's stanza size
limit (Prosody: 256 KiB by default), then the stream parser (streamparser.py: no DTD,
so no entity expansion; a bounded name table). Deep nesting and many children parse to
elements like any other; the checks here look at the payload's first level only, so
their cost is constant.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.exceptions import XMPPError

from gateway.xmpp.disco import NS_GATEWAY, PROMPT_MAX_CHARS

__all__ = ["empty_payload", "prompt_of"]


def _bad(text: str) -> XMPPError:
    return XMPPError("bad-request", text, etype="modify")


def _payload(iq: Any) -> ET.Element:
    xml: ET.Element = iq.xml
    children = list(xml)
    if len(children) != 1:
        raise _bad(f"an IQ {xml.get('type')} carries exactly one payload, not {len(children)}")
    return children[0]


def empty_payload(iq: Any) -> None:
    """A get's payload must be one empty element (no children, no text)."""
    payload = _payload(iq)
    if len(payload) or (payload.text or "").strip():
        raise _bad(f"the payload of this get must be empty: <{payload.tag.rpartition('}')[2]}/>")


def prompt_of(iq: Any) -> str:
    """The text of a jabber:iq:gateway set's single ``<prompt/>`` (XEP-0100 §6.3)."""
    query = _payload(iq)
    prompts = [c for c in query if c.tag == f"{{{NS_GATEWAY}}}prompt"]
    if len(query) != 1 or len(prompts) != 1:
        raise _bad("a jabber:iq:gateway set carries one <prompt/> and nothing else")
    prompt = prompts[0]
    if len(prompt):
        raise _bad("<prompt/> holds text only")
    text = prompt.text or ""
    if len(text) > PROMPT_MAX_CHARS:
        raise _bad(f"<prompt/> is longer than {PROMPT_MAX_CHARS} characters")
    if not text.strip():
        raise _bad("empty <prompt/>")
    return text

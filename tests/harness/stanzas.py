"""Stanza objects for in-memory component tests, built with slixmpp's public API.

slixmpp turns a received element into a stanza object with a private helper of its
stream; tests build the same object with the public constructors of the root stanza
classes (`Message(stream, xml, recv=True)`, ...): the element is kept as is (to/from that
are not JIDs, odd namespaces) and the stanza is bound to the component, so replies and
errors go out through it. The gateway's own subclasses of these classes only add
`exception`/`unhandled` reporting, which these tests do not exercise.
"""

from __future__ import annotations

from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream import ET, StanzaBase, XMLStream

__all__ = ["stanza_from_text", "stanza_of"]

_ROOTS: dict[str, type[StanzaBase]] = {"message": Message, "presence": Presence, "iq": Iq}


def stanza_of(stream: XMLStream, xml: ET.Element) -> StanzaBase:
    """The stanza object for a received `xml` element (a generic one for other names)."""
    local = xml.tag.rsplit("}", 1)[-1]
    return _ROOTS.get(local, StanzaBase)(stream, xml, recv=True)


def stanza_from_text(stream: XMLStream, text: str) -> StanzaBase:
    """`stanza_of` for XML text."""
    return stanza_of(stream, ET.fromstring(text))

"""RFC 3994 ``application/im-iscomposing+xml`` <-> XEP-0085 chat states.

The tables are RFC 7573 §8 Tables 3 and 4 (DIGEST R7573-03), usable in pager mode.
Stateful duties (collapse repeated ``active`` into one ``<composing/>``, stop after
a 415, refresh timers) belong to the caller; this module is the format and the tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final, Literal

from lxml import etree

from mappings.cpim import format_datetime, parse_datetime
from mappings.xmlsafe import FormatError, nsmap, parse_xml, serialize

ISCOMPOSING_NS: Final = "urn:ietf:params:xml:ns:im-iscomposing"
MEDIA_TYPE: Final = "application/im-iscomposing+xml"
CHATSTATES_NS: Final = "http://jabber.org/protocol/chatstates"

ComposingState = Literal["active", "idle"]
ChatState = Literal["active", "composing", "paused", "inactive", "gone"]

DEFAULT_ACTIVE_TIMEOUT: Final = 120
"""RFC 3994 §4: without ``<refresh>`` a receiver reverts to idle after 120 s."""


class IsComposingError(FormatError):
    """Not an isComposing document: SIP 400 / XMPP bad-request."""


@dataclass(frozen=True)
class IsComposing:
    """``<isComposing>`` (RFC 3994 §5.2)."""

    state: ComposingState
    lastactive: datetime | None = None
    contenttype: str | None = None
    refresh: int | None = None
    """Seconds; a positive integer (schema ``xs:positiveInteger``)."""

    def __post_init__(self) -> None:
        if self.state not in ("active", "idle"):
            raise ValueError(f"isComposing state must be active or idle: {self.state!r}")
        if self.refresh is not None and self.refresh <= 0:
            raise ValueError("refresh must be a positive integer")


_DIGITS = re.compile(r"[0-9]{1,9}")  # xs:positiveInteger, bounded


def _q(local: str) -> str:
    return f"{{{ISCOMPOSING_NS}}}{local}"


def _text(root: etree._Element, local: str) -> str | None:
    element = root.find(_q(local))
    if element is None:
        return None
    return (element.text or "").strip() or None


def parse_iscomposing(data: bytes) -> IsComposing:
    """Parse via the hardened parser. Unknown states read as ``idle`` (RFC 3994 §4 MUST);
    a malformed ``lastactive`` or non-positive ``refresh`` reads as absent."""
    root = parse_xml(data)
    if root.tag != _q("isComposing"):
        raise IsComposingError(f"not an isComposing document: root {root.tag!r}")
    state: ComposingState = "active" if _text(root, "state") == "active" else "idle"
    lastactive = None
    if (text := _text(root, "lastactive")) is not None:
        try:
            lastactive = parse_datetime(text)
        except ValueError:
            lastactive = None
    refresh_text = _text(root, "refresh")
    refresh = int(refresh_text) if refresh_text and _DIGITS.fullmatch(refresh_text) else None
    return IsComposing(state, lastactive, _text(root, "contenttype"), refresh or None)


def build_iscomposing(doc: IsComposing) -> bytes:
    """Serialize in schema order: state, lastactive, contenttype, refresh."""
    root = etree.Element(_q("isComposing"), nsmap=nsmap(ISCOMPOSING_NS))
    etree.SubElement(root, _q("state")).text = doc.state
    if doc.lastactive is not None:
        etree.SubElement(root, _q("lastactive")).text = format_datetime(doc.lastactive)
    if doc.contenttype is not None:
        etree.SubElement(root, _q("contenttype")).text = doc.contenttype
    if doc.refresh is not None:
        etree.SubElement(root, _q("refresh")).text = str(doc.refresh)
    return serialize(root)


# --- RFC 7573 §8 Tables 3 and 4 ---

ISCOMPOSING_TO_CHAT_STATE: Final[Mapping[ComposingState, ChatState]] = MappingProxyType(
    {"active": "composing", "idle": "active"}
)
CHAT_STATE_TO_ISCOMPOSING: Final[Mapping[ChatState, ComposingState | None]] = MappingProxyType(
    {
        "composing": "active",
        "active": "idle",
        "inactive": "idle",
        "paused": "idle",
        "gone": None,  # no isComposing: nothing in pager mode, BYE in session mode
    }
)


def chat_state_for(doc: IsComposing) -> ChatState:
    """isComposing -> XEP-0085 chat state (Table 3)."""
    return ISCOMPOSING_TO_CHAT_STATE[doc.state]


def iscomposing_for(
    state: ChatState, *, refresh: int | None = None, contenttype: str | None = "text/plain"
) -> IsComposing | None:
    """XEP-0085 chat state -> isComposing (Table 4); None for ``gone``.

    ``refresh`` is only sent with ``active`` (RFC 3994 §5.2, SHOULD be >= 60 s).
    """
    mapped = CHAT_STATE_TO_ISCOMPOSING[state]
    if mapped is None:
        return None
    if mapped == "active":
        return IsComposing("active", contenttype=contenttype, refresh=refresh)
    return IsComposing("idle", contenttype=contenttype)

"""Presence stanzas <-> neutral values (`mappings.presence.XmppPresence`, subscription kinds).

The only place the presence bridge reads or writes slixmpp presence fields. Reading goes
through the raw XML: slixmpp's `presence['type']` answers the `<show/>` value for an
available presence, and its `status` interface knows one `<status/>` only, while RFC 6121
§4.7.2.2 allows one per `xml:lang` (mapped to one PIDF `<note xml:lang>` each, RFC 8048
Table 1).

`disable_roster_automation` switches off slixmpp's built-in component roster: left on, it
answers `subscribe` with `subscribed` and probes with `unsubscribed` on its own, which would
grant or deny presence behind the gateway's back (RFC 8048 §5.1, §8.2).

Every available presence built here carries the component's XEP-0115 ``<c/>``
(`GatewayComponent.caps_for`, gateway/xmpp/caps.py); unavailable presence does not (there is
no one left whose capabilities it could describe). Every presence, available or not,
of a contact with an avatar carries its XEP-0153 ``<x xmlns='vcard-temp:x:update'/>``
(`GatewayComponent.avatar_of`, mappings/avatar.py).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any, Final, Literal

from gateway.xmpp.caps import caps_element
from mappings.avatar import update_element
from mappings.jid import Jid, parse_jid
from mappings.presence import Show, XmppPresence

__all__ = [
    "SUBSCRIPTION_TYPES",
    "InboundPresence",
    "PresenceKind",
    "build_presence",
    "build_subscription",
    "disable_roster_automation",
    "read_presence",
]

XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"

PresenceKind = Literal[
    "available",
    "unavailable",
    "subscribe",
    "subscribed",
    "unsubscribe",
    "unsubscribed",
    "probe",
    "error",
]
SUBSCRIPTION_TYPES: Final = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
_KINDS: Final[dict[str | None, PresenceKind]] = {
    None: "available",
    "unavailable": "unavailable",
    "subscribe": "subscribe",
    "subscribed": "subscribed",
    "unsubscribe": "unsubscribe",
    "unsubscribed": "unsubscribed",
    "probe": "probe",
    "error": "error",
}
_SHOWS: Final[dict[str, Show]] = {"away": "away", "chat": "chat", "dnd": "dnd", "xa": "xa"}


@dataclass(frozen=True)
class InboundPresence:
    """A presence stanza as the bridge sees it. `presence` is set for available/unavailable."""

    kind: PresenceKind
    sender: Jid
    recipient: Jid
    presence: XmppPresence | None = None
    error_condition: str | None = None


def _local(tag: object) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _children(xml: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in xml if _local(child.tag) == name]


def _priority(xml: ET.Element) -> int:
    for child in _children(xml, "priority"):
        try:
            value = int((child.text or "0").strip())
        except ValueError:
            return 0  # RFC 6121 §4.7.2.3: not an integer, treat as absent
        return max(-128, min(127, value))
    return 0


def read_presence(stanza: Any) -> InboundPresence | None:
    """Classify a presence stanza; None when its type is unknown (RFC 6121 §4.7.1: ignore)."""
    xml: ET.Element = stanza.xml
    kind = _KINDS.get(xml.get("type"))
    if kind is None:
        return None
    sender = parse_jid(xml.get("from") or "")
    recipient = parse_jid(xml.get("to") or "")
    if kind == "error":
        error = next(iter(_children(xml, "error")), None)
        condition = None if error is None else next((_local(c.tag) for c in error), None)
        return InboundPresence(kind, sender, recipient, error_condition=condition)
    if kind not in ("available", "unavailable"):
        return InboundPresence(kind, sender, recipient)
    lang = xml.get(XML_LANG) or None
    show = None
    if kind == "available":
        shows = _children(xml, "show")
        show = _SHOWS.get((shows[0].text or "").strip()) if shows else None
    statuses = tuple(
        ((child.text or "").strip(), child.get(XML_LANG) or lang)  # xml:lang is inherited
        for child in _children(xml, "status")
        if (child.text or "").strip()
    )
    presence = XmppPresence(
        resource=sender.resource,
        available=kind == "available",
        show=show,
        statuses=statuses,
        priority=_priority(xml),
        lang=lang,
    )
    return InboundPresence(kind, sender, recipient, presence)


def build_presence(component: Any, *, sender: Jid, recipient: Jid, presence: XmppPresence) -> Any:
    """A `<presence/>` (no type or unavailable) from `sender` to `recipient` (RFC 8048 §6.3);
    an available one carries `component.caps_for(sender)` (XEP-0115 §4: that contact's)."""
    stanza = component.make_presence(
        pto=str(recipient),
        pfrom=str(sender),
        ptype=None if presence.available else "unavailable",
    )
    xml: ET.Element = stanza.xml
    ns = stanza.namespace
    if presence.lang:
        xml.set(XML_LANG, presence.lang)
    if presence.show is not None:
        ET.SubElement(xml, f"{{{ns}}}show").text = presence.show
    for text, lang in presence.statuses:
        status = ET.SubElement(xml, f"{{{ns}}}status")
        status.text = text
        if lang and lang != presence.lang:
            status.set(XML_LANG, lang)
    if presence.priority and presence.available:
        ET.SubElement(xml, f"{{{ns}}}priority").text = str(presence.priority)
    if presence.available:
        xml.append(caps_element(component.caps_for(sender)))
    avatar = component.avatar_of(sender)
    if avatar is not None:  # XEP-0153 §4.1: in every presence; none without an avatar
        xml.append(update_element(avatar))
    return stanza


def build_subscription(component: Any, kind: PresenceKind, *, sender: Jid, recipient: Jid) -> Any:
    """subscribe / subscribed / unsubscribe / unsubscribed / probe (RFC 6121 §3, §4.3)."""
    if kind not in SUBSCRIPTION_TYPES and kind != "probe":
        raise ValueError(f"not a subscription or probe type: {kind}")
    return component.make_presence(pto=str(recipient), pfrom=str(sender), ptype=kind)


_ROSTER_EVENTS: Final = (
    ("presence_available", "_handle_available"),
    ("presence_dnd", "_handle_available"),
    ("presence_xa", "_handle_available"),
    ("presence_chat", "_handle_available"),
    ("presence_away", "_handle_available"),
    ("presence_unavailable", "_handle_unavailable"),
    ("presence_subscribe", "_handle_subscribe"),
    ("presence_subscribed", "_handle_subscribed"),
    ("presence_unsubscribe", "_handle_unsubscribe"),
    ("presence_unsubscribed", "_handle_unsubscribed"),
    ("roster_subscription_request", "_handle_new_subscription"),
    ("presence_probe", "_handle_probe"),
)


def disable_roster_automation(component: Any) -> None:
    """Remove slixmpp's automatic roster answers from a component (see module docstring)."""
    component.auto_authorize = None
    component.auto_subscribe = False
    for event_name, method in _ROSTER_EVENTS:
        handler = getattr(component, method, None)
        if handler is not None:
            component.del_event_handler(event_name, handler)

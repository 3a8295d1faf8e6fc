"""The vCard of a bridged SIP contact (XEP-0054 vcard-temp), pure: data -> element.

What a contact's vCard says (docs/xmpp.md, "vCards of SIP contacts"):

* ``<FN>``: the display name the operator gave a hosted user in the registrar's user file,
  otherwise the display name the gateway last saw that contact use in SIP (a trusted
  P-Asserted-Identity or the From of its requests: `gateway.bridge.names`), otherwise the
  user part of the SIP address (a telephone number for a tel: URI); every name passes
  `clean_display_name` (peer input: no control characters, at most `NAME_LIMIT`);
* ``<TEL><VOICE/><NUMBER>sip:...</NUMBER></TEL>``: RFC 7081 §3.1 asks the vCard "tel"
  field to carry the contact's SIP address so that a CUSAX client can call it; vcard-temp's
  TEL has no URI type, so the URI goes in NUMBER (a ``tel:`` URI's number goes there bare);
* ``<JABBERID>``: for a hosted user the operator linked to an XMPP account of the same
  person (the user file's ``xmpp``, RFC 7081 linked identities), that account's bare JID;
* ``<URL>sip:...</URL>``: the same address, for clients that show links but no phone numbers.

* ``<PHOTO>``: the avatar the operator gave a hosted user (the user file's ``avatar``,
  mappings/avatar.py; XEP-0153), between FN and TEL as XEP-0054's DTD orders them.
"""

from __future__ import annotations

import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from mappings.addresses import DomainMap, jid_to_sip_target
from mappings.avatar import Avatar, Avatars, photo_element
from mappings.jid import Jid

__all__ = [
    "NAME_LIMIT",
    "NS_VCARD",
    "ContactCard",
    "DisplayNames",
    "LinkedAccounts",
    "clean_display_name",
    "contact_card",
    "first_name",
    "vcard_element",
]

DisplayNames = Callable[[str], str | None]
"""A hosted user's AOR (``sip:user@domain``) -> the display name the operator gave it."""
LinkedAccounts = Callable[[str], str | None]
"""A hosted user's AOR (``sip:user@domain``) -> the bare JID of the same person's XMPP
account, as the operator linked them (RFC 7081)."""

NS_VCARD: Final = "vcard-temp"
NAME_LIMIT: Final = 64  # characters of a display name kept (a name, not a message)


def clean_display_name(text: str | None) -> str | None:
    """A display name fit to show: control and format characters (Unicode Cc, Cf: CR/LF,
    NUL, bidi overrides) become spaces, runs of white space one space, at most
    `NAME_LIMIT` characters; None when nothing is left. Display names come from SIP
    peers (From, P-Asserted-Identity), so they are hostile input."""
    if not text:
        return None
    shown = "".join(" " if unicodedata.category(c) in ("Cc", "Cf") else c for c in text)
    shown = " ".join(shown.split())[:NAME_LIMIT].rstrip()
    return shown or None


def first_name(*lookups: DisplayNames | None) -> DisplayNames:
    """One `DisplayNames` asking `lookups` in order (the user file first, then what SIP
    traffic showed); the first usable name wins."""
    chain = tuple(lookup for lookup in lookups if lookup is not None)

    def lookup(aor: str) -> str | None:
        for names in chain:
            name = clean_display_name(names(aor))
            if name is not None:
                return name
        return None

    return lookup


@dataclass(frozen=True)
class ContactCard:
    """What the gateway knows about a SIP contact: a name to show and the URI to call."""

    full_name: str
    uri: str  # "sip:romeo@sip.example.org" or "tel:+15551234567"
    jabber_id: str | None = None  # the linked XMPP account (RFC 7081), a bare JID
    photo: Avatar | None = None  # a hosted user's avatar (XEP-0153)


def contact_card(
    jid: Jid,
    domain_map: DomainMap,
    display_names: DisplayNames | None = None,
    linked: LinkedAccounts | None = None,
    avatars: Avatars | None = None,
) -> ContactCard:
    """The card of the SIP user a component JID stands for (the resource is ignored).

    Raises `AddressError` (a `MappingError`: item-not-found, jid-malformed or forbidden)
    for a JID that names no SIP user of this component: the domain itself, another
    domain, or a local part that does not map (RFC 6120 §8.3.3.7, §8.3.3.8).
    """
    target = jid_to_sip_target(jid.bare, domain_map=domain_map).aor
    uri = str(target)
    name = clean_display_name(display_names(uri)) if display_names is not None else None
    jabber_id = linked(uri) if linked is not None else None
    photo = avatars(uri) if avatars is not None else None
    return ContactCard(
        full_name=name or target.user or uri, uri=uri, jabber_id=jabber_id, photo=photo
    )


def vcard_element(card: ContactCard) -> ET.Element:
    """``<vCard xmlns='vcard-temp'>`` for `card`, children in XEP-0054's DTD order."""
    q = f"{{{NS_VCARD}}}"
    vcard = ET.Element(f"{q}vCard")
    ET.SubElement(vcard, f"{q}FN").text = card.full_name
    if card.photo is not None:
        vcard.append(photo_element(card.photo))
    tel = ET.SubElement(vcard, f"{q}TEL")
    ET.SubElement(tel, f"{q}VOICE")
    number = card.uri.partition(":")[2] if card.uri.lower().startswith("tel:") else card.uri
    ET.SubElement(tel, f"{q}NUMBER").text = number
    if card.jabber_id:
        ET.SubElement(vcard, f"{q}JABBERID").text = card.jabber_id
    ET.SubElement(vcard, f"{q}URL").text = card.uri
    return vcard

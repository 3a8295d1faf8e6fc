"""XEP-0054 vcard-temp for bridged SIP contacts: the IQ handler (the card is mappings/vcard.py's).

* ``get`` to a contact JID (bare or full): the contact's card (`mappings.vcard.contact_card`);
* ``get`` to a JID that names no SIP user of the component (the domain itself, another
  domain, a local part that does not map): the mapping error's condition, item-not-found
  or jid-malformed (RFC 6120 §8.3.3.7, §8.3.3.8), logged by the boundary;
* ``set``: not-allowed (RFC 6120 §8.3.3.10): a contact's card is the gateway's to say.

The handler raises; `GatewayComponent` registers it under the error boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slixmpp.exceptions import XMPPError
from slixmpp.xmlstream import ElementBase

from gateway.xmpp.iqguard import empty_payload
from mappings.addresses import DomainMap
from mappings.avatar import Avatars
from mappings.jid import parse_jid
from mappings.vcard import NS_VCARD, DisplayNames, LinkedAccounts, contact_card, vcard_element

__all__ = ["HANDLER_NAME", "VCardQuery", "vcard_handler"]

HANDLER_NAME = "vcard-temp"


class VCardQuery(ElementBase):
    """``<vCard xmlns='vcard-temp'/>`` in an IQ (only matched on; the answer is built whole)."""

    name = "vCard"
    namespace = NS_VCARD
    plugin_attrib = "vcard_temp"


def vcard_handler(
    domain_map: DomainMap,
    display_names: DisplayNames | None = None,
    linked: LinkedAccounts | None = None,
    avatars: Avatars | None = None,
) -> Callable[[Any], None]:
    """The handler for ``iq/vcard_temp`` on the component of `domain_map`."""

    def handle(iq: Any) -> None:
        kind = iq["type"]
        if kind == "set":
            raise XMPPError("not-allowed", "a SIP contact's vCard cannot be set", etype="cancel")
        if kind != "get":
            return  # results and errors are never answered (RFC 6120 §8.3.1)
        empty_payload(iq)  # bad-request otherwise (iqguard.py)
        to = parse_jid(iq.xml.get("to") or "")
        card = contact_card(to, domain_map, display_names, linked, avatars)
        reply = iq.reply()
        reply.set_payload(vcard_element(card))
        reply.send()

    return handle

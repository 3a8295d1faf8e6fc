"""XEP-0115 entity capabilities of the bridged SIP contacts, pure (no slixmpp).

Every available presence the gateway sends for a contact carries
``<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='CAPS_NODE' ver='...'/>``;
`ver` is computed from the contact's disco#info (`gateway.xmpp.disco.contact_info`) as
§5.1 prescribes, and the component answers disco#info at ``CAPS_NODE#ver`` with that very
content (docs/xmpp.md, "Entity capabilities").
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["CAPS_NODE", "NS_CAPS", "Caps", "caps_element", "caps_ver"]

NS_CAPS: Final = "http://jabber.org/protocol/caps"
# XEP-0115 §4 "node": a URI naming the software; an identifier, never fetched.
CAPS_NODE: Final = "https://cpim-gateway.invalid/caps"


@dataclass(frozen=True)
class Caps:
    """What goes in ``<c/>``: the software's node and the verification string."""

    node: str
    ver: str
    hash: str = "sha-1"

    @property
    def node_ver(self) -> str:
        """The disco#info node a client asks for (XEP-0115 §6.2: ``node#ver``)."""
        return f"{self.node}#{self.ver}"


def _octets(text: str) -> bytes:
    return text.encode("utf-8")


def caps_ver(identities: Iterable[tuple[str, str, str, str]], features: Iterable[str]) -> str:
    """The §5.1 verification string (no extended forms: the gateway sends none).

    `identities` are (category, type, xml:lang, name) with "" for an absent lang or name.
    Steps 2-8: identities sorted by category, type, then lang (i;octet), each appended as
    ``category/type/lang/name<``; features sorted (i;octet), each appended as ``var<``;
    then SHA-1 over the UTF-8 octets, base64 encoded (RFC 4648 §4).
    """
    ordered = sorted(identities, key=lambda i: (_octets(i[0]), _octets(i[1]), _octets(i[2])))
    s = "".join(f"{c}/{t}/{lang}/{name}<" for c, t, lang, name in ordered)
    s += "".join(f"{f}<" for f in sorted(features, key=_octets))
    return base64.b64encode(hashlib.sha1(_octets(s)).digest()).decode("ascii")


def caps_element(caps: Caps) -> ET.Element:
    """``<c xmlns='http://jabber.org/protocol/caps' hash=... node=... ver=.../>`` (§4)."""
    return ET.Element(f"{{{NS_CAPS}}}c", {"hash": caps.hash, "node": caps.node, "ver": caps.ver})

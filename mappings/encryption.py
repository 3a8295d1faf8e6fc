"""End-to-end protected payloads the gateway cannot translate (issue 17 item 4). Pure.

XMPP -> SIP (:func:`detect_xmpp`): an encrypted stanza carries a fallback ``<body/>`` for
clients that cannot decrypt ("I sent you an OMEMO encrypted message..."). Relaying that text
would deliver a message the sender did not write, so such a stanza is refused as a whole
(:func:`refusal`: ``not-acceptable`` with a text naming the scheme). Detected:

* XEP-0380 ``<encryption xmlns='urn:xmpp:eme:0' namespace=.. name=..>`` (any namespace,
  known or not: it says the body is a fallback; its ``name`` or table name is reported);
* XEP-0384 OMEMO ``<encrypted/>`` in ``eu.siacs.conversations.axolotl``,
  ``urn:xmpp:omemo:1`` or ``urn:xmpp:omemo:2``;
* XEP-0373 ``<openpgp xmlns='urn:xmpp:openpgp:0'/>`` (signcrypt, sign or crypt: the text is
  inside the OpenPGP message either way);
* XEP-0027 ``<x xmlns='jabber:x:encrypted'/>``;
* OTR (XEP-0364): a body starting with ``?OTR`` (query, data, error messages). The OTR
  whitespace tag on a plain message only announces willingness and is not refused.

SIP -> XMPP (:func:`sip_protection`): S/MIME (RFC 5751) and PGP/MIME (RFC 3156) media types.
XMPP has no deployed carrier for S/MIME (RFC 3923 was never implemented by clients), so the
gateway can neither pass them through nor honestly strip them: they are refused (415 with a
reason phrase naming the protection, docs/pager.md "End-to-end protected messages").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, Protocol

from mappings.errors import MappingError

NS_EME: Final = "urn:xmpp:eme:0"
NS_OTR: Final = "urn:xmpp:otr:0"

# XEP-0380 §3 table: namespace -> name (also the payload namespaces detected directly).
SCHEMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        NS_OTR: "OTR",
        "jabber:x:encrypted": "Legacy OpenPGP",
        "urn:xmpp:openpgp:0": "OpenPGP for XMPP",
        "eu.siacs.conversations.axolotl": "OMEMO",
        "urn:xmpp:omemo:1": "OMEMO 1",
        "urn:xmpp:omemo:2": "OMEMO 2",
    }
)
# Payload element (Clark notation) -> its scheme namespace.
_PAYLOADS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "{eu.siacs.conversations.axolotl}encrypted": "eu.siacs.conversations.axolotl",
        "{urn:xmpp:omemo:1}encrypted": "urn:xmpp:omemo:1",
        "{urn:xmpp:omemo:2}encrypted": "urn:xmpp:omemo:2",
        "{urn:xmpp:openpgp:0}openpgp": "urn:xmpp:openpgp:0",
        "{jabber:x:encrypted}x": "jabber:x:encrypted",
    }
)
_EME: Final = f"{{{NS_EME}}}encryption"
OTR_PREFIX: Final = "?OTR"


class Element(Protocol):
    """What is read of a stanza element (xml.etree and lxml elements both fit)."""

    @property
    def tag(self) -> str: ...

    @property
    def text(self) -> str | None: ...

    def get(self, key: str, /) -> str | None: ...

    def __iter__(self) -> Iterator[Element]: ...


@dataclass(frozen=True, slots=True)
class Encrypted:
    """An end-to-end encrypted stanza: its scheme's namespace and a human-readable name."""

    namespace: str
    name: str


def detect_xmpp(children: Iterable[Element], body_tag: str) -> Encrypted | None:
    """The encryption of a ``<message/>`` given its child elements; ``body_tag`` is the
    Clark name of ``<body/>`` in the stanza's namespace. XEP-0380 wins when present (it says
    which scheme the sender used), then a payload element, then an OTR body."""
    found: Encrypted | None = None
    for child in children:
        tag = child.tag
        if tag == _EME:
            namespace = (child.get("namespace") or "").strip()
            name = (child.get("name") or "").strip() or SCHEMES.get(namespace)
            return Encrypted(namespace, name or namespace or "an unknown scheme")
        if found is None and tag in _PAYLOADS:
            namespace = _PAYLOADS[tag]
            found = Encrypted(namespace, SCHEMES[namespace])
        elif found is None and tag == body_tag and (child.text or "").startswith(OTR_PREFIX):
            found = Encrypted(NS_OTR, SCHEMES[NS_OTR])
    return found


def refusal(encrypted: Encrypted) -> MappingError:
    """The error for an encrypted stanza: not-acceptable, the text naming the scheme (the
    SIP status is only for the record: nothing is sent to SIP)."""
    return MappingError(
        f"{encrypted.name} encrypted message not delivered: the SIP side cannot decrypt it;"
        " send it unencrypted to reach this contact",
        sip_status=488,
        xmpp_condition="not-acceptable",
    )


Protection = Literal["encrypted", "signed"]

# RFC 5751 §3.2 / RFC 1847 / RFC 3156 media types (lower case).
SIP_PROTECTED: Final[Mapping[str, Protection]] = MappingProxyType(
    {
        "application/pkcs7-mime": "encrypted",  # enveloped-data (or signed-data, opaque)
        "application/x-pkcs7-mime": "encrypted",
        "multipart/encrypted": "encrypted",  # PGP/MIME
        "multipart/signed": "signed",
        "application/pkcs7-signature": "signed",
        "application/x-pkcs7-signature": "signed",
    }
)


def sip_protection(media_type: str) -> Protection | None:
    """Whether a SIP body's media type (no parameters, lower case) is end-to-end protected."""
    return SIP_PROTECTED.get(media_type)


def sip_reason(protection: Protection) -> str:
    """The 415 reason phrase for a protected SIP body."""
    if protection == "signed":
        return "Signed Content Not Relayed To XMPP"
    return "Encrypted Content Cannot Reach XMPP"

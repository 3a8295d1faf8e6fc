"""Registration state documents (RFC 3680 §5, ``application/reginfo+xml``).

The reg event package tells a subscriber which contacts are bound to an address of
record. This module is the document format only: frozen dataclasses,
:func:`build_reginfo` and a hardened :func:`parse_reginfo` over
:func:`mappings.xmlsafe.parse_xml`. Enumerations are the RFC 3680 §5.4 schema's; elements
and attributes from other namespaces are ignored (§5.1). Errors: :class:`ReginfoError`
(400), or the xmlsafe errors for hostile XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from lxml import etree

from mappings.xmlsafe import XML_LANG, FormatError, nsmap, parse_xml, serialize

__all__ = [
    "MEDIA_TYPE",
    "NS",
    "Contact",
    "ContactEvent",
    "ContactState",
    "RegInfo",
    "ReginfoError",
    "Registration",
    "RegistrationState",
    "build_reginfo",
    "parse_reginfo",
]

MEDIA_TYPE: Final = "application/reginfo+xml"
NS: Final = "urn:ietf:params:xml:ns:reginfo"

RegistrationState = Literal["init", "active", "terminated"]
ContactState = Literal["active", "terminated"]
ContactEvent = Literal[
    "registered",
    "created",
    "refreshed",
    "shortened",
    "expired",
    "deactivated",
    "probation",
    "unregistered",
    "rejected",
]
_REG_STATES: Final = frozenset(get_args(RegistrationState))
_CONTACT_STATES: Final = frozenset(get_args(ContactState))
_EVENTS: Final = frozenset(get_args(ContactEvent))
_MAX_UNSIGNED_LONG: Final = 2**64 - 1


class ReginfoError(FormatError):
    """Not a reginfo document we can use: 400."""


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


def _check_unsigned(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= _MAX_UNSIGNED_LONG:
        raise ReginfoError(f"{name} {value} is not an unsigned long")


@dataclass(frozen=True)
class Contact:
    """``<contact>``: one binding of the AOR (RFC 3680 §5.1)."""

    id: str
    state: ContactState
    event: ContactEvent
    uri: str
    expires: int | None = None
    duration_registered: int | None = None
    retry_after: int | None = None
    q: str | None = None
    callid: str | None = None
    cseq: int | None = None
    display_name: str | None = None
    display_lang: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ReginfoError("contact id is empty")
        if self.state not in _CONTACT_STATES:
            raise ReginfoError(f"unknown contact state {self.state!r}")
        if self.event not in _EVENTS:
            raise ReginfoError(f"unknown contact event {self.event!r}")
        if not self.uri or self.uri != self.uri.strip():
            raise ReginfoError("contact uri is empty or padded")
        if self.display_lang is not None and self.display_name is None:
            raise ReginfoError("display-name language without a display-name")
        for name in ("expires", "duration_registered", "retry_after", "cseq"):
            _check_unsigned(name, getattr(self, name))


@dataclass(frozen=True)
class Registration:
    """``<registration aor=... id=... state=...>`` (RFC 3680 §5.1)."""

    aor: str
    id: str
    state: RegistrationState
    contacts: tuple[Contact, ...] = ()

    def __post_init__(self) -> None:
        if not self.aor or self.aor != self.aor.strip():
            raise ReginfoError("registration aor is empty or padded")
        if not self.id:
            raise ReginfoError("registration id is empty")
        if self.state not in _REG_STATES:
            raise ReginfoError(f"unknown registration state {self.state!r}")


@dataclass(frozen=True)
class RegInfo:
    """A whole document: ``version`` counts NOTIFYs in the subscription from 0;
    ``state`` says whether it is the full state or only what changed (§5.1)."""

    version: int
    state: Literal["full", "partial"]
    registrations: tuple[Registration, ...] = ()

    def __post_init__(self) -> None:
        if self.version < 0:
            raise ReginfoError(f"version {self.version} is negative")
        if self.state not in ("full", "partial"):
            raise ReginfoError(f"unknown state {self.state!r}")


# ------------------------------------------------------------------ build

_CONTACT_ATTRS: Final = (
    ("expires", "expires"),
    ("duration-registered", "duration_registered"),
    ("retry-after", "retry_after"),
    ("q", "q"),
    ("callid", "callid"),
    ("cseq", "cseq"),
)


def build_reginfo(doc: RegInfo) -> bytes:
    """UTF-8 XML in the RFC 3680 §5.4 schema."""
    root = etree.Element(_q("reginfo"), nsmap=nsmap(NS), version=str(doc.version), state=doc.state)
    for reg in doc.registrations:
        el = etree.SubElement(root, _q("registration"), aor=reg.aor, id=reg.id, state=reg.state)
        for c in reg.contacts:
            item = etree.SubElement(el, _q("contact"), id=c.id, state=c.state, event=c.event)
            for attr, field in _CONTACT_ATTRS:
                value = getattr(c, field)
                if value is not None:
                    item.set(attr, str(value))
            etree.SubElement(item, _q("uri")).text = c.uri
            if c.display_name is not None:
                name = etree.SubElement(item, _q("display-name"))
                name.text = c.display_name
                if c.display_lang is not None:
                    name.set(XML_LANG, c.display_lang)
    return serialize(root)


# ------------------------------------------------------------------ parse


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise ReginfoError(f"<{etree.QName(el).localname}> lacks the {name} attribute")
    return value


def _unsigned(el: etree._Element, name: str) -> int | None:
    text = el.get(name)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise ReginfoError(f"{name} is not an unsigned integer: {text!r}")
    return int(text)


def _contact(el: etree._Element) -> Contact:
    uri = next((c for c in el if c.tag == _q("uri")), None)
    if uri is None:
        raise ReginfoError("<contact> lacks <uri>")
    name = next((c for c in el if c.tag == _q("display-name")), None)
    return Contact(
        id=_required(el, "id"),
        state=cast(ContactState, _required(el, "state")),
        event=cast(ContactEvent, _required(el, "event")),
        uri=(uri.text or "").strip(),
        expires=_unsigned(el, "expires"),
        duration_registered=_unsigned(el, "duration-registered"),
        retry_after=_unsigned(el, "retry-after"),
        q=el.get("q"),
        callid=el.get("callid"),
        cseq=_unsigned(el, "cseq"),
        display_name=None if name is None else (name.text or ""),
        display_lang=None if name is None else name.get(XML_LANG),
    )


def parse_reginfo(data: bytes) -> RegInfo:
    """Parse an untrusted reginfo body (hardened parser; ReginfoError / XmlRejected)."""
    root = parse_xml(data)
    if root.tag != _q("reginfo"):
        raise ReginfoError(f"root element is {root.tag}, not reginfo")
    version = _required(root, "version").strip()
    if not version.isdigit():
        raise ReginfoError(f"version is not a non-negative integer: {version!r}")
    state = _required(root, "state")
    if state not in ("full", "partial"):
        raise ReginfoError(f"unknown state {state!r}")
    regs = tuple(
        Registration(
            _required(reg, "aor").strip(),
            _required(reg, "id"),
            cast(RegistrationState, _required(reg, "state")),
            tuple(_contact(c) for c in reg if c.tag == _q("contact")),
        )
        for reg in root
        if reg.tag == _q("registration")
    )
    return RegInfo(int(version), cast(Literal["full", "partial"], state), regs)

"""PIDF (RFC 3863) with the data model (RFC 4479), RPID activities (RFC 4480) and the
``<show xmlns='jabber:client'>`` status extension (RFC 8048 §6.2 Table 1 note 7).

Only the handful of elements the gateway maps are modelled; everything else is
ignored on input (RFC 3863 §4.2.3). Parsing is tolerant (RFC 4479 §5: "extract
whatever information ... they can parse"): a tuple without ``id`` is skipped, an
unknown ``<basic>`` value, an out-of-range priority (§4.1.5) or a malformed
timestamp reads as absent, a duplicate tuple id keeps the first tuple. A root that
is not ``<presence>`` in the PIDF namespace is rejected (:class:`PidfError`, 400).

Building is strict: tuple ids must be xs:ID (NCName), every ``<status>`` gets at
least one child, output is UTF-8 with an XML declaration.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

from lxml import etree

from mappings.cpim import format_datetime, parse_datetime
from mappings.xmlsafe import XML_LANG, FormatError, nsmap, parse_xml, serialize, xml_lang

PIDF_NS: Final = "urn:ietf:params:xml:ns:pidf"
DM_NS: Final = "urn:ietf:params:xml:ns:pidf:data-model"
RPID_NS: Final = "urn:ietf:params:xml:ns:pidf:rpid"
JABBER_CLIENT_NS: Final = "jabber:client"
PIDF_IM_NS: Final = "urn:ietf:params:xml:ns:pidf:im"
"""The never-standardised RFC 3863 §4.3.1 / RFC 3922 ``<im:im>`` status extension."""

MEDIA_TYPE: Final = "application/pidf+xml"

Basic = Literal["open", "closed"]
SHOW_VALUES: Final = frozenset({"away", "chat", "dnd", "xa"})
"""RFC 6121 §4.7.2.1 ``<show/>`` values."""

RPID_ACTIVITIES: Final = frozenset(
    {
        "appointment", "away", "breakfast", "busy", "dinner", "holiday", "in-transit",
        "looking-for-work", "lunch", "meal", "meeting", "on-the-phone", "other",
        "performance", "permanent-absence", "playing", "presentation", "shopping",
        "sleeping", "spectator", "steering", "travel", "tv", "unknown", "vacation",
        "working", "worship",
    }
)  # fmt: skip
"""RFC 4480 §3.2 activities read on input (``lunch`` is in the prose, not the schema)."""

RPID_SCHEMA_ACTIVITIES: Final = RPID_ACTIVITIES - {"lunch"}
"""Activities :func:`build_pidf` writes: those the RFC 4480 §5 schema allows."""


class PidfError(FormatError):
    """Not a PIDF document (RFC 3863 §4.1.1): SIP 400 / XMPP bad-request."""


# qvalue = "0" [ "." 0*3DIGIT ] / "1" [ "." 0*3("0") ]   (RFC 3863 §4.4 schema pattern)
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")
# xs:ID = NCName: a name start char (letter or "_"), then letters, digits, ".", "-", "_"
_NCNAME = re.compile(r"[^\W\d][\w.\-]*")


@dataclass(frozen=True)
class Note:
    """``<note xml:lang=...>`` (RFC 3863 §4.1.6)."""

    text: str
    lang: str | None = None


def _check_priority(priority: Decimal | None) -> None:
    if priority is None:
        return
    exponent = priority.as_tuple().exponent
    if not (0 <= priority <= 1) or not isinstance(exponent, int) or exponent < -3:
        raise ValueError(f"PIDF priority must be 0..1 with at most 3 decimals: {priority}")


@dataclass(frozen=True)
class Tuple:
    """One ``<tuple>`` (RFC 3863 §4.1.2): a service, for the gateway one XMPP resource."""

    id: str
    basic: Basic | None = None
    show: str | None = None
    """``<show xmlns='jabber:client'>`` inside ``<status>`` (RFC 8048 §6.2 note 7)."""
    notes: tuple[Note, ...] = ()
    contact: str | None = None
    priority: Decimal | None = None
    """``<contact priority>``: 0..1, at most 3 decimals (RFC 3863 §4.1.5)."""
    timestamp: datetime | None = None
    legacy_im: str | None = None
    """Legacy ``<im:im>`` status value (RFC 3863 §4.3.1, RFC 3922 §5.1.4)."""

    def __post_init__(self) -> None:
        _check_priority(self.priority)
        if self.priority is not None and self.contact is None:
            raise ValueError("a PIDF priority is an attribute of <contact>")
        if self.show is not None and self.show not in SHOW_VALUES:
            raise ValueError(f"not an XMPP show value: {self.show!r}")


@dataclass(frozen=True)
class Person:
    """``<dm:person>`` (RFC 4479 §3.1) with RPID ``<activities>`` (RFC 4480 §3.2)."""

    id: str = "p"
    activities: frozenset[str] = frozenset()
    notes: tuple[Note, ...] = ()
    timestamp: datetime | None = None


@dataclass(frozen=True)
class PresenceDocument:
    """A PIDF ``<presence>`` document (RFC 3863 §4.1.1)."""

    entity: str
    tuples: tuple[Tuple, ...] = ()
    notes: tuple[Note, ...] = ()
    person: Person | None = None
    _ids: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = [t.id for t in self.tuples]
        if len(set(ids)) != len(ids):
            raise ValueError("tuple ids must be unique within a presentity (RFC 3863 §4.1.2)")
        object.__setattr__(self, "_ids", frozenset(ids))


# --- parsing ---


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


_MUST_UNDERSTAND: Final = (_q(PIDF_NS, "mustUnderstand"), "mustUnderstand")


def _must_ignore(element: etree._Element, recognized: Callable[[str], bool]) -> bool:
    """RFC 3863 §4.2.3: an element holding an unrecognized child marked
    ``mustUnderstand='true'|'1'`` must itself be ignored."""
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or recognized(tag):
            continue
        if any(child.get(attr) in ("1", "true") for attr in _MUST_UNDERSTAND):
            return True
    return False


def _nothing(tag: str) -> bool:
    return False


def _note(element: etree._Element) -> Note:
    return Note((element.text or "").strip(), xml_lang(element))


def _timestamp(element: etree._Element) -> datetime | None:
    try:
        return parse_datetime(element.text or "")
    except ValueError:
        return None


def _priority(text: str | None) -> Decimal | None:
    if text is None or not _QVALUE.fullmatch(text.strip()):
        return None  # RFC 3863 §4.1.5: out of range is ignored
    return Decimal(text.strip())


def _simple_value(element: etree._Element) -> str | None:
    if _must_ignore(element, _nothing):
        return None
    return (element.text or "").strip() or None


def _parse_status(element: etree._Element) -> tuple[Basic | None, str | None, str | None]:
    basic: Basic | None = None
    show = legacy = None
    for child in element:
        if child.tag == _q(PIDF_NS, "basic"):
            text = (child.text or "").strip()
            if text == "open":
                basic = "open"
            elif text == "closed":
                basic = "closed"
        elif child.tag == _q(JABBER_CLIENT_NS, "show"):
            value = _simple_value(child)
            show = value if value in SHOW_VALUES else None
        elif child.tag == _q(PIDF_IM_NS, "im"):
            legacy = _simple_value(child)
    return basic, show, legacy


def _parse_tuple(element: etree._Element) -> Tuple | None:
    tuple_id = element.get("id")
    if not tuple_id:
        return None
    basic: Basic | None = None
    show = legacy = contact = None
    priority = None
    timestamp = None
    notes: list[Note] = []
    for child in element:
        if child.tag == _q(PIDF_NS, "status"):
            basic, show, legacy = _parse_status(child)
        elif child.tag == _q(PIDF_NS, "contact"):
            contact = (child.text or "").strip() or None
            priority = _priority(child.get("priority")) if contact else None
        elif child.tag == _q(PIDF_NS, "note"):
            notes.append(_note(child))
        elif child.tag == _q(PIDF_NS, "timestamp"):
            timestamp = _timestamp(child)
    return Tuple(tuple_id, basic, show, tuple(notes), contact, priority, timestamp, legacy)


def _is_rpid(tag: str) -> bool:
    return tag.startswith("{" + RPID_NS + "}")


def _parse_person(element: etree._Element) -> Person:
    activities: set[str] = set()
    notes: list[Note] = []
    timestamp = None
    for child in element:
        if child.tag == _q(RPID_NS, "activities") and not _must_ignore(child, _is_rpid):
            activities.update(
                str(a.tag).partition("}")[2]
                for a in child
                if isinstance(a.tag, str) and _is_rpid(a.tag) and a.tag != _q(RPID_NS, "note")
            )
        elif child.tag == _q(DM_NS, "note"):
            notes.append(_note(child))
        elif child.tag == _q(DM_NS, "timestamp"):
            timestamp = _timestamp(child)
    return Person(element.get("id") or "p", frozenset(activities), tuple(notes), timestamp)


def parse_pidf(data: bytes) -> PresenceDocument:
    """Parse an ``application/pidf+xml`` body through the hardened parser."""
    root = parse_xml(data)
    if root.tag != _q(PIDF_NS, "presence"):
        raise PidfError(f"not a PIDF document: root element {root.tag!r}")
    tuples: dict[str, Tuple] = {}
    notes: list[Note] = []
    person = None
    for child in root:
        if child.tag == _q(PIDF_NS, "tuple"):
            parsed = _parse_tuple(child)
            if parsed is not None and parsed.id not in tuples:
                tuples[parsed.id] = parsed
        elif child.tag == _q(PIDF_NS, "note"):
            notes.append(_note(child))
        elif child.tag == _q(DM_NS, "person") and person is None:
            person = _parse_person(child)
    return PresenceDocument(root.get("entity") or "", tuple(tuples.values()), tuple(notes), person)


# --- building ---


def _format_priority(priority: Decimal) -> str:
    return format(priority.normalize(), "f")


def _add_note(parent: etree._Element, tag: str, note: Note) -> None:
    element = etree.SubElement(parent, tag)
    element.text = note.text
    if note.lang:
        element.set(XML_LANG, note.lang)


def _build_tuple(parent: etree._Element, tup: Tuple) -> None:
    if not _NCNAME.fullmatch(tup.id):
        raise ValueError(f"tuple id is not an xs:ID: {tup.id!r}")
    if tup.basic is None and tup.show is None and tup.legacy_im is None:
        raise ValueError("<status> needs at least one child (RFC 3863 §4.1.3)")
    element = etree.SubElement(parent, _q(PIDF_NS, "tuple"), id=tup.id)
    status = etree.SubElement(element, _q(PIDF_NS, "status"))
    if tup.basic is not None:
        etree.SubElement(status, _q(PIDF_NS, "basic")).text = tup.basic
    if tup.show is not None:
        show = etree.SubElement(status, _q(JABBER_CLIENT_NS, "show"), nsmap=nsmap(JABBER_CLIENT_NS))
        show.text = tup.show
    if tup.legacy_im is not None:
        legacy = etree.SubElement(status, _q(PIDF_IM_NS, "im"), nsmap={"im": PIDF_IM_NS})
        legacy.text = tup.legacy_im
    if tup.contact is not None:
        contact = etree.SubElement(element, _q(PIDF_NS, "contact"))
        contact.text = tup.contact
        if tup.priority is not None:
            contact.set("priority", _format_priority(tup.priority))
    for note in tup.notes:
        _add_note(element, _q(PIDF_NS, "note"), note)
    if tup.timestamp is not None:
        etree.SubElement(element, _q(PIDF_NS, "timestamp")).text = format_datetime(tup.timestamp)


def _build_person(parent: etree._Element, person: Person) -> None:
    if not _NCNAME.fullmatch(person.id):
        raise ValueError(f"person id is not an xs:ID: {person.id!r}")
    element = etree.SubElement(parent, _q(DM_NS, "person"), id=person.id)
    if person.activities:
        activities = etree.SubElement(element, _q(RPID_NS, "activities"))
        names = sorted(person.activities)
        if len(names) > 1 and "unknown" in names:  # <unknown/> stands alone (RFC 4480 §4)
            names.remove("unknown")
        for name in names:
            if name not in RPID_SCHEMA_ACTIVITIES:
                raise ValueError(f"not an RPID activity in the RFC 4480 schema: {name!r}")
            etree.SubElement(activities, _q(RPID_NS, name))
    for note in person.notes:
        _add_note(element, _q(DM_NS, "note"), note)
    if person.timestamp is not None:
        etree.SubElement(element, _q(DM_NS, "timestamp")).text = format_datetime(person.timestamp)


def build_pidf(doc: PresenceDocument) -> bytes:
    """Serialize to ``application/pidf+xml`` (UTF-8, XML declaration)."""
    extra = {} if doc.person is None else {"dm": DM_NS, "rpid": RPID_NS}
    namespaces = nsmap(PIDF_NS, **extra)
    root = etree.Element(_q(PIDF_NS, "presence"), nsmap=namespaces, entity=doc.entity)
    for tup in doc.tuples:
        _build_tuple(root, tup)
    for note in doc.notes:
        _add_note(root, _q(PIDF_NS, "note"), note)
    if doc.person is not None:
        _build_person(root, doc.person)
    return serialize(root)

"""XMPP presence <-> PIDF: RFC 8048 §6.2 Table 1 and §6.3 Table 2, RFC 3922 §5/§6.3,
and the non-normative show <-> RPID table of DIGEST §2.7, all kept as data.

Decisions (docs/formats.md):

* Tuple ids are ``ID-`` (RFC 8048 §6.2 note 2) + the resource with every character
  outside ``[A-Za-z0-9.-]`` written as ``_HH`` per UTF-8 byte (uppercase hex; ``_``
  itself becomes ``_5F``). ``ID-`` alone stands for a presence without resource.
  Ids not made this way (another implementation's ``bs35r9``) are used as the
  resource verbatim.
* One tuple per resource (RFC 3922 §6.3.1); never zero tuples (§6.3.2): no
  presence at all gives one closed ``ID-`` tuple.
* ``<show/>`` is always embedded as ``jabber:client`` (RFC 8048 §6.2 note 7) and
  also mirrored as RPID activities in ``<dm:person>`` for the resource with the
  highest priority (ties: the most available show).
* SIP -> XMPP show precedence: ``jabber:client`` show, then person RPID activities
  (first match in :data:`ACTIVITY_SHOW` order), then legacy ``<im:im>``. The RPID
  fallback is skipped when any tuple carries a ``jabber:client`` show: such a
  document comes from an RFC 8048 gateway and its person element only mirrors one
  resource, so show-less tuples are plainly available.
* A tuple without ``<basic>`` counts as open; a zero-tuple document maps to one
  bare-JID presence (available only if the person has activities and none is
  ``permanent-absence``) unless it holds nothing but notes, which maps to nothing
  (RFC 3922 §6.3.2 / §5.2.11).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

from mappings.pidf import Basic, Note, Person, PresenceDocument, Tuple

Show = Literal["away", "chat", "dnd", "xa"]

# --- RFC 8048 §6.2 Table 1 / §6.3 Table 2: basic status <-> presence type ---

BASIC_FOR_AVAILABLE: Final[Mapping[bool, Basic]] = MappingProxyType(
    {True: "open", False: "closed"}  # note (4): no type MUST be open; (5) unavailable closed
)
AVAILABLE_FOR_BASIC: Final[Mapping[Basic | None, bool]] = MappingProxyType(
    {"open": True, "closed": False, None: True}  # Table 2; no <basic> read as open
)

# --- DIGEST §2.7 (non-normative, sylkserver precedent): show -> RPID activities ---

SHOW_ACTIVITIES: Final[Mapping[Show | None, frozenset[str]]] = MappingProxyType(
    {
        None: frozenset(),
        "chat": frozenset(),
        "away": frozenset({"away"}),
        "xa": frozenset({"away"}),
        "dnd": frozenset({"busy"}),
    }
)

# Reverse: RPID activity -> show; the first activity present (in this order) wins.
ACTIVITY_SHOW: Final[Mapping[str, Show]] = MappingProxyType(
    {
        "permanent-absence": "xa",
        "vacation": "xa",
        "holiday": "xa",
        "away": "away",
        "busy": "dnd",
        "on-the-phone": "dnd",
        "meeting": "dnd",
        "appointment": "dnd",
        "presentation": "dnd",
        "performance": "dnd",
    }
)

# Legacy RFC 3922 <im:im> values (never standardised).
LEGACY_IM_SHOW: Final[Mapping[str, Show]] = MappingProxyType({"busy": "dnd", "away": "away"})

# Most available first: picks the resource mirrored into <dm:person>.
_SHOW_RANK: Final[Mapping[Show | None, int]] = MappingProxyType(
    {"chat": 0, None: 1, "away": 2, "xa": 3, "dnd": 4}
)

_SHOWS: Final[Mapping[str, Show]] = MappingProxyType(
    {"away": "away", "chat": "chat", "dnd": "dnd", "xa": "xa"}
)

PERSON_ID: Final = "p1"


@dataclass(frozen=True)
class XmppPresence:
    """A neutral XMPP ``<presence/>`` with no type or ``type='unavailable'`` (RFC 6121 §4.7)."""

    resource: str | None = None
    available: bool = True
    show: Show | None = None
    statuses: tuple[tuple[str, str | None], ...] = ()
    """``(text, xml:lang)`` for each ``<status/>``."""
    priority: int = 0
    lang: str | None = None
    """Stanza ``xml:lang`` <-> SIP Content-Language (Tables 1 and 2)."""

    def __post_init__(self) -> None:
        if not -128 <= self.priority <= 127:
            raise ValueError(f"XMPP priority out of -128..127: {self.priority}")
        if self.show is not None and (self.show not in _SHOW_RANK or not self.available):
            raise ValueError(f"bad show {self.show!r} for this presence")
        if self.resource == "":
            raise ValueError("empty resource: use None for a bare JID")


def unknown_presence() -> XmppPresence:
    """A NOTIFY without body means unknown or closed (RFC 8048 §5.2.1, R8048-04)."""
    return XmppPresence(available=False)


# --- Tuple id <-> resource (RFC 8048 §6.2 note 2: xs:ID, RECOMMENDED prefix "ID-") ---

TUPLE_ID_PREFIX: Final = "ID-"
_SAFE = re.compile(r"[A-Za-z0-9.\-]")
_ENCODED = re.compile(r"(?:[A-Za-z0-9.\-]|_[0-9A-F]{2})*")


def tuple_id_for_resource(resource: str | None) -> str:
    """``ID-`` + the resource, NCName-safe and reversible (see module docstring)."""
    if resource is None:
        return TUPLE_ID_PREFIX
    out = []
    for ch in resource:
        if _SAFE.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"_{byte:02X}" for byte in ch.encode("utf-8"))
    return TUPLE_ID_PREFIX + "".join(out)


def resource_for_tuple_id(tuple_id: str) -> str | None:
    """Inverse of :func:`tuple_id_for_resource`; a foreign id is the resource verbatim."""
    rest = tuple_id.removeprefix(TUPLE_ID_PREFIX)
    if rest == tuple_id or not _ENCODED.fullmatch(rest):
        return tuple_id
    if not rest:
        return None
    raw = re.sub(r"_([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), rest)
    try:
        decoded = raw.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        return tuple_id
    return decoded if tuple_id_for_resource(decoded) == tuple_id else tuple_id


# --- Priority (RFC 8048 §6.2 note 6, RFC 3922 §5.2.13) ---


def xmpp_priority_to_pidf(priority: int) -> Decimal | None:
    """-128..127 -> 0..1 with 3 decimals: ``floor(p*1000/127)/1000``; negative -> None."""
    if priority < 0:
        return None  # negative values MUST NOT be mapped
    return Decimal(priority * 1000 // 127) / 1000


def pidf_priority_to_xmpp(priority: Decimal) -> int:
    """0 -> 0, 1 -> 127, else ``min(126, ceil(q*127))`` (0.001-0.007 -> 1, ...)."""
    if priority <= 0:
        return 0
    if priority >= 1:
        return 127
    return min(126, math.ceil(priority * 127))


# --- XMPP -> PIDF (RFC 8048 §6.2) ---


def _contact_for(entity: str) -> str:
    # RFC 3922 §5.1.6: a generated <contact> SHOULD be im:user@host.
    return "im:" + entity.removeprefix("pres:") if entity.startswith("pres:") else entity


def _primary(presences: Iterable[XmppPresence]) -> XmppPresence | None:
    available = [p for p in presences if p.available]
    if not available:
        return None
    return max(available, key=lambda p: (p.priority, -_SHOW_RANK[p.show]))


def _tuple_for(p: XmppPresence, contact: str, now: datetime | None) -> Tuple:
    priority = xmpp_priority_to_pidf(p.priority)
    return Tuple(
        id=tuple_id_for_resource(p.resource),
        basic=BASIC_FOR_AVAILABLE[p.available],
        show=p.show if p.available else None,
        notes=tuple(Note(text, lang or p.lang) for text, lang in p.statuses),
        contact=contact,
        priority=priority,
        timestamp=now,
    )


def xmpp_to_pidf(
    entity: str,
    presences: Iterable[XmppPresence],
    *,
    contact: str | None = None,
    now: datetime | None = None,
) -> PresenceDocument:
    """All of a user's current presences -> one PIDF, one tuple per resource.

    ``entity`` is the bare presentity URI (``pres:`` or ``sip:``); ``contact``
    defaults to the ``im:`` form of a ``pres:`` entity; ``now`` becomes each
    tuple's timestamp (RFC 3863 §4.1.7 SHOULD).
    """
    latest: dict[str | None, XmppPresence] = {}
    for p in presences:
        latest[p.resource] = p
    if not latest:
        latest[None] = unknown_presence()  # RFC 3922 §6.3.2: never zero tuples
    contact_uri = contact or _contact_for(entity)
    tuples = tuple(_tuple_for(p, contact_uri, now) for p in latest.values())
    primary = _primary(latest.values())
    activities = SHOW_ACTIVITIES[primary.show] if primary else frozenset()
    person = Person(PERSON_ID, activities, timestamp=now) if activities else None
    return PresenceDocument(entity, tuples, person=person)


# --- PIDF -> XMPP (RFC 8048 §6.3) ---


def _person_show(person: Person | None) -> Show | None:
    if person is None:
        return None
    return next((show for act, show in ACTIVITY_SHOW.items() if act in person.activities), None)


def _statuses(*candidates: tuple[Note, ...]) -> tuple[tuple[str, str | None], ...]:
    notes = next((c for c in candidates if c), ())
    return tuple((n.text, n.lang) for n in notes)


def _presence_for(tup: Tuple, doc: PresenceDocument, rpid_show: Show | None) -> XmppPresence:
    available = AVAILABLE_FOR_BASIC[tup.basic]
    show: Show | None = None
    if available:
        show = _SHOWS.get(tup.show or "") or rpid_show
        if show is None and tup.legacy_im is not None:
            show = LEGACY_IM_SHOW.get(tup.legacy_im.lower())
    person_notes = doc.person.notes if doc.person else ()
    return XmppPresence(
        resource=resource_for_tuple_id(tup.id),
        available=available,
        show=show,
        statuses=_statuses(tup.notes, doc.notes, person_notes),
        priority=0 if tup.priority is None else pidf_priority_to_xmpp(tup.priority),
    )


def pidf_to_xmpp(doc: PresenceDocument) -> list[XmppPresence]:
    """One presence per tuple (RFC 3922 §6.3.1); resource from the tuple id."""
    if not doc.tuples:
        if doc.person is None:
            if doc.notes:
                return []  # notes-only: MUST NOT be mapped (RFC 3922 §5.2.11)
            return [unknown_presence()]
        activities = doc.person.activities
        available = bool(activities) and "permanent-absence" not in activities
        return [
            XmppPresence(
                available=available,
                show=_person_show(doc.person) if available else None,
                statuses=_statuses(doc.notes, doc.person.notes),
            )
        ]
    # A document that carries jabber:client <show> anywhere speaks RFC 8048: its
    # show-less tuples are plainly available and the person RPID is only a mirror.
    speaks_show = any(t.show is not None for t in doc.tuples)
    rpid_show = None if speaks_show else _person_show(doc.person)
    seen: set[str | None] = set()
    out = []
    for tup in doc.tuples:
        presence = _presence_for(tup, doc, rpid_show)
        if presence.resource not in seen:  # two ids naming one resource: first wins
            seen.add(presence.resource)
            out.append(presence)
    return out

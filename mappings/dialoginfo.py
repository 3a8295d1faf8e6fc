"""Dialog state documents (RFC 4235 §4, ``application/dialog-info+xml``) and call activity.

The dialog event package tells a watcher which dialogs (calls) a user's devices have.
The gateway reads it for one fact, "is this user on the phone" (issue 24 item 5), so the
model keeps a dialog's identity, state and participants and ignores the rest
(session descriptions, route sets, target parameters, other namespaces).

Pure functions: :func:`build_dialog_info`, a hardened :func:`parse_dialog_info` over
:func:`mappings.xmlsafe.parse_xml`, :func:`merge` (the §4.1 subscriber table: full state
replaces, partial state updates, versions order documents) and :func:`on_the_phone`.
Errors: :class:`DialogInfoError` (400), or the xmlsafe errors for hostile XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from lxml import etree

from mappings.xmlsafe import FormatError, nsmap, parse_xml, serialize

__all__ = [
    "BUSY_STATES",
    "MEDIA_TYPE",
    "NS",
    "Dialog",
    "DialogEvent",
    "DialogInfo",
    "DialogInfoError",
    "DialogState",
    "Merged",
    "Participant",
    "build_dialog_info",
    "merge",
    "on_the_phone",
    "parse_dialog_info",
]

MEDIA_TYPE: Final = "application/dialog-info+xml"
NS: Final = "urn:ietf:params:xml:ns:dialog-info"

DialogState = Literal["trying", "proceeding", "early", "confirmed", "terminated"]
DialogEvent = Literal[
    "cancelled", "rejected", "replaced", "local-bye", "remote-bye", "error", "timeout"
]
Direction = Literal["initiator", "recipient"]
_STATES: Final = frozenset(get_args(DialogState))
_EVENTS: Final = frozenset(get_args(DialogEvent))
_DIRECTIONS: Final = frozenset(get_args(Direction))

BUSY_STATES: Final = frozenset({"early", "confirmed"})
"""Dialog states that count as "on the phone": ringing with a tag (early) or
answered (confirmed); trying/proceeding are not a call yet (RFC 4235 §3.7.1)."""

MAX_DIALOGS: Final = 64
"""Rows :func:`merge` keeps for one watched user (bounded memory)."""


class DialogInfoError(FormatError):
    """Not a dialog-info document we can use: 400."""


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


@dataclass(frozen=True)
class Participant:
    """``<local>`` / ``<remote>``: identity (a URI) with display name, and target URI."""

    identity: str | None = None
    display_name: str | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        if self.display_name is not None and self.identity is None:
            raise DialogInfoError("a display-name belongs to an <identity>")


@dataclass(frozen=True)
class Dialog:
    """``<dialog>`` (RFC 4235 §4.1.1)."""

    id: str
    state: DialogState
    call_id: str | None = None
    local_tag: str | None = None
    remote_tag: str | None = None
    direction: Direction | None = None
    event: DialogEvent | None = None  # why it terminated (§4.1.2)
    code: int | None = None  # the response code that caused the state
    duration: int | None = None  # seconds
    local: Participant | None = None
    remote: Participant | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise DialogInfoError("dialog id is empty")
        if self.state not in _STATES:
            raise DialogInfoError(f"unknown dialog state {self.state!r}")
        if self.direction is not None and self.direction not in _DIRECTIONS:
            raise DialogInfoError(f"unknown direction {self.direction!r}")
        if self.event is not None and self.event not in _EVENTS:
            raise DialogInfoError(f"unknown dialog event {self.event!r}")
        if self.code is not None and not 100 <= self.code <= 699:
            raise DialogInfoError(f"code {self.code} is not a SIP status")
        if self.duration is not None and self.duration < 0:
            raise DialogInfoError("duration is negative")


@dataclass(frozen=True)
class DialogInfo:
    """A whole document (RFC 4235 §4.1): the observed user (``entity``), the version
    (from 0, +1 per NOTIFY), full or partial state, and the dialogs."""

    entity: str
    version: int
    state: Literal["full", "partial"]
    dialogs: tuple[Dialog, ...] = ()

    def __post_init__(self) -> None:
        if not self.entity or self.entity != self.entity.strip():
            raise DialogInfoError("entity is empty or padded")
        if self.version < 0:
            raise DialogInfoError(f"version {self.version} is negative")
        if self.state not in ("full", "partial"):
            raise DialogInfoError(f"unknown state {self.state!r}")


def on_the_phone(doc: DialogInfo) -> bool:
    """Call activity: does any dialog ring (early) or run (confirmed)?"""
    return any(d.state in BUSY_STATES for d in doc.dialogs)


@dataclass(frozen=True)
class Merged:
    """What :func:`merge` made of a new document.

    ``table`` is the subscriber's view as a full-state document (terminated dialogs
    dropped); ``stale`` means the document was discarded (old version); ``resync``
    means versions were lost on a partial document: SUBSCRIBE again for full state.
    """

    table: DialogInfo
    stale: bool = False
    resync: bool = False


def merge(table: DialogInfo | None, update: DialogInfo) -> Merged:
    """RFC 4235 §4.1 subscriber processing of ``update`` against ``table``.

    A version not above the table's is discarded (the RFC says "less than"; an equal
    version is a repeat and changes nothing either). At most :data:`MAX_DIALOGS` rows
    are kept, the newest last.
    """
    if table is not None and update.version <= table.version:
        return Merged(table, stale=True)
    resync = table is not None and update.version > table.version + 1 and update.state == "partial"
    rows: dict[str, Dialog] = {}
    if update.state == "partial" and table is not None:
        rows = {d.id: d for d in table.dialogs}
    for d in update.dialogs:
        rows.pop(d.id, None)
        rows[d.id] = d
    live = [d for d in rows.values() if d.state != "terminated"][-MAX_DIALOGS:]
    return Merged(DialogInfo(update.entity, update.version, "full", tuple(live)), resync=resync)


# ------------------------------------------------------------------ build


def _participant(parent: etree._Element, tag: str, p: Participant | None) -> None:
    if p is None:
        return
    el = etree.SubElement(parent, _q(tag))
    if p.identity is not None:
        ident = etree.SubElement(el, _q("identity"))
        ident.text = p.identity
        if p.display_name is not None:
            ident.set("display-name", p.display_name)
    if p.target is not None:
        etree.SubElement(el, _q("target"), uri=p.target)


def build_dialog_info(doc: DialogInfo) -> bytes:
    """UTF-8 XML in the RFC 4235 §4.4 schema."""
    root = etree.Element(
        _q("dialog-info"),
        nsmap=nsmap(NS),
        version=str(doc.version),
        state=doc.state,
        entity=doc.entity,
    )
    for d in doc.dialogs:
        el = etree.SubElement(root, _q("dialog"), id=d.id)
        for attr, value in (
            ("call-id", d.call_id),
            ("local-tag", d.local_tag),
            ("remote-tag", d.remote_tag),
            ("direction", d.direction),
        ):
            if value is not None:
                el.set(attr, value)
        state = etree.SubElement(el, _q("state"))
        state.text = d.state
        if d.event is not None:
            state.set("event", d.event)
        if d.code is not None:
            state.set("code", str(d.code))
        if d.duration is not None:
            etree.SubElement(el, _q("duration")).text = str(d.duration)
        _participant(el, "local", d.local)
        _participant(el, "remote", d.remote)
    return serialize(root)


# ------------------------------------------------------------------ parse


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise DialogInfoError(f"<{etree.QName(el).localname}> lacks the {name} attribute")
    return value


def _child(el: etree._Element, local: str) -> etree._Element | None:
    return next((c for c in el if c.tag == _q(local)), None)


def _integer(text: str | None, what: str) -> int:
    value = (text or "").strip()
    if not value.isdigit():
        raise DialogInfoError(f"{what} is not a non-negative integer: {text!r}")
    return int(value)


def _parse_participant(el: etree._Element | None) -> Participant | None:
    if el is None:
        return None
    ident = _child(el, "identity")
    target = _child(el, "target")
    return Participant(
        identity=None if ident is None else (ident.text or "").strip() or None,
        display_name=None if ident is None else ident.get("display-name"),
        target=None if target is None else target.get("uri"),
    )


def _dialog(el: etree._Element) -> Dialog:
    state = _child(el, "state")
    if state is None:
        raise DialogInfoError("<dialog> lacks <state>")
    code = state.get("code")
    duration = _child(el, "duration")
    return Dialog(
        id=_required(el, "id"),
        state=cast(DialogState, (state.text or "").strip()),
        call_id=el.get("call-id"),
        local_tag=el.get("local-tag"),
        remote_tag=el.get("remote-tag"),
        direction=cast("Direction | None", el.get("direction")),
        event=cast("DialogEvent | None", state.get("event")),
        code=None if code is None else _integer(code, "code"),
        duration=None if duration is None else _integer(duration.text, "duration"),
        local=_parse_participant(_child(el, "local")),
        remote=_parse_participant(_child(el, "remote")),
    )


def parse_dialog_info(data: bytes) -> DialogInfo:
    """Parse an untrusted dialog-info body (hardened parser; DialogInfoError / XmlRejected)."""
    root = parse_xml(data)
    if root.tag != _q("dialog-info"):
        raise DialogInfoError(f"root element is {root.tag}, not dialog-info")
    state = _required(root, "state")
    if state not in ("full", "partial"):
        raise DialogInfoError(f"unknown state {state!r}")
    return DialogInfo(
        _required(root, "entity").strip(),
        _integer(_required(root, "version"), "version"),
        cast(Literal["full", "partial"], state),
        tuple(_dialog(d) for d in root if d.tag == _q("dialog")),
    )

"""Call activity shown in XMPP presence (RFC 4235 dialogs, RFC 4480 ``<on-the-phone/>``),
pure: the table of docs/call-activity.md as code.

Input: the presence a hosted user shows without the call (``base``: what
:func:`mappings.presence.pidf_to_xmpp` makes of their composed PIDF) and whether a call is
running (:func:`in_call`). Output: the presence to show. Nothing is stored here: the base
is computed again at every change, so when the call ends the presence shown is the base
again, exactly (show, statuses with their languages, priority, resource).

* no call: every resource shows its base presence, unchanged;
* a call (a dialog ``early`` or ``confirmed``, or RPID ``<on-the-phone/>``):
  * an unavailable resource stays unavailable (a call makes nobody online);
  * an available one shows ``CallDisplay.show`` (``dnd``) and the status
    ``CallDisplay.status`` ("On the phone") when it had none, else "On the phone (S)"
    for each of its own statuses S, in S's language.

Dialogs ``trying`` / ``proceeding`` (no tag yet) and ``terminated`` are no call
(RFC 4235 §3.7.1, :data:`mappings.dialoginfo.BUSY_STATES`). Priority and resource are
kept, so XMPP routing does not change during a call.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

from mappings.dialoginfo import DialogInfo, on_the_phone
from mappings.pidf import PresenceDocument
from mappings.presence import XmppPresence

__all__ = [
    "ON_THE_PHONE",
    "CallDisplay",
    "CallShow",
    "call_statuses",
    "in_call",
    "show_call",
    "split_rpid_call",
]

ON_THE_PHONE: Final = "on-the-phone"  # RFC 4480 §3.2
CallShow = Literal["away", "dnd", "xa"]
_MAX_STATUS: Final = 1024  # characters of a status shown during a call (bounded stanza)


@dataclass(frozen=True)
class CallDisplay:
    """How a call shows (``[call_activity]`` show and status)."""

    show: CallShow = "dnd"
    status: str = "On the phone"

    def __post_init__(self) -> None:
        if self.show not in ("away", "dnd", "xa"):
            raise ValueError(f"not a call show: {self.show!r}")
        if not self.status.strip():
            raise ValueError("the call status is blank")


def split_rpid_call(doc: PresenceDocument) -> tuple[PresenceDocument, bool]:
    """(the document without RPID ``<on-the-phone/>``, whether it had it). A document
    without tuples keeps it: its person is all it says (RFC 3922 §6.3.2), and the
    activity is what makes it available."""
    person = doc.person
    if person is None or ON_THE_PHONE not in person.activities:
        return doc, False
    if not doc.tuples:
        return doc, True
    rest = replace(person, activities=person.activities - {ON_THE_PHONE})
    return replace(doc, person=rest), True


def in_call(dialogs: Iterable[DialogInfo], rpid: bool = False) -> bool:
    """Any dialog ringing with a tag or answered, or RPID ``<on-the-phone/>``."""
    return rpid or any(on_the_phone(d) for d in dialogs)


def call_statuses(
    own: Sequence[tuple[str, str | None]], display: CallDisplay
) -> tuple[tuple[str, str | None], ...]:
    """The call's status text, with the user's own text (per language) in brackets."""
    if not own:
        return ((display.status, None),)
    return tuple(
        (f"{display.status} ({text})"[:_MAX_STATUS] if text else display.status, lang)
        for text, lang in own
    )


def show_call(
    base: Sequence[XmppPresence], calling: bool, display: CallDisplay = CallDisplay()
) -> list[XmppPresence]:
    """The presence to show: ``base`` when no call runs, else the table above."""
    if not calling:
        return list(base)
    return [
        replace(p, show=display.show, statuses=call_statuses(p.statuses, display))
        if p.available
        else p
        for p in base
    ]

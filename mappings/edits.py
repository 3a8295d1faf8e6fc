"""XEP-0308 corrections and XEP-0424 retractions towards SIP (issue 17 item 5). Pure.

SIP pager mode has no way to change or delete a message already shown, so neither edit can
be relayed as what it is. What users expect (docs/pager.md "Corrections and retractions"):

* A **correction** carries the whole corrected text (XEP-0308 §4). It goes to SIP as a new
  message, its text prefixed with :data:`CORRECTION_MARKER`, so the reader sees the fixed
  text and knows it replaces an earlier one. (XHTML-IM is dropped: the marker must show.)
* A **retraction** asks that a message disappear. A SIP client keeps showing it whatever we
  send, and a text "[message retracted]" would make the sender believe it worked. So it is
  refused: ``feature-not-implemented`` with a text saying the message stays visible there.
  Its fallback body ("This person attempted to retract...") is never relayed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from mappings.encryption import Element
from mappings.errors import MappingError
from mappings.model import BodyPart, MessageOp

NS_CORRECT: Final = "urn:xmpp:message-correct:0"  # XEP-0308
NS_RETRACT: Final = "urn:xmpp:message-retract:1"  # XEP-0424 0.4
NS_RETRACT_0: Final = "urn:xmpp:message-retract:0"  # XEP-0424 0.3 (inside XEP-0422 apply-to)
NS_FASTEN: Final = "urn:xmpp:fasten:0"  # XEP-0422
CORRECTION_MARKER: Final = "[correction] "

_REPLACE: Final = f"{{{NS_CORRECT}}}replace"
_RETRACT: Final = f"{{{NS_RETRACT}}}retract"
_APPLY_TO: Final = f"{{{NS_FASTEN}}}apply-to"
_RETRACT_0: Final = f"{{{NS_RETRACT_0}}}retract"


@dataclass(frozen=True, slots=True)
class Correction:
    """``<replace id=.. xmlns='urn:xmpp:message-correct:0'/>``: replaces message ``id``."""

    replaces: str


@dataclass(frozen=True, slots=True)
class Retraction:
    """``<retract id=..>`` (or the 0.3 form in ``<apply-to/>``): retracts message ``id``."""

    retracts: str


def edit_of(children: Iterable[Element]) -> Correction | Retraction | None:
    """The edit a ``<message/>`` makes, from its child elements (a retraction wins)."""
    correction: Correction | None = None
    for child in children:
        tag = child.tag
        if tag == _RETRACT:
            return Retraction(child.get("id") or "")
        if tag == _APPLY_TO and any(c.tag == _RETRACT_0 for c in child):
            return Retraction(child.get("id") or "")
        if tag == _REPLACE and correction is None:
            correction = Correction(child.get("id") or "")
    return correction


def corrected(op: MessageOp) -> MessageOp:
    """The correction as a new text message: the plain text with the marker, nothing else."""
    text = op.text()
    if not text:
        return op  # nothing to show (e.g. an emptied body): sent as it is, or not at all
    lang = next((p.lang for p in op.parts if p.media_type == "text/plain"), op.lang)
    return replace(op, parts=(BodyPart.plain(CORRECTION_MARKER + text, lang),))


def retraction_refused(edit: Retraction) -> MappingError:
    """The error for a retraction towards SIP."""
    return MappingError(
        "message not retracted: SIP clients cannot delete a message they received;"
        " it stays visible to this contact",
        sip_status=501,
        xmpp_condition="feature-not-implemented",
    )

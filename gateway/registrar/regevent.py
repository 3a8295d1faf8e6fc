"""The reg event (RFC 3680) as registrar policy, pure: who may watch an AOR's bindings and
which reginfo documents describe them.

* `may_subscribe(target, subscriber, via)`: the AOR's own user (RFC 3680 §4.6:
  RECOMMENDED) or a trusted peer (an automaton whose authorization is "provided ahead of
  time", §4.6); anyone else is refused (403 at the glue).
* `full_state(aor, bindings, version, now)`: every live binding as an `active` contact;
  the registration `active`, or `init` with none (§4.7.1).
* `changed_contacts(change)`: the contacts whose state machine moved in one
  `BindingsChange` (§4.7.1 Figure 2), with the event that moved them (table below).
* `partial_state(aor, contacts, live, version)`: only those contacts (§4.7.2: changed
  contacts, not the whole state); the registration `terminated` once no contact is left
  (the terminated -> init step is never reported).
* `merge_pending(pending, contacts)`: throttled changes (§4.10: one NOTIFY per 5 s), the
  newest per contact id.

Events (docs/registrar.md, "The reg event"):

| what happened | state | event |
|---|---|---|
| a REGISTER added the contact | active | registered |
| a REGISTER refreshed it | active | refreshed |
| a REGISTER removed it (Expires 0, `*`) | terminated | unregistered |
| it expired (timer, or found expired by a REGISTER) | terminated | expired |
| dropped beyond `max_bindings` by another REGISTER | terminated | deactivated |
| its user left the user file | terminated | rejected |

`created`, `shortened` and `probation` are administrative acts this registrar has not;
they are parsed (mappings.reginfo) but never sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, MutableMapping, Sequence
from typing import Final

from gateway.registrar.bindings import BindingsChange, live_bindings
from gateway.store.api import Binding
from mappings.reginfo import Contact, ContactEvent, RegInfo, Registration, RegistrationState

__all__ = [
    "EVENT",
    "MAX_PENDING",
    "changed_contacts",
    "contact_id",
    "full_state",
    "may_subscribe",
    "merge_pending",
    "partial_state",
    "registration_id",
]

EVENT: Final = "reg"  # RFC 3680 §4.1
MAX_PENDING: Final = 256
"""Throttled contact changes kept per subscription (bounded memory; the registrar keeps at
most `max_bindings` per AOR, so only churn can reach it: the oldest are dropped, and the
next full state (refresh) repairs the view)."""


def may_subscribe(target: str, subscriber: str | None, via: str) -> bool:
    """RFC 3680 §4.6: the AOR's own user, or a trusted peer; nobody else."""
    return via == "trusted-peer" or (subscriber is not None and subscriber == target)


def _token(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def registration_id(aor: str) -> str:
    """§5.1: one id per canonical AOR, the same in every NOTIFY of the subscription."""
    return "r" + _token("aor", aor)


def contact_id(b: Binding) -> str:
    """§5.1: different for different Contact URIs (the URI text, every parameter with
    it, is hashed), the same across NOTIFYs for one binding (instance and reg-id too: two
    outbound flows of one device are two contacts)."""
    return "c" + _token(b.contact, b.instance or "", str(b.reg_id or ""))


def _q(q: float | None) -> str | None:
    return None if q is None else f"{q:.3f}".rstrip("0").rstrip(".") or "0"


def _contact(b: Binding, now: float, event: ContactEvent, *, active: bool) -> Contact:
    return Contact(
        id=contact_id(b),
        state="active" if active else "terminated",
        event=event,
        uri=b.contact,
        expires=max(0, int(b.expires_at - now + 0.5)) if active else None,
        q=_q(b.q),
        callid=b.call_id,
        cseq=b.cseq,
    )


def full_state(aor: str, bindings: Iterable[Binding], version: int, now: float) -> RegInfo:
    """The whole registration state of `aor` (first NOTIFY, refresh, fetch)."""
    live = sorted(live_bindings(bindings, now), key=lambda b: b.updated_at)
    contacts = tuple(_contact(b, now, "registered", active=True) for b in live)
    state: RegistrationState = "active" if contacts else "init"
    return RegInfo(version, "full", (Registration(aor, registration_id(aor), state, contacts),))


def _removal_event(b: Binding, change: BindingsChange) -> ContactEvent:
    if change.cause == "rejected":
        return "rejected"
    if change.cause == "expired" or b.expires_at <= change.now:
        return "expired"
    if any(contact_id(e) == contact_id(b) for e in change.changes.evicted):
        return "deactivated"
    return "unregistered"


def changed_contacts(change: BindingsChange) -> tuple[Contact, ...]:
    """The contacts one change moved (§4.7.1), in a stable order: removals, then
    additions and refreshes in registration order."""
    now = change.now
    before = {contact_id(b): b for b in change.before}
    after = {contact_id(b): b for b in change.after}
    out = [
        _contact(b, now, _removal_event(b, change), active=False)
        for cid, b in before.items()
        if cid not in after
    ]
    for cid, b in sorted(after.items(), key=lambda item: item[1].updated_at):
        old = before.get(cid)
        if old is None or old.expires_at <= now:
            out.append(_contact(b, now, "registered", active=True))
        elif old != b:
            out.append(_contact(b, now, "refreshed", active=True))
    return tuple(out)


def partial_state(aor: str, contacts: Sequence[Contact], live: bool, version: int) -> RegInfo:
    """Only the changed `contacts` (§4.7.2); `live`: does the AOR still have a binding."""
    state: RegistrationState = "active" if live else "terminated"
    registration = Registration(aor, registration_id(aor), state, tuple(contacts))
    return RegInfo(version, "partial", (registration,))


def merge_pending(pending: MutableMapping[str, Contact], contacts: Iterable[Contact]) -> None:
    """Add changes that wait for the throttle: the newest state per contact id wins; past
    `MAX_PENDING` the oldest waiting change is dropped."""
    for c in contacts:
        pending.pop(c.id, None)
        pending[c.id] = c
    while len(pending) > MAX_PENDING:
        del pending[next(iter(pending))]

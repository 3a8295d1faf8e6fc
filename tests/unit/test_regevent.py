"""gateway.registrar.regevent: the reg event (RFC 3680) policy, pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.registrar.bindings import BindingChanges, BindingsChange
from gateway.registrar.regevent import (
    MAX_PENDING,
    changed_contacts,
    contact_id,
    full_state,
    may_subscribe,
    merge_pending,
    partial_state,
    registration_id,
)
from gateway.store.api import Binding
from mappings.reginfo import Contact, build_reginfo, parse_reginfo
from tests.unit.listdocs_support import assert_valid

AOR = "sip:alice@example.com"
NOW = 1_000_000.0


def binding(contact: str, expires_in: float = 600, *, cseq: int = 1, updated: float = 0.0,
            instance: str | None = None, reg_id: int | None = None,
            q: float | None = None) -> Binding:  # fmt: skip
    return Binding(AOR, contact, NOW + expires_in, "call-1", cseq, q=q, instance=instance,
                   reg_id=reg_id, updated_at=NOW - 10 + updated)  # fmt: skip


A = binding("sip:alice@10.0.0.1:5060")
B = binding("sip:alice@10.0.0.2:5060", updated=1)


@pytest.mark.parametrize(
    ("target", "subscriber", "via", "allowed"),
    [
        (AOR, AOR, "digest", True),  # §4.6: the user's own registration state
        (AOR, AOR, "registered-flow", True),
        (AOR, "sip:bob@example.com", "digest", False),
        (AOR, "sip:bob@example.com", "trusted-peer", True),  # an automaton set up beforehand
        (AOR, "sip:mallory@evil.example", "federation", False),
        (AOR, None, "federation", False),
    ],
)
def test_who_may_subscribe(target: str, subscriber: str | None, via: str, allowed: bool) -> None:
    assert may_subscribe(target, subscriber, via) is allowed


def test_full_state_lists_live_bindings_active_registered() -> None:
    expired = binding("sip:alice@10.0.0.9", expires_in=-1)
    doc = full_state(AOR, [B, A, expired], 0, NOW)
    body = build_reginfo(doc)
    assert_valid("reginfo", body)
    assert parse_reginfo(body) == doc
    (reg,) = doc.registrations
    assert (reg.aor, reg.state, reg.id) == (AOR, "active", registration_id(AOR))
    assert [c.uri for c in reg.contacts] == [A.contact, B.contact]  # registration order
    assert {(c.state, c.event, c.expires) for c in reg.contacts} == {("active", "registered", 600)}
    assert reg.contacts[0].callid == "call-1" and reg.contacts[0].cseq == 1


def test_full_state_without_bindings_is_init() -> None:
    doc = full_state(AOR, [], 3, NOW)
    assert doc.version == 3 and doc.state == "full"
    assert doc.registrations[0].state == "init" and doc.registrations[0].contacts == ()
    assert_valid("reginfo", build_reginfo(doc))


def test_contact_ids_differ_with_the_uri_and_are_stable() -> None:
    assert contact_id(A) != contact_id(B)
    assert contact_id(A) == contact_id(binding(A.contact, 30, cseq=9))  # refreshed: same id
    flows = [binding(A.contact, instance="<urn:uuid:1>", reg_id=r) for r in (1, 2)]
    assert contact_id(flows[0]) != contact_id(flows[1])  # two outbound flows, two contacts
    assert registration_id(AOR) != registration_id("sip:bob@example.com")


def change(before: tuple[Binding, ...], after: tuple[Binding, ...], cause: str = "register",
           **changes: tuple[Binding, ...]) -> BindingsChange:  # fmt: skip
    return BindingsChange(AOR, before, after, cause, NOW, BindingChanges(**changes))  # type: ignore[arg-type]


def events(c: BindingsChange) -> list[tuple[str, str, str]]:
    return [(x.uri, x.state, x.event) for x in changed_contacts(c)]


A2 = binding(A.contact, 900, cseq=2, updated=5)


@pytest.mark.parametrize(
    ("c", "expected"),
    [
        (change((A,), (A, B)), [(B.contact, "active", "registered")]),
        (change((A,), (A2,)), [(A.contact, "active", "refreshed")]),
        (change((A, B), (B,)), [(A.contact, "terminated", "unregistered")]),
        (change((A, B), (), ), [(A.contact, "terminated", "unregistered"),
                                (B.contact, "terminated", "unregistered")]),
        (change((A, B), (B,), "expired"), [(A.contact, "terminated", "expired")]),
        (change((A, B), (), "rejected"), [(A.contact, "terminated", "rejected"),
                                           (B.contact, "terminated", "rejected")]),
        (change((A,), (B,), evicted=(A,)), [(A.contact, "terminated", "deactivated"),
                                            (B.contact, "active", "registered")]),
        (change((binding(A.contact, -5),), (A2,)), [(A.contact, "active", "registered")]),
        (change((binding(A.contact, -5), B), (B,)), [(A.contact, "terminated", "expired")]),
        (change((A, B), (A, B)), []),  # nothing moved: no NOTIFY
    ],
)  # fmt: skip
def test_contact_state_machine_events(c: BindingsChange, expected: list[tuple[str, ...]]) -> None:
    """RFC 3680 §4.7.1 Figure 2, as docs/registrar.md's table says."""
    assert events(c) == expected


def test_partial_state_terminates_the_registration_with_its_last_contact() -> None:
    contacts = changed_contacts(change((A,), ()))
    doc = partial_state(AOR, contacts, False, 4)
    assert_valid("reginfo", build_reginfo(doc))
    assert doc.state == "partial" and doc.version == 4
    assert doc.registrations[0].state == "terminated"
    assert partial_state(AOR, contacts, True, 5).registrations[0].state == "active"
    assert contacts[0].expires is None  # only active contacts carry expires


def test_merge_pending_keeps_the_newest_per_contact_and_is_bounded() -> None:
    pending: dict[str, Contact] = {}
    merge_pending(pending, changed_contacts(change((), (A,))))
    merge_pending(pending, changed_contacts(change((A,), ())))
    assert [(c.state, c.event) for c in pending.values()] == [("terminated", "unregistered")]
    many = [Contact(f"c{i}", "active", "registered", f"sip:x{i}@h") for i in range(MAX_PENDING + 5)]
    merge_pending(pending, many)
    assert len(pending) == MAX_PENDING
    assert list(pending)[-1] == f"c{MAX_PENDING + 4}"  # the newest kept


contacts = st.lists(
    st.tuples(st.integers(1, 6), st.integers(-100, 3600), st.integers(1, 5)),
    max_size=6,
    unique_by=lambda t: t[0],
)


@settings(max_examples=150, deadline=None)
@given(before=contacts, after=contacts, cause=st.sampled_from(["register", "expired", "rejected"]))
def test_changes_applied_to_the_old_view_give_the_new_one(
    before: list[tuple[int, int, int]], after: list[tuple[int, int, int]], cause: str
) -> None:
    """A subscriber that applies each partial document (§5.2) to the previous full state
    holds the new full state: the documents are schema-valid and lose nothing."""
    old = tuple(binding(f"sip:a@10.0.0.{n}", e, cseq=s, updated=n) for n, e, s in before)
    new = tuple(binding(f"sip:a@10.0.0.{n}", e, cseq=s, updated=n) for n, e, s in after if e > 0)
    moved = changed_contacts(change(old, new, cause))
    view = {c.id: c for c in full_state(AOR, old, 0, NOW).registrations[0].contacts}
    doc = partial_state(AOR, moved, bool(new), 1)
    assert_valid("reginfo", build_reginfo(doc))
    for c in parse_reginfo(build_reginfo(doc)).registrations[0].contacts:
        if c.state == "terminated":
            view.pop(c.id, None)
        else:
            view[c.id] = c
    expected = full_state(AOR, new, 2, NOW).registrations[0].contacts
    assert {c.id: c.uri for c in view.values()} == {c.id: c.uri for c in expected}

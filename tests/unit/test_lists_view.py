"""RLMI full and partial state of one list subscription (gateway/bridge/lists/view.py,
RFC 4662 §5): versions, changed members only, instance states, parts by Content-ID;
every body validates against the RFC 4662 schema and parses back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.bridge.lists.view import UNKNOWN, ListView, MemberState, instance_id
from mappings.pidf import build_pidf
from mappings.presence import XmppPresence, xmpp_to_pidf
from mappings.resourcelists import DisplayName, Entry
from mappings.rlmi import parse_list_body
from tests.unit.listdocs_support import assert_valid

LIST = "sip:rls-1@gw.example"
A, B, C = "sip:juliet@localhost", "sip:bob@sip.example", "sip:carol@far.example"


def pidf(entity: str, available: bool = True) -> bytes:
    pres = (XmppPresence(resource="r", available=True),) if available else ()
    return build_pidf(xmpp_to_pidf(entity, pres))


def view() -> ListView:
    return ListView(LIST, [Entry(A, DisplayName("Juliet")), Entry(B), Entry(C)], cid_domain="gw")


def check(body_type: str, body: bytes) -> object:
    parsed = parse_list_body(body_type, body)
    root = parsed.parts  # every cid has its part (UnknownCid otherwise)
    assert root is not None
    rlmi_part = body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    assert_valid("rlmi", rlmi_part)
    return parsed


def test_full_state_first_then_partial_with_version_plus_one() -> None:
    v = view()
    v.update(A, MemberState("active", document=pidf("pres:juliet@localhost")))
    v.update(B, MemberState("pending"))
    full = v.full("b1")
    parsed = parse_list_body(full.content_type, full.body)
    assert parsed.rlmi.version == 0 and parsed.rlmi.full_state
    assert [r.uri for r in parsed.rlmi.resources] == [A, B, C]
    a, b, c = parsed.rlmi.resources
    assert a.names[0].text == "Juliet"
    assert a.instances[0].state == "active" and a.instances[0].cid in parsed.parts
    assert b.instances[0].state == "pending" and b.instances[0].cid is None
    assert c.instances == ()  # nothing known: no instance (RFC 4662 §4.5)
    assert full.content_type.startswith('multipart/related;type="application/rlmi+xml"')
    check(full.content_type, full.body)

    assert v.partial("b2") is None  # nothing changed since
    assert not v.update(B, MemberState("pending"))  # same state: no change
    assert v.update(B, MemberState("terminated", reason="rejected"))
    part = v.partial("b3")
    assert part is not None
    parsed = parse_list_body(part.content_type, part.body)
    assert parsed.rlmi.version == 1 and not parsed.rlmi.full_state
    assert [r.uri for r in parsed.rlmi.resources] == [B]
    inst = parsed.rlmi.resources[0].instances[0]
    assert (inst.state, inst.reason, inst.id) == ("terminated", "rejected", instance_id(B))
    check(part.content_type, part.body)
    assert v.full("b4").rlmi.version == 2


def test_content_ids_never_repeat_and_instance_ids_are_stable() -> None:
    v = view()
    cids, ids = set(), set()
    for n in range(3):
        v.update(A, MemberState("active", document=pidf("pres:juliet@localhost", n % 2 == 0)))
        body = v.partial(f"b{n}") if n else v.full("b")
        assert body is not None
        inst = body.rlmi.resources[0].instances[0]
        assert inst.cid not in cids
        cids.add(inst.cid)
        ids.add(inst.id)
    assert len(ids) == 1


def test_uncommitted_full_state_keeps_version_and_changes() -> None:
    v = view()
    v.update(A, MemberState("pending"))
    body = v.full("b", commit=False)
    assert body.rlmi.version == 0 and v.version == 0 and v.dirty
    v.commit()
    assert v.version == 1 and not v.dirty


def test_replace_members_keeps_known_states() -> None:
    v = view()
    v.update(A, MemberState("pending"))
    v.replace_members([Entry(A), Entry("sip:dave@x.example")])
    assert v.states[A] == MemberState("pending")
    assert v.states["sip:dave@x.example"] == UNKNOWN
    assert [r.uri for r in v.full("b").rlmi.resources] == [A, "sip:dave@x.example"]


def test_member_state_invariants() -> None:
    with pytest.raises(ValueError):
        MemberState("active")  # an active instance needs a part (RFC 4662 §5.4)
    with pytest.raises(ValueError):
        MemberState("terminated")  # terminated needs a reason


STATES = st.sampled_from(["none", "active", "pending", "terminated"])


def member_state(kind: str, n: int) -> MemberState:
    if kind == "active":
        return MemberState("active", document=pidf("pres:x@y", n % 2 == 0))
    if kind == "pending":
        return MemberState("pending")
    if kind == "terminated":
        return MemberState("terminated", reason="rejected" if n % 2 else "noresource")
    return UNKNOWN


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), STATES, st.integers(0, 3)), max_size=25))
def test_subscriber_state_rebuilt_from_full_then_partials_matches(
    steps: list[tuple[int, str, int]],
) -> None:
    """RFC 4662 §5.6: a subscriber applying the full body then each partial body holds
    exactly the RLS's state, versions go 0, 1, 2, ... without gaps, and every RLMI part
    validates against the schema."""
    v = view()
    uris = [A, B, C]
    seen: dict[str, tuple[str | None, str | None, bytes | None]] = {}
    expected_version = 0

    def apply(body_type: str, body: bytes) -> None:
        nonlocal expected_version
        parsed = parse_list_body(body_type, body)
        assert parsed.rlmi.version == expected_version
        expected_version += 1
        if parsed.rlmi.full_state:
            seen.clear()
        for res in parsed.rlmi.resources:
            if not res.instances:
                seen[res.uri] = (None, None, None)
                continue
            inst = res.instances[0]
            doc = parsed.parts[inst.cid].body if inst.cid else None
            seen[res.uri] = (inst.state, inst.reason, doc)

    full = v.full("b0")
    apply(full.content_type, full.body)
    for i, (idx, kind, n) in enumerate(steps):
        v.update(uris[idx], member_state(kind, n))
        if i % 3 == 2:
            body = v.partial(f"b{i}")
            if body is not None:
                apply(body.content_type, body.body)
    body = v.partial("end")
    if body is not None:
        apply(body.content_type, body.body)
    for uri in uris:
        s = v.states[uri]
        assert seen[uri] == (s.state, s.reason, s.document)


def test_rlmi_part_is_schema_valid() -> None:
    v = view()
    v.update(A, MemberState("active", document=pidf("pres:juliet@localhost")))
    v.update(C, MemberState("terminated", reason="noresource"))
    body = v.full("bnd")
    root = body.body.split(b"\r\n\r\n", 1)[1].split(b"\r\n--bnd", 1)[0]
    assert etree.fromstring(root).tag.endswith("list")
    assert_valid("rlmi", root)

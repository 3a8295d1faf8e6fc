"""mappings.dialoginfo: RFC 4235 dialog-info documents, the §4.1 table and call activity."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.dialoginfo import (
    MAX_DIALOGS,
    MEDIA_TYPE,
    NS,
    Dialog,
    DialogInfo,
    DialogInfoError,
    Participant,
    build_dialog_info,
    merge,
    on_the_phone,
    parse_dialog_info,
)
from mappings.xmlsafe import FormatError
from tests.unit.listdocs_support import assert_valid, hostile, schema, vector

# RFC 4235 §4.3 example. Errata (not in DIGEST; tests/vectors/lists/README.md): the
# <dialog-info> lacks the required `entity`, xsi:schemaLocation holds one URI instead
# of namespace/location pairs, and <identity> carries `display` where the schema
# defines `display-name`.
EXAMPLE = vector("rfc4235-s4.3-dialog-info.xml")
EXAMPLE_FIXED = (
    EXAMPLE.replace(b'display="', b'display-name="')
    .replace(b'  xsi:schemaLocation="urn:ietf:params:xml:ns:dialog-info"\n', b"")
    .replace(
        b'version="1" state="full"', b'version="1" state="full" entity="sip:alice@example.com"'
    )
)
ENTITY = "sip:alice@example.com"


def test_media_type() -> None:
    assert MEDIA_TYPE == "application/dialog-info+xml"  # RFC 4235 §4


def test_rfc4235_example_as_printed_is_invalid() -> None:
    from lxml import etree

    assert not schema("dialog-info").validate(etree.fromstring(EXAMPLE))
    with pytest.raises(DialogInfoError, match="entity"):
        parse_dialog_info(EXAMPLE)


def test_rfc4235_example() -> None:
    assert_valid("dialog-info", EXAMPLE_FIXED)
    doc = parse_dialog_info(EXAMPLE_FIXED)
    assert doc.entity == ENTITY and doc.version == 1 and doc.state == "full"
    assert doc.dialogs == (
        Dialog(
            "123456",
            "confirmed",
            duration=274,
            local=Participant("sip:alice@example.com", "Alice", "sip:alice@pc33.example.com"),
            remote=Participant("sip:bob@example.org", "Bob", "sip:bobster@phone21.example.org"),
        ),
    )
    assert on_the_phone(doc)
    built = build_dialog_info(doc)
    assert_valid("dialog-info", built)
    assert parse_dialog_info(built) == doc


def test_rfc4235_call_flow() -> None:
    trying = parse_dialog_info(vector("rfc4235-s6.1-dialog-trying.xml"))
    early = parse_dialog_info(vector("rfc4235-s6.1-dialog-early.xml"))
    assert trying.dialogs[0] == Dialog(
        "as7d900as8", "trying", "a84b4c76e66710", "1928301774", direction="initiator"
    )
    assert early.dialogs[0].remote_tag == "456887766" and early.dialogs[0].state == "early"
    assert not on_the_phone(trying)  # an INVITE sent is not a call yet
    assert on_the_phone(early)  # ringing with a tag
    table = merge(None, trying)
    assert not table.stale and not table.resync and table.table == trying
    assert merge(table.table, early).table.dialogs == early.dialogs


def _d(id: str, state: str, **kw: object) -> Dialog:
    return Dialog(id, state, **kw)  # type: ignore[arg-type]


def test_merge_follows_rfc4235_section_4_1() -> None:
    full = DialogInfo(ENTITY, 3, "full", (_d("a", "confirmed"), _d("b", "early")))
    table = merge(None, full).table
    # Partial: updates and additions; terminated rows leave the table.
    partial = DialogInfo(
        ENTITY, 4, "partial", (_d("b", "terminated", event="cancelled"), _d("c", "trying"))
    )
    step = merge(table, partial)
    assert not step.stale and not step.resync
    assert step.table == DialogInfo(ENTITY, 4, "full", (_d("a", "confirmed"), _d("c", "trying")))
    assert on_the_phone(step.table)
    # Old and repeated versions are discarded.
    for version in (3, 4):
        again = merge(step.table, DialogInfo(ENTITY, version, "full", ()))
        assert again.stale and again.table == step.table
    # A gap on a partial document is processed, and asks for a refresh.
    gap = merge(step.table, DialogInfo(ENTITY, 9, "partial", (_d("a", "terminated"),)))
    assert gap.resync and gap.table.version == 9
    assert not on_the_phone(gap.table)
    # A gap on a full document needs no refresh; full state replaces the table.
    jump = merge(gap.table, DialogInfo(ENTITY, 20, "full", (_d("z", "early"),)))
    assert not jump.resync and jump.table.dialogs == (_d("z", "early"),)


def test_participant_display_name_needs_identity() -> None:
    with pytest.raises(DialogInfoError):
        Participant(display_name="Bob")


def test_merge_is_bounded() -> None:
    table = merge(None, DialogInfo(ENTITY, 0, "full", ())).table
    for v in range(1, MAX_DIALOGS + 10):
        table = merge(table, DialogInfo(ENTITY, v, "partial", (_d(f"d{v}", "confirmed"),))).table
    assert len(table.dialogs) == MAX_DIALOGS
    assert table.dialogs[-1].id == f"d{MAX_DIALOGS + 9}"


@pytest.mark.parametrize(
    "body",
    [
        b'<dialog-info xmlns="urn:x" version="0" state="full" entity="sip:a@b"/>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full"/>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="-1" state="full" '
        b'entity="sip:a@b"/>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="any" '
        b'entity="sip:a@b"/>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" '
        b'entity="sip:a@b"><dialog id="1"/></dialog-info>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" '
        b'entity="sip:a@b"><dialog id="1"><state>ringing</state></dialog></dialog-info>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" '
        b'entity="sip:a@b"><dialog id="1"><state code="99">early</state></dialog></dialog-info>',
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" '
        b'entity="sip:a@b"><dialog id="1" direction="up"><state>early</state></dialog>'
        b"</dialog-info>",
    ],
)
def test_malformed_is_400(body: bytes) -> None:
    with pytest.raises(DialogInfoError) as info:
        parse_dialog_info(body)
    assert info.value.sip_status == 400


@pytest.mark.parametrize("kind", sorted(hostile(b"dialog-info", NS)))
def test_hostile_xml_gets_a_defined_error(kind: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_dialog_info(hostile(b"dialog-info", NS)[kind])
    assert info.value.sip_status == (413 if kind == "huge" else 400)


_token = st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True)
_uri = st.builds(lambda u: f"sip:{u}@example.com", _token)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=8)
_participant = (
    st.none()
    | st.builds(Participant, _uri, st.none() | _text, st.none() | _uri)
    | st.builds(Participant, st.none(), st.none(), st.none() | _uri)
)
_dialog = st.builds(
    Dialog,
    _token,
    st.sampled_from(["trying", "proceeding", "early", "confirmed", "terminated"]),
    st.none() | _token,
    st.none() | _token,
    st.none() | _token,
    st.none() | st.sampled_from(["initiator", "recipient"]),
    st.none()
    | st.sampled_from(
        ["cancelled", "rejected", "replaced", "local-bye", "remote-bye", "error", "timeout"]
    ),
    st.none() | st.integers(100, 699),
    st.none() | st.integers(0, 10**9),
    _participant,
    _participant,
)
_doc = st.builds(
    DialogInfo,
    _uri,
    st.integers(0, 2**40),
    st.sampled_from(["full", "partial"]),
    st.lists(_dialog, max_size=4).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(_doc)
def test_round_trip_and_schema_property(doc: DialogInfo) -> None:
    body = build_dialog_info(doc)
    assert_valid("dialog-info", body)
    assert parse_dialog_info(body) == doc
    assert on_the_phone(doc) == any(d.state in ("early", "confirmed") for d in doc.dialogs)

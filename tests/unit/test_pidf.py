"""mappings.pidf: RFC 3863 examples, RFC 4479/4480 person activities, schema validity."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mappings.pidf import (
    RPID_SCHEMA_ACTIVITIES,
    Note,
    Person,
    PidfError,
    PresenceDocument,
    Tuple,
    build_pidf,
    parse_pidf,
)
from mappings.xmlsafe import XmlRejected

STANDARDS = Path(__file__).resolve().parents[1] / "vectors" / "standards"
RFC_DIR = STANDARDS / "rfc"
SCHEMAS = STANDARDS / "schemas"

_PAGE_BREAK = re.compile(r"^(?:\f|RFC \d{4} .*\d{4}$|.*\[Page \d+\]$)")


def rfc_example(rfc: str, after: str, start: str, end: str) -> bytes:
    """Cut an example out of an RFC text: from ``start`` to ``end`` after heading ``after``."""
    path = RFC_DIR / f"{rfc}.txt"
    lines = [ln for ln in path.read_text().splitlines() if not _PAGE_BREAK.match(ln)]
    text = "\n".join(lines)
    section = text[text.index(after) :]
    begin = section.index(start)
    finish = section.index(end, begin) + len(end)
    return section[begin:finish].encode("utf-8")


def rfc3863(section: str) -> bytes:
    return rfc_example("rfc3863", section, "<?xml", "presence>")


# --- RFC 3863 §4.3 examples ---


def test_rfc3863_4_3_1_default_namespace_with_status_extensions() -> None:
    doc = parse_pidf(rfc3863("4.3.1.  Default Namespace with Status Extensions\n"))
    assert doc.entity == "pres:someone@example.com"
    first, second = doc.tuples
    assert first == Tuple(
        id="bs35r9",
        basic="open",
        notes=(
            Note("Don't Disturb Please!", "en"),
            Note("Ne derangez pas, s'il vous plait", "fr"),
        ),
        contact="im:someone@mobilecarrier.net",
        priority=Decimal("0.8"),
        timestamp=datetime(2001, 10, 27, 16, 49, 29, tzinfo=UTC),
        legacy_im="busy",
    )
    assert second.id == "eg92n8"
    assert second.basic == "open"
    assert second.contact == "mailto:someone@example.com"
    assert second.priority == Decimal("1")
    assert second.timestamp is None
    assert doc.notes == (Note("I'll be in Tokyo next week"),)
    assert doc.person is None


def test_rfc3863_4_3_2_prefixed_namespace_and_other_extensions() -> None:
    doc = parse_pidf(rfc3863("4.3.2.  Presence with Other Extension Elements\n"))
    assert [(t.id, t.basic, t.contact, t.priority) for t in doc.tuples] == [
        ("ck38g9", "open", "tel:+09012345678", Decimal("0.65")),
        ("md66je", "open", "im:someone@mobilecarrier.net", Decimal("1.0")),
    ]
    assert doc.notes == ()


def test_rfc3863_4_3_3_must_understand_outside_status_is_ignored() -> None:
    doc = parse_pidf(rfc3863("4.3.3.  Example Mandatory To Understand Elements\n"))
    (tup,) = doc.tuples
    assert (tup.id, tup.basic, tup.contact, tup.priority) == (
        "tj25ds",
        "open",
        "tel:+09012345678",
        Decimal("0.725"),
    )


def test_rfc3863_4_2_2_prefix_and_default_namespace_are_equal() -> None:
    section = "4.2.2.  XML Namespaces In Presence Information\n"
    prefixed = rfc_example("rfc3863", section, "<?xml", "</impp:presence>")
    default = rfc_example("rfc3863", ", using a default XML namespace:", "<?xml", "</presence>")
    assert parse_pidf(prefixed) == parse_pidf(default)
    assert parse_pidf(default).tuples[0].contact == "tel:+09012345678"


def test_rfc3863_4_2_4_contact_without_priority() -> None:
    doc = parse_pidf(rfc3863("4.2.4. Status Value Extensibility\n"))
    (tup,) = doc.tuples
    assert (tup.id, tup.basic, tup.contact, tup.priority) == (
        "ub93s3",
        "open",
        "im:someone@example.com",
        None,
    )


def test_rfc4480_4_example_person_activities() -> None:
    doc = parse_pidf(rfc_example("rfc4480", "4.  Example\n", "<?xml", "</presence>"))
    assert [t.id for t in doc.tuples] == ["bs35r9", "ty4658", "eg92n8"]
    assert doc.person == Person(
        "p1",
        frozenset({"away"}),
        (Note("Scoring 120"),),
        datetime(2005, 5, 30, 16, 9, 44, tzinfo=timezone(timedelta(hours=5))),
    )


def test_rfc8048_example_show_in_status() -> None:
    """RFC 8048 §6.2 (R8048-16): <show xmlns='jabber:client'> inside <status>."""
    body = b"""<?xml version='1.0' encoding='UTF-8'?>
<presence xmlns='urn:ietf:params:xml:ns:pidf' entity='pres:juliet@example.com'>
  <tuple id='ID-yn0cl4bnw0yr3vym'>
    <status><basic>open</basic><show xmlns='jabber:client'>away</show></status>
  </tuple>
</presence>"""
    doc = parse_pidf(body)
    assert doc.tuples == (Tuple("ID-yn0cl4bnw0yr3vym", "open", "away"),)


# --- tolerant parsing ---

_HEAD = (
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
    b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" xmlns:x="urn:example:x" '
    b'entity="sip:a@example.com"'
)


def pidf(inner: bytes, attrs: bytes = b"") -> bytes:
    return _HEAD + attrs + b">" + inner + b"</presence>"


@pytest.mark.parametrize("value", ["1.5", "0.1234", "-0.1", "abc", "", "2", "1.001"])
def test_out_of_range_priority_reads_as_absent(value: str) -> None:
    """RFC 3863 §4.1.5: out of range SHOULD be ignored."""
    body = pidf(
        f'<tuple id="t"><status><basic>open</basic></status>'
        f'<contact priority="{value}">sip:a@b</contact></tuple>'.encode()
    )
    (tup,) = parse_pidf(body).tuples
    assert tup.contact == "sip:a@b"
    assert tup.priority is None


@pytest.mark.parametrize("value", ["0", "0.", "0.021", "0.5", "1.00", "1", "0.999"])
def test_in_range_priorities(value: str) -> None:
    body = pidf(
        f'<tuple id="t"><status><basic>open</basic></status>'
        f'<contact priority="{value}">sip:a@b</contact></tuple>'.encode()
    )
    assert parse_pidf(body).tuples[0].priority == Decimal(value.rstrip(".") or "0")


def test_missing_basic_and_unknown_basic_are_tolerated() -> None:
    body = pidf(
        b'<tuple id="a"><status><x:location>home</x:location></status></tuple>'
        b'<tuple id="b"><status><basic>OPEN</basic></status></tuple>'
        b'<tuple id="c"/>'
    )
    assert [(t.id, t.basic) for t in parse_pidf(body).tuples] == [
        ("a", None),
        ("b", None),
        ("c", None),
    ]


def test_tuple_without_id_is_skipped_and_duplicate_id_keeps_first() -> None:
    body = pidf(
        b"<tuple><status><basic>open</basic></status></tuple>"
        b'<tuple id="t"><status><basic>closed</basic></status></tuple>'
        b'<tuple id="t"><status><basic>open</basic></status></tuple>'
    )
    assert [(t.id, t.basic) for t in parse_pidf(body).tuples] == [("t", "closed")]


def test_unknown_elements_ignored_with_their_content() -> None:
    """RFC 3863 §4.2.3: even recognized names inside an unknown element are ignored."""
    body = pidf(
        b'<tuple id="t"><status><basic>closed</basic></status>'
        b"<x:wrapper><note>hidden</note><contact>sip:hidden@x</contact></x:wrapper>"
        b"</tuple><x:ext><tuple id='hidden'/></x:ext>"
    )
    doc = parse_pidf(body)
    assert doc.tuples == (Tuple("t", "closed"),)


def test_must_understand_child_makes_show_ignored() -> None:
    body = pidf(
        b'<tuple id="t"><status><basic>open</basic>'
        b'<show xmlns="jabber:client">dnd<x:mode mustUnderstand="true"/></show>'
        b"</status></tuple>",
    )
    assert parse_pidf(body).tuples[0].show is None
    body = body.replace(b' mustUnderstand="true"', b"")
    assert parse_pidf(body).tuples[0].show == "dnd"


def test_must_understand_child_makes_activities_ignored() -> None:
    person = (
        b'<dm:person id="p"><rpid:activities><rpid:busy/>'
        b'<x:new xmlns:p="urn:ietf:params:xml:ns:pidf" p:mustUnderstand="1"/>'
        b"</rpid:activities></dm:person>"
    )
    assert parse_pidf(pidf(person)).person == Person("p")
    # A mustUnderstand inside an element that is itself ignored is ignored (§4.2.3 NOTE).
    nested = person.replace(b"<x:new ", b"<x:outer><x:new ").replace(b'"1"/>', b'"1"/></x:outer>')
    assert parse_pidf(pidf(nested)).person == Person("p", frozenset({"busy"}))


def test_show_outside_rfc6121_values_is_dropped() -> None:
    body = pidf(
        b'<tuple id="t"><status><basic>open</basic><show xmlns="jabber:client">'
        b"sleepy</show></status></tuple>"
    )
    assert parse_pidf(body).tuples[0].show is None


def test_notes_take_in_scope_xml_lang() -> None:
    body = pidf(
        b'<tuple id="t"><status><basic>open</basic></status><note>ahoj</note>'
        b'<note xml:lang="en">hi</note></tuple><note>nazdar</note>',
        attrs=b' xml:lang="cs"',
    )
    doc = parse_pidf(body)
    assert doc.tuples[0].notes == (Note("ahoj", "cs"), Note("hi", "en"))
    assert doc.notes == (Note("nazdar", "cs"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2001-10-27T16:49:29Z", datetime(2001, 10, 27, 16, 49, 29, tzinfo=UTC)),
        ("2001-10-27t16:49:29z", datetime(2001, 10, 27, 16, 49, 29, tzinfo=UTC)),
        (
            "2004-10-21T13:20:00.25-05:00",
            datetime(2004, 10, 21, 13, 20, 0, 250000, tzinfo=timezone(timedelta(hours=-5))),
        ),
        ("2001-10-27 16:49:29Z", None),
        ("2001-10-27T16:49:29", None),
        ("yesterday", None),
    ],
)
def test_timestamps_rfc3339(text: str, expected: datetime | None) -> None:
    body = pidf(
        f'<tuple id="t"><status><basic>open</basic></status>'
        f"<timestamp>{text}</timestamp></tuple>".encode()
    )
    assert parse_pidf(body).tuples[0].timestamp == expected


def test_zero_tuples_and_missing_entity_parse() -> None:
    doc = parse_pidf(b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>')
    assert doc == PresenceDocument("")


@pytest.mark.parametrize(
    "body",
    [
        b"<presence entity='x'/>",  # no namespace
        b"<p:presence xmlns:p='urn:ietf:params:xml:ns:pidf:im' entity='x'/>",
        b"<isComposing xmlns='urn:ietf:params:xml:ns:im-iscomposing'/>",
    ],
)
def test_not_pidf_is_rejected(body: bytes) -> None:
    with pytest.raises(PidfError) as info:
        parse_pidf(body)
    assert info.value.sip_status == 400


def test_hostile_xml_is_rejected_by_the_hardened_parser() -> None:
    with pytest.raises(XmlRejected):
        parse_pidf(
            b'<!DOCTYPE presence [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a"><note>&x;</note>'
            b"</presence>"
        )


# --- building ---

JULIET = PresenceDocument(
    "pres:juliet@example.com",
    (
        Tuple(
            "ID-yn0cl4bnw0yr3vym",
            "open",
            "away",
            (Note("At the balcony", "en"),),
            "im:juliet@example.com",
            Decimal("0.5"),
            datetime(2016, 12, 1, 10, 0, 0, tzinfo=UTC),
        ),
        Tuple("ID-chamber", "closed", contact="im:juliet@example.com"),
    ),
    (Note("top note"),),
    Person("p1", frozenset({"away", "busy"}), (Note("person note", "fr"),)),
)


def test_build_has_utf8_declaration_and_show_in_jabber_client_namespace() -> None:
    body = build_pidf(JULIET)
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(body)
    show = root.find(
        "{urn:ietf:params:xml:ns:pidf}tuple/{urn:ietf:params:xml:ns:pidf}status/{jabber:client}show"
    )
    assert show is not None
    assert show.text == "away"
    assert b"<timestamp>2016-12-01T10:00:00Z</timestamp>" in body
    assert b'priority="0.5"' in body


def test_build_timestamps_use_uppercase_t_and_offsets() -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    doc = PresenceDocument(
        "pres:a@b", (Tuple("t", "open", timestamp=datetime(2020, 1, 2, 3, 4, 5, 600, tz)),)
    )
    assert b"<timestamp>2020-01-02T03:04:05.0006+05:30</timestamp>" in build_pidf(doc)


def test_build_then_parse_is_identity() -> None:
    assert parse_pidf(build_pidf(JULIET)) == JULIET


@pytest.mark.parametrize("bad_id", ["1abc", "a:b", "a b", "", "-x"])
def test_build_rejects_non_xs_id_tuple_ids(bad_id: str) -> None:
    with pytest.raises(ValueError, match="xs:ID"):
        build_pidf(PresenceDocument("pres:a@b", (Tuple(bad_id, "open"),)))


def test_build_rejects_empty_status_and_unknown_activity() -> None:
    with pytest.raises(ValueError, match="at least one child"):
        build_pidf(PresenceDocument("pres:a@b", (Tuple("t"),)))
    with pytest.raises(ValueError, match="RPID activity"):
        build_pidf(PresenceDocument("pres:a@b", person=Person("p", frozenset({"napping"}))))
    with pytest.raises(ValueError, match="RPID activity"):  # in RFC 4480 prose, not schema
        build_pidf(PresenceDocument("pres:a@b", person=Person("p", frozenset({"lunch"}))))


@pytest.mark.parametrize("priority", ["1.5", "0.1234", "-0.001"])
def test_tuple_validates_priority(priority: str) -> None:
    with pytest.raises(ValueError, match="priority"):
        Tuple("t", "open", contact="sip:a@b", priority=Decimal(priority))


def test_tuple_priority_needs_contact_and_show_must_be_rfc6121() -> None:
    with pytest.raises(ValueError, match="contact"):
        Tuple("t", "open", priority=Decimal("0.5"))
    with pytest.raises(ValueError, match="show"):
        Tuple("t", "open", show="busy")
    with pytest.raises(ValueError, match="unique"):
        PresenceDocument("pres:a@b", (Tuple("t", "open"), Tuple("t", "closed")))


def test_lunch_is_accepted_on_input() -> None:
    """DIGEST §0 errata: RFC 4480 prose lists <lunch>, its schema does not."""
    body = pidf(b'<dm:person id="p"><rpid:activities><rpid:lunch/></rpid:activities></dm:person>')
    assert parse_pidf(body).person == Person("p", frozenset({"lunch"}))


def test_unknown_activity_stands_alone() -> None:
    doc = PresenceDocument("pres:a@b", person=Person("p", frozenset({"unknown", "busy"})))
    assert parse_pidf(build_pidf(doc)).person == Person("p", frozenset({"busy"}))


# --- property: build -> parse round trip ---

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=20,
).map(str.strip)
_notes = st.lists(
    st.builds(Note, _text, st.one_of(st.none(), st.sampled_from(["en", "fr", "cs"]))), max_size=2
).map(tuple)
_ids = st.from_regex(r"[A-Za-z_][A-Za-z0-9._\-]{0,10}", fullmatch=True)
_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-8))]),
    ),
)
_priorities = st.one_of(st.none(), st.integers(0, 1000).map(lambda n: Decimal(n) / 1000))


@st.composite
def _tuples(draw: st.DrawFn, tuple_id: str) -> Tuple:
    basic = draw(st.sampled_from(["open", "closed", None]))
    show = draw(st.sampled_from([None, "away", "chat", "dnd", "xa"]))
    if basic is None and show is None:
        basic = "open"
    contact = draw(st.one_of(st.none(), st.just("im:a@example.com")))
    priority = draw(_priorities) if contact else None
    return Tuple(tuple_id, basic, show, draw(_notes), contact, priority, draw(_times))


@st.composite
def _documents(draw: st.DrawFn) -> PresenceDocument:
    ids = draw(st.lists(_ids, unique=True, max_size=3))
    tuples = tuple(draw(_tuples(i)) for i in ids)
    person = draw(
        st.one_of(
            st.none(),
            st.builds(
                Person,
                st.just("p1"),
                st.frozensets(
                    st.sampled_from(sorted(RPID_SCHEMA_ACTIVITIES - {"unknown"})), max_size=3
                ),
                _notes,
                _times,
            ),
        )
    )
    return PresenceDocument("pres:a@example.com", tuples, draw(_notes), person)


@settings(max_examples=150, deadline=None)
@given(_documents())
def test_round_trip_property(doc: PresenceDocument) -> None:
    assert parse_pidf(build_pidf(doc)) == doc


# --- schema validity (RFC 3863 §4.4, RFC 4479 §5.1, RFC 4480 §5) ---


def _common_schema() -> str:
    """RFC 4479 §5.1.1 common-schema.xsd, which data-model.xsd and rpid.xsd include."""
    text = rfc_example("rfc4479", "5.1.1.  Common Schema\n", "<?xml", "</xs:schema>").decode()
    return text.replace("http://www.w3.org/2001/xml.xsd", "xml.xsd")


@pytest.fixture(scope="module")
def pidf_schema(tmp_path_factory: pytest.TempPathFactory) -> etree.XMLSchema:
    work = tmp_path_factory.mktemp("xsd")
    for name in ("pidf.xsd", "data-model.xsd", "rpid.xsd", "xml.xsd"):
        shutil.copy(SCHEMAS / name, work / name)
    (work / "common-schema.xsd").write_text(_common_schema())
    (work / "all.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">'
        '<xs:import namespace="urn:ietf:params:xml:ns:pidf" schemaLocation="pidf.xsd"/>'
        '<xs:import namespace="urn:ietf:params:xml:ns:pidf:data-model" '
        'schemaLocation="data-model.xsd"/>'
        '<xs:import namespace="urn:ietf:params:xml:ns:pidf:rpid" schemaLocation="rpid.xsd"/>'
        "</xs:schema>"
    )
    return etree.XMLSchema(etree.parse(str(work / "all.xsd")))


def test_schema_rejects_invalid_documents(pidf_schema: etree.XMLSchema) -> None:
    """The validator is live for all three schemas."""
    bad_id = pidf(b'<tuple id="1"><status/></tuple>')
    bad_activity = pidf(
        b'<dm:person id="p"><rpid:activities><rpid:napping/></rpid:activities></dm:person>'
    )
    person_without_id = pidf(b"<dm:person/>")
    for body in (bad_id, bad_activity, person_without_id):
        assert not pidf_schema.validate(etree.fromstring(body))
    assert pidf_schema.validate(etree.fromstring(bad_activity.replace(b"napping", b"busy")))


def test_built_documents_validate(pidf_schema: etree.XMLSchema) -> None:
    for doc in (JULIET, PresenceDocument("pres:a@b", (Tuple("ID-", "closed"),))):
        root = etree.fromstring(build_pidf(doc))
        assert pidf_schema.validate(root), pidf_schema.error_log


@settings(max_examples=100, deadline=None)
@given(doc=_documents())
def test_built_documents_validate_property(
    pidf_schema: etree.XMLSchema, doc: PresenceDocument
) -> None:
    assert pidf_schema.validate(etree.fromstring(build_pidf(doc))), pidf_schema.error_log

"""mappings.presence: RFC 8048 Tables 1/2, RFC 3922 §6.3, DIGEST §2.7 show <-> RPID."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.pidf import Note, Person, PresenceDocument, Tuple, build_pidf, parse_pidf
from mappings.presence import (
    ACTIVITY_SHOW,
    SHOW_ACTIVITIES,
    XmppPresence,
    pidf_priority_to_xmpp,
    pidf_to_xmpp,
    resource_for_tuple_id,
    tuple_id_for_resource,
    unknown_presence,
    xmpp_priority_to_pidf,
    xmpp_to_pidf,
)

ENTITY = "pres:juliet@example.com"

# --- RFC 8048 §6.2 Table 1 note 2: resource <-> tuple id ---


def test_rfc8048_example_resource_gets_id_prefix() -> None:
    assert tuple_id_for_resource("yn0cl4bnw0yr3vym") == "ID-yn0cl4bnw0yr3vym"
    assert resource_for_tuple_id("ID-dr4hcr0st3lup4c") == "dr4hcr0st3lup4c"


@pytest.mark.parametrize(
    ("resource", "tuple_id"),
    [
        ("chamber", "ID-chamber"),
        ("4c", "ID-4c"),
        ("a b", "ID-a_20b"),
        ("a:b", "ID-a_3Ab"),
        ("under_score", "ID-under_5Fscore"),
        ("tschüss", "ID-tsch_C3_BCss"),
        ("Gajim.X1-2", "ID-Gajim.X1-2"),
        (None, "ID-"),
    ],
)
def test_tuple_id_encoding_vectors(resource: str | None, tuple_id: str) -> None:
    assert tuple_id_for_resource(resource) == tuple_id
    assert resource_for_tuple_id(tuple_id) == resource


@pytest.mark.parametrize("foreign", ["bs35r9", "ID-a_zz", "ID-a_41", "ID-_C3", "tuple:1"])
def test_foreign_tuple_ids_are_used_verbatim(foreign: str) -> None:
    assert resource_for_tuple_id(foreign) == foreign


_NCNAME_AFTER_PREFIX = st.text(min_size=1, max_size=30).filter(lambda s: "\x00" not in s)


@settings(max_examples=200)
@given(_NCNAME_AFTER_PREFIX)
def test_tuple_id_round_trip_and_ncname(resource: str) -> None:
    tuple_id = tuple_id_for_resource(resource)
    assert tuple_id.startswith("ID-")
    assert all(c.isascii() and (c.isalnum() or c in ".-_") for c in tuple_id)
    assert resource_for_tuple_id(tuple_id) == resource


@settings(max_examples=200)
@given(_NCNAME_AFTER_PREFIX, _NCNAME_AFTER_PREFIX)
def test_tuple_ids_are_unique(a: str, b: str) -> None:
    if a != b:
        assert tuple_id_for_resource(a) != tuple_id_for_resource(b)


# --- RFC 8048 §6.2 note 6 / RFC 3922 §5.2.13: priority ---


@pytest.mark.parametrize(
    ("xmpp", "pidf"),
    [(0, "0"), (1, "0.007"), (2, "0.015"), (126, "0.992"), (127, "1")],
)
def test_rfc8048_priority_examples(xmpp: int, pidf: str) -> None:
    assert xmpp_priority_to_pidf(xmpp) == Decimal(pidf)
    assert pidf_priority_to_xmpp(Decimal(pidf)) == xmpp


@pytest.mark.parametrize("negative", [-1, -5, -128])
def test_negative_priority_must_not_be_mapped(negative: int) -> None:
    assert xmpp_priority_to_pidf(negative) is None


@pytest.mark.parametrize(
    ("pidf", "xmpp"),
    [("0.001", 1), ("0.007", 1), ("0.008", 2), ("0.015", 2), ("0.992", 126), ("0.999", 126)],
)
def test_rfc3922_reverse_ranges(pidf: str, xmpp: int) -> None:
    assert pidf_priority_to_xmpp(Decimal(pidf)) == xmpp


def test_priority_mapping_unique_monotonic_and_round_trips() -> None:
    mapped = [xmpp_priority_to_pidf(p) for p in range(128)]
    assert all(q is not None for q in mapped)
    values = [q for q in mapped if q is not None]
    assert values == sorted(values)
    assert len(set(values)) == 128
    assert all(q.as_tuple().exponent >= -3 for q in values)  # type: ignore[operator]
    assert [pidf_priority_to_xmpp(q) for q in values] == list(range(128))


@settings(max_examples=200)
@given(st.integers(0, 1000), st.integers(0, 1000))
def test_reverse_priority_is_monotonic(a: int, b: int) -> None:
    qa, qb = Decimal(a) / 1000, Decimal(b) / 1000
    if qa <= qb:
        assert pidf_priority_to_xmpp(qa) <= pidf_priority_to_xmpp(qb)
    assert 0 <= pidf_priority_to_xmpp(qa) <= 127


# --- RFC 8048 §6.2 Table 1: XMPP -> PIDF ---


def test_table1_no_type_is_open_unavailable_is_closed() -> None:
    doc = xmpp_to_pidf(
        ENTITY,
        [XmppPresence("balcony"), XmppPresence("chamber", available=False)],
    )
    assert [(t.id, t.basic) for t in doc.tuples] == [
        ("ID-balcony", "open"),
        ("ID-chamber", "closed"),
    ]


def test_table1_rfc8048_example_body() -> None:
    """R8048-16: show embedded as jabber:client inside <status>."""
    doc = xmpp_to_pidf(ENTITY, [XmppPresence("yn0cl4bnw0yr3vym", show="away")])
    (tup,) = doc.tuples
    assert (tup.id, tup.basic, tup.show) == ("ID-yn0cl4bnw0yr3vym", "open", "away")
    body = build_pidf(doc)
    assert b'<status><basic>open</basic><show xmlns="jabber:client">away</show></status>' in body
    assert b'entity="pres:juliet@example.com"' in body


def test_table1_status_becomes_note_with_lang() -> None:
    doc = xmpp_to_pidf(
        ENTITY,
        [XmppPresence("r", statuses=(("Ahoj", "cs"), ("no lang", None)), lang="en")],
    )
    assert doc.tuples[0].notes == (Note("Ahoj", "cs"), Note("no lang", "en"))


def test_table1_priority_on_contact_and_negative_dropped() -> None:
    doc = xmpp_to_pidf(ENTITY, [XmppPresence("a", priority=127), XmppPresence("b", priority=-1)])
    assert [(t.contact, t.priority) for t in doc.tuples] == [
        ("im:juliet@example.com", Decimal("1")),
        ("im:juliet@example.com", None),
    ]
    sip = xmpp_to_pidf("sip:juliet@example.com", [XmppPresence("a")], contact="xmpp:j@x/a")
    assert sip.tuples[0].contact == "xmpp:j@x/a"


def test_rfc3922_6_3_1_one_tuple_per_resource_latest_wins() -> None:
    doc = xmpp_to_pidf(
        ENTITY,
        [XmppPresence("a", show="away"), XmppPresence("b"), XmppPresence("a", show="dnd")],
    )
    assert [(t.id, t.show) for t in doc.tuples] == [("ID-a", "dnd"), ("ID-b", None)]


def test_rfc3922_6_3_2_never_zero_tuples() -> None:
    doc = xmpp_to_pidf(ENTITY, [])
    assert doc.tuples == (
        Tuple("ID-", "closed", contact="im:juliet@example.com", priority=Decimal(0)),
    )
    assert doc.person is None


def test_timestamp_is_an_input() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    doc = xmpp_to_pidf(ENTITY, [XmppPresence("a", show="xa")], now=now)
    assert doc.tuples[0].timestamp == now
    assert doc.person is not None
    assert doc.person.timestamp == now


# --- DIGEST §2.7 table, XMPP -> RPID (always alongside <show/>) ---


@pytest.mark.parametrize(
    ("presence", "basic", "activities"),
    [
        (XmppPresence("r"), "open", None),  # no type, no show
        (XmppPresence("r", show="chat"), "open", None),
        (XmppPresence("r", show="away"), "open", {"away"}),
        (XmppPresence("r", show="xa"), "open", {"away"}),
        (XmppPresence("r", show="dnd"), "open", {"busy"}),
        (XmppPresence("r", available=False), "closed", None),  # type=unavailable
    ],
    ids=["available", "chat", "away", "xa", "dnd", "unavailable"],
)
def test_digest_2_7_show_to_rpid(
    presence: XmppPresence, basic: str, activities: set[str] | None
) -> None:
    doc = xmpp_to_pidf(ENTITY, [presence])
    assert doc.tuples[0].basic == basic
    assert doc.tuples[0].show == presence.show
    if activities is None:
        assert doc.person is None
    else:
        assert doc.person == Person("p1", frozenset(activities))


def test_person_mirrors_highest_priority_then_most_available() -> None:
    doc = xmpp_to_pidf(
        ENTITY,
        [XmppPresence("a", show="dnd", priority=5), XmppPresence("b", show="away", priority=1)],
    )
    assert doc.person is not None
    assert doc.person.activities == {"busy"}
    tie = xmpp_to_pidf(ENTITY, [XmppPresence("a", show="dnd"), XmppPresence("b", show="away")])
    assert tie.person is not None
    assert tie.person.activities == {"away"}
    offline = xmpp_to_pidf(ENTITY, [XmppPresence("a", available=False)])
    assert offline.person is None


# --- RFC 8048 §6.3 Table 2: PIDF -> XMPP ---


def test_table2_rfc8048_example_closed_tuple() -> None:
    doc = PresenceDocument("pres:romeo@example.net", (Tuple("ID-dr4hcr0st3lup4c", "closed"),))
    assert pidf_to_xmpp(doc) == [XmppPresence("dr4hcr0st3lup4c", available=False)]


def test_table2_open_note_show_priority() -> None:
    doc = PresenceDocument(
        "pres:romeo@example.net",
        (
            Tuple(
                "ID-orchard",
                "open",
                "chat",
                (Note("Wherefore", "en"),),
                "sip:romeo@example.net",
                Decimal("0.5"),
            ),
        ),
    )
    assert pidf_to_xmpp(doc) == [
        XmppPresence("orchard", True, "chat", (("Wherefore", "en"),), priority=64)
    ]


def test_table2_missing_priority_is_lowest() -> None:
    doc = PresenceDocument("pres:a@b", (Tuple("t", "open", contact="sip:a@b"),))
    assert pidf_to_xmpp(doc)[0].priority == 0


def test_closed_tuple_carries_no_show() -> None:
    doc = PresenceDocument(
        "pres:a@b", (Tuple("t", "closed", "dnd"),), person=Person("p", frozenset({"busy"}))
    )
    assert pidf_to_xmpp(doc) == [XmppPresence("t", available=False)]


def test_multi_tuple_gives_one_presence_each_rfc3863_4_3_1() -> None:
    body = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" '
        b'xmlns:im="urn:ietf:params:xml:ns:pidf:im" entity="pres:someone@example.com">'
        b'<tuple id="bs35r9"><status><basic>open</basic><im:im>busy</im:im></status>'
        b'<contact priority="0.8">im:someone@mobilecarrier.net</contact>'
        b'<note xml:lang="en">Don\'t Disturb Please!</note></tuple>'
        b'<tuple id="eg92n8"><status><basic>open</basic></status>'
        b'<contact priority="1.0">mailto:someone@example.com</contact></tuple>'
        b"<note>I'll be in Tokyo next week</note></presence>"
    )
    assert pidf_to_xmpp(parse_pidf(body)) == [
        XmppPresence("bs35r9", True, "dnd", (("Don't Disturb Please!", "en"),), 102),
        XmppPresence("eg92n8", True, None, (("I'll be in Tokyo next week", None),), 127),
    ]


def test_missing_basic_counts_as_open() -> None:
    doc = PresenceDocument("pres:a@b", (Tuple("t", None, "away"),))
    assert pidf_to_xmpp(doc) == [XmppPresence("t", True, "away")]


def test_two_ids_for_one_resource_first_wins() -> None:
    doc = PresenceDocument("pres:a@b", (Tuple("ID-x", "open"), Tuple("x", "closed")))
    assert pidf_to_xmpp(doc) == [XmppPresence("x")]


# --- show precedence: jabber:client show, then RPID (DIGEST §2.7), then legacy im:im ---


@pytest.mark.parametrize(
    ("activity", "show"),
    [
        ("away", "away"),
        ("vacation", "xa"),
        ("holiday", "xa"),
        ("busy", "dnd"),
        ("on-the-phone", "dnd"),
        ("meeting", "dnd"),
        ("appointment", "dnd"),
        ("presentation", "dnd"),
        ("performance", "dnd"),
        ("permanent-absence", "xa"),
        ("sleeping", None),
        ("tv", None),
    ],
)
def test_digest_2_7_rpid_activity_to_show(activity: str, show: str | None) -> None:
    assert ACTIVITY_SHOW.get(activity) == show
    doc = PresenceDocument(
        "pres:a@b", (Tuple("t", "open"),), person=Person("p", frozenset({activity}))
    )
    assert pidf_to_xmpp(doc)[0].show == show


def test_show_precedence() -> None:
    person = Person("p", frozenset({"busy"}))
    jabber = Tuple("t", "open", "chat", legacy_im="away")
    rpid = Tuple("t", "open", legacy_im="away")
    legacy = Tuple("t", "open", legacy_im="busy")
    assert pidf_to_xmpp(PresenceDocument("e", (jabber,), person=person))[0].show == "chat"
    assert pidf_to_xmpp(PresenceDocument("e", (rpid,), person=person))[0].show == "dnd"
    assert pidf_to_xmpp(PresenceDocument("e", (legacy,)))[0].show == "dnd"
    away = Tuple("t", "open", legacy_im="away")
    assert pidf_to_xmpp(PresenceDocument("e", (away,)))[0].show == "away"
    odd = Tuple("t", "open", legacy_im="lunching")
    assert pidf_to_xmpp(PresenceDocument("e", (odd,)))[0].show is None


def test_rpid_fallback_skipped_when_document_speaks_jabber_show() -> None:
    """A show-less tuple next to one with jabber:client show is plainly available."""
    person = Person("p", frozenset({"away"}))
    doc = PresenceDocument("e", (Tuple("a", "open", "away"), Tuple("b", "open")), person=person)
    assert [p.show for p in pidf_to_xmpp(doc)] == ["away", None]


def test_several_activities_first_in_table_order_wins() -> None:
    person = Person("p", frozenset({"busy", "away", "vacation"}))
    doc = PresenceDocument("e", (Tuple("t", "open"),), person=person)
    assert pidf_to_xmpp(doc)[0].show == "xa"
    person = Person("p", frozenset({"busy", "away"}))
    doc = PresenceDocument("e", (Tuple("t", "open"),), person=person)
    assert pidf_to_xmpp(doc)[0].show == "away"


def test_show_round_trips_through_pidf_for_every_value() -> None:
    for show in SHOW_ACTIVITIES:
        presence = XmppPresence("r", show=show)
        body = build_pidf(xmpp_to_pidf(ENTITY, [presence]))
        assert pidf_to_xmpp(parse_pidf(body)) == [presence]


# --- RFC 3922 §6.3.2: zero tuples ---


def test_zero_tuple_with_person_maps_to_bare_presence() -> None:
    doc = PresenceDocument("e", person=Person("p", frozenset({"away"})), notes=(Note("n"),))
    assert pidf_to_xmpp(doc) == [XmppPresence(None, True, "away", (("n", None),))]


def test_zero_tuple_permanent_absence_is_unavailable() -> None:
    doc = PresenceDocument("e", person=Person("p", frozenset({"permanent-absence"})))
    assert pidf_to_xmpp(doc) == [XmppPresence(None, available=False)]


def test_zero_tuple_notes_only_is_not_mapped() -> None:
    assert pidf_to_xmpp(PresenceDocument("e", notes=(Note("only a note"),))) == []


def test_empty_document_and_empty_notify_are_unknown() -> None:
    """R8048-04: NOTIFY without body -> unknown/closed."""
    assert pidf_to_xmpp(PresenceDocument("e")) == [unknown_presence()]
    assert unknown_presence() == XmppPresence(None, available=False)


# --- XmppPresence validation ---


@pytest.mark.parametrize(
    "kwargs",
    [
        {"priority": 128},
        {"priority": -129},
        {"show": "busy"},
        {"show": "away", "available": False},
        {"resource": ""},
    ],
)
def test_presence_validates(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        XmppPresence(**kwargs)  # type: ignore[arg-type]


# --- property: XMPP -> PIDF -> wire -> PIDF -> XMPP preserves what Table 1/2 carry ---

_status_text = (
    st.text(
        alphabet=st.characters(
            blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"
        ),
        min_size=1,
        max_size=10,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def _presences(draw: st.DrawFn) -> XmppPresence:
    available = draw(st.booleans())
    return XmppPresence(
        resource=draw(st.one_of(st.none(), st.text(min_size=1, max_size=12))),
        available=available,
        show=draw(st.sampled_from([None, "away", "chat", "dnd", "xa"])) if available else None,
        statuses=tuple(
            draw(st.lists(st.tuples(_status_text, st.sampled_from(["en", "cs"])), max_size=2))
        ),
        priority=draw(st.integers(0, 127)),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(_presences(), min_size=1, max_size=4, unique_by=lambda p: p.resource))
def test_xmpp_pidf_round_trip_property(presences: list[XmppPresence]) -> None:
    back = pidf_to_xmpp(parse_pidf(build_pidf(xmpp_to_pidf(ENTITY, presences))))
    assert back == presences

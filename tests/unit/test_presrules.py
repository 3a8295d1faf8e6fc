"""mappings.presrules: RFC 5025 pres-rules over RFC 4745 common policy, and decide()."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.presrules import (
    CP_NS,
    MEDIA_TYPE,
    Conditions,
    Except,
    Many,
    One,
    PresRulesError,
    Rule,
    Ruleset,
    build_pres_rules,
    decide,
    identity_key,
    parse_pres_rules,
)
from mappings.xmlsafe import FormatError
from tests.unit.listdocs_support import assert_valid, hostile, vector

EXAMPLE = vector("rfc5025-s6-pres-rules.xml")
CP_EXAMPLE = vector("rfc4745-s12-common-policy.xml")


def test_media_type() -> None:
    assert MEDIA_TYPE == "application/auth-policy+xml"  # RFC 5025 §10.1 / RFC 4745 §15


def test_rfc5025_example() -> None:
    assert_valid("pres-rules", EXAMPLE)
    doc = parse_pres_rules(EXAMPLE)
    assert doc == Ruleset(
        (Rule("a", Conditions(identity=(One("sip:user@example.com"),)), "allow"),)
    )
    assert decide("sip:user@example.com", doc) == "allow"
    assert decide("sip:USER@example.com", doc) == "block"  # the user part is case-sensitive
    assert decide("sip:user@EXAMPLE.com;transport=tcp", doc) == "allow"
    assert decide("sips:user@example.com", doc) == "allow"
    assert decide("sip:other@example.com", doc) == "block"
    built = build_pres_rules(doc)
    assert_valid("pres-rules", built)
    assert parse_pres_rules(built) == doc


def test_rfc4745_example_validity_and_sphere() -> None:
    assert_valid("common-policy", CP_EXAMPLE)
    doc = parse_pres_rules(CP_EXAMPLE)
    (rule,) = doc.rules
    cet = timezone(timedelta(hours=1))
    assert rule.conditions == Conditions(
        identity=(One("sip:bob@example.com"),),
        sphere="work",
        validity=(
            (datetime(2003, 12, 24, 17, tzinfo=cet), datetime(2003, 12, 24, 19, tzinfo=cet)),
        ),
    )
    assert rule.sub_handling is None  # <actions/> grants nothing
    assert decide("sip:bob@example.com", doc) == "block"
    # The same conditions with an action: time and sphere decide.
    allow = Ruleset((Rule("r", rule.conditions, "allow"),))
    inside = datetime(2003, 12, 24, 16, 30, tzinfo=UTC)
    assert decide("sip:bob@example.com", allow, now=inside, spheres=["Work"]) == "allow"
    assert decide("sip:bob@example.com", allow, now=inside, spheres=["home"]) == "block"
    assert decide("sip:bob@example.com", allow, spheres=["work"]) == "block"  # no time
    late = datetime(2003, 12, 24, 18, tzinfo=UTC)  # = 19:00+01:00, until is exclusive
    assert decide("sip:bob@example.com", allow, now=late, spheres=["work"]) == "block"
    assert_valid("pres-rules", build_pres_rules(allow))
    assert parse_pres_rules(build_pres_rules(allow)) == allow


def test_sphere_tokens_are_ored() -> None:
    rules = Ruleset((Rule("r", Conditions(sphere="home work"), "allow"),))
    assert decide("sip:a@b", rules, spheres=["WORK"]) == "allow"
    assert decide("sip:a@b", rules, spheres=["gym"]) == "block"


def test_many_and_except() -> None:
    rules = Ruleset(
        (
            Rule(
                "company",
                Conditions(
                    identity=(
                        Many(
                            "example.com", (Except(id="sip:alice@example.com"), Except(domain="x"))
                        ),
                    )
                ),
                "allow",
            ),
            Rule(
                "anyone",
                Conditions(identity=(Many(None, (Except(domain="evil.example"),)),)),
                "confirm",
            ),
        )
    )
    assert decide("sip:bob@example.com", rules) == "allow"
    assert decide("sip:bob@Example.COM:5060", rules) == "allow"
    assert decide("sip:alice@example.com", rules) == "confirm"  # excepted from the first
    assert decide("xmpp:juliet@xmpp.example", rules) == "confirm"
    assert decide("sip:mallory@evil.example", rules) == "block"
    assert_valid("pres-rules", build_pres_rules(rules))
    assert parse_pres_rules(build_pres_rules(rules)) == rules


def test_combining_takes_the_maximum() -> None:
    # RFC 5025 §3.2.1 "NOTE WELL": block does not guarantee a refusal.
    values = ["block", "confirm", "polite-block", "allow"]
    for i, low in enumerate(values):
        for high in values[i:]:
            rules = Ruleset(
                (Rule("a", Conditions(), high), Rule("b", Conditions(), low))  # type: ignore[arg-type]
            )
            assert decide("sip:x@y", rules) == high


def test_no_rule_is_block() -> None:
    assert decide("sip:x@y", Ruleset()) == "block"
    assert decide("sip:x@y", Ruleset((Rule("n", Conditions()),))) == "block"


def test_unknown_conditions_are_false() -> None:
    body = (
        b'<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy"'
        b' xmlns:pr="urn:ietf:params:xml:ns:pres-rules" xmlns:v="urn:vendor">'
        # An unknown condition: the rule never applies (RFC 4745 §7).
        b'<cp:rule id="a"><cp:conditions><v:location/></cp:conditions>'
        b"<cp:actions><pr:sub-handling>allow</pr:sub-handling></cp:actions></cp:rule>"
        # An unknown identity child is FALSE inside the OR; <one> still matches.
        b'<cp:rule id="b"><cp:conditions><cp:identity><v:group/><cp:one id="sip:x@y"/>'
        b"</cp:identity></cp:conditions>"
        b"<cp:actions><pr:sub-handling>polite-block</pr:sub-handling><v:other/></cp:actions>"
        b"<cp:transformations><pr:provide-persons><pr:all-persons/></pr:provide-persons>"
        b"</cp:transformations></cp:rule>"
        # Only unknown identity children: nothing matches.
        b'<cp:rule id="c"><cp:conditions><cp:identity><v:group/></cp:identity></cp:conditions>'
        b"<cp:actions><pr:sub-handling>confirm</pr:sub-handling></cp:actions></cp:rule>"
        b"</cp:ruleset>"
    )
    doc = parse_pres_rules(body)
    assert doc.rules[0].conditions.unsupported
    assert doc.rules[2].conditions.identity == ()
    assert decide("sip:x@y", doc) == "polite-block"
    assert decide("sip:z@y", doc) == "block"
    with pytest.raises(PresRulesError):  # what cannot be modelled is not written
        build_pres_rules(doc)


def test_identity_key() -> None:
    assert identity_key("<SIP:bob@Example.COM;transport=udp>") == "sip:bob@example.com"
    assert identity_key("sips:bob@example.com?subject=x") == "sip:bob@example.com"
    assert identity_key("tel:+15551234") == "tel:+15551234"
    assert identity_key("xmpp:juliet@XMPP.example/balcony") == "xmpp:juliet@xmpp.example"


@pytest.mark.parametrize(
    "body",
    [
        b'<ruleset xmlns="urn:x"/>',
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule/></ruleset>',
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="1a"/></ruleset>',
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a"/><rule id="a"/>'
        b"</ruleset>",
        b'<cp:ruleset xmlns:cp="urn:ietf:params:xml:ns:common-policy"'
        b' xmlns:pr="urn:ietf:params:xml:ns:pres-rules"><cp:rule id="a"><cp:actions>'
        b"<pr:sub-handling>maybe</pr:sub-handling></cp:actions></cp:rule></cp:ruleset>",
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a"><conditions>'
        b"<identity><one/></identity></conditions></rule></ruleset>",
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a"><conditions>'
        b"<validity><from>2003-12-24T17:00:00Z</from></validity></conditions></rule></ruleset>",
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a"><conditions>'
        b"<validity><from>yesterday</from><until>2003-12-24T17:00:00Z</until></validity>"
        b"</conditions></rule></ruleset>",
        b'<ruleset xmlns="urn:ietf:params:xml:ns:common-policy"><rule id="a"><conditions>'
        b"<sphere/></conditions></rule></ruleset>",
    ],
)
def test_malformed_is_400(body: bytes) -> None:
    with pytest.raises(PresRulesError) as info:
        parse_pres_rules(body)
    assert info.value.sip_status == 400


@pytest.mark.parametrize("kind", sorted(hostile(b"ruleset", CP_NS)))
def test_hostile_xml_gets_a_defined_error(kind: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_pres_rules(hostile(b"ruleset", CP_NS)[kind])
    assert info.value.sip_status == (413 if kind == "huge" else 400)


# ------------------------------------------------------------------ properties

_token = st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True)
_domain = st.sampled_from(["example.com", "other.example", "xmpp.example"])
_uri = st.builds(lambda u, d: f"sip:{u}@{d}", _token, _domain)
_identity = st.lists(
    st.builds(One, _uri)
    | st.builds(
        Many,
        st.none() | _domain,
        st.lists(st.builds(Except, st.none() | _domain, st.none() | _uri), max_size=2).map(tuple),
    ),
    min_size=1,
    max_size=3,
).map(tuple)
_moment = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
_conditions = st.builds(
    Conditions,
    st.none() | _identity,
    st.none() | st.sampled_from(["work", "home work"]),
    st.lists(st.tuples(_moment, _moment), max_size=2).map(tuple),
)


@st.composite
def _rulesets(draw: st.DrawFn) -> Ruleset:
    n = draw(st.integers(0, 4))
    return Ruleset(
        tuple(
            Rule(
                f"r{i}",
                draw(_conditions),
                draw(st.none() | st.sampled_from(["block", "confirm", "polite-block", "allow"])),
            )
            for i in range(n)
        )
    )


@settings(max_examples=150, deadline=None)
@given(_rulesets(), _uri, _moment)
def test_round_trip_schema_and_decision_property(doc: Ruleset, watcher: str, now: datetime) -> None:
    body = build_pres_rules(doc)
    assert_valid("pres-rules", body)
    parsed = parse_pres_rules(body)
    assert parsed == doc
    # The decision survives the wire, and never exceeds the best action in the document.
    decision = decide(watcher, parsed, now=now, spheres=["work"])
    assert decision == decide(watcher, doc, now=now, spheres=["work"])
    order = ["block", "confirm", "polite-block", "allow"]
    best = max((order.index(r.sub_handling) for r in doc.rules if r.sub_handling), default=0)
    assert order.index(decision) <= best

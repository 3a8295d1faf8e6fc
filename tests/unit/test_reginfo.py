"""mappings.reginfo: RFC 3680 registration state documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.reginfo import (
    MEDIA_TYPE,
    NS,
    Contact,
    RegInfo,
    ReginfoError,
    Registration,
    build_reginfo,
    parse_reginfo,
)
from mappings.xmlsafe import FormatError
from tests.unit.listdocs_support import assert_valid, hostile, vector


def test_media_type() -> None:
    assert MEDIA_TYPE == "application/reginfo+xml"  # RFC 3680 §4.3


def test_rfc3680_example() -> None:
    body = vector("rfc3680-s5.3-reginfo.xml")
    assert_valid("reginfo", body)
    doc = parse_reginfo(body)
    assert doc.version == 0 and doc.state == "full"
    (reg,) = doc.registrations
    assert (reg.aor, reg.id, reg.state) == ("sip:user@example.com", "as9", "active")
    assert reg.contacts == (
        Contact(
            "76",
            "active",
            "registered",
            "sip:user@pc887.example.com",
            duration_registered=7322,
            q="0.8",
        ),
        Contact(
            "77",
            "terminated",
            "expired",
            "sip:user@university.edu",
            duration_registered=3600,
            q="0.5",
        ),
    )
    built = build_reginfo(doc)
    assert_valid("reginfo", built)
    assert parse_reginfo(built) == doc


def test_rfc3680_call_flow_documents() -> None:
    init = parse_reginfo(vector("rfc3680-s6-reginfo-init.xml"))
    assert init == RegInfo(0, "full", (Registration("sip:joe@example.com", "a7", "init"),))
    partial = parse_reginfo(vector("rfc3680-s6-reginfo-partial.xml"))
    assert partial.version == 1 and partial.state == "partial"
    assert partial.registrations[0].contacts == (
        Contact("76", "active", "registered", "sip:joe@pc34.example.com", duration_registered=0),
    )
    for doc in (init, partial):
        assert_valid("reginfo", build_reginfo(doc))


def test_all_attributes_and_other_namespaces() -> None:
    doc = RegInfo(
        5,
        "partial",
        (
            Registration(
                "sip:alice@gw.example",
                "r1",
                "terminated",
                (
                    Contact(
                        "c1",
                        "terminated",
                        "rejected",
                        "sip:alice@192.0.2.4:5070;transport=tcp",
                        expires=0,
                        duration_registered=12,
                        retry_after=30,
                        q="1.0",
                        callid="abc@host",
                        cseq=42,
                        display_name="Alice's phone",
                        display_lang="en",
                    ),
                ),
            ),
        ),
    )
    body = build_reginfo(doc)
    assert_valid("reginfo", body)
    assert parse_reginfo(body) == doc
    extended = body.replace(b"<uri>", b'<x:e xmlns:x="urn:x"/><uri>').replace(
        b'id="c1"', b'id="c1" xmlns:y="urn:y" y:z="1"'
    )
    assert parse_reginfo(extended) == doc


@pytest.mark.parametrize(
    "body",
    [
        b'<reginfo xmlns="urn:x" version="0" state="full"/>',
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>',
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="x" state="full"/>',
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="some"/>',
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
        b'<registration aor="sip:a@b" id="1" state="gone"/></reginfo>',
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
        b'<registration aor="sip:a@b" id="1" state="active">'
        b'<contact id="c" state="active" event="registered"/></registration></reginfo>',
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
        b'<registration aor="sip:a@b" id="1" state="active">'
        b'<contact id="c" state="active" event="hello"><uri>sip:c@d</uri></contact>'
        b"</registration></reginfo>",
        b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
        b'<registration aor="sip:a@b" id="1" state="active">'
        b'<contact id="c" state="active" event="created" expires="-1"><uri>sip:c@d</uri>'
        b"</contact></registration></reginfo>",
    ],
)
def test_malformed_is_400(body: bytes) -> None:
    with pytest.raises(ReginfoError) as info:
        parse_reginfo(body)
    assert info.value.sip_status == 400


@pytest.mark.parametrize("kind", sorted(hostile(b"reginfo", NS)))
def test_hostile_xml_gets_a_defined_error(kind: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_reginfo(hostile(b"reginfo", NS)[kind])
    assert info.value.sip_status == (413 if kind == "huge" else 400)


def test_invalid_models_cannot_be_built() -> None:
    for make in (
        lambda: Contact("", "active", "created", "sip:a@b"),
        lambda: Contact("c", "pending", "created", "sip:a@b"),  # type: ignore[arg-type]
        lambda: Contact("c", "active", "born", "sip:a@b"),  # type: ignore[arg-type]
        lambda: Contact("c", "active", "created", ""),
        lambda: Contact("c", "active", "created", "sip:a@b", expires=2**64),
        lambda: Registration("sip:a@b", "r", "pending"),  # type: ignore[arg-type]
        lambda: Registration("", "r", "init"),
        lambda: RegInfo(-1, "full"),
        lambda: Contact("c", "active", "created", "sip:a@b", display_lang="en"),
    ):
        with pytest.raises(ReginfoError):
            make()


_token = st.from_regex(r"[A-Za-z0-9._-]{1,8}", fullmatch=True)
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=8)
_unsigned = st.none() | st.integers(0, 2**64 - 1)
_contact = st.builds(
    Contact,
    _token,
    st.sampled_from(["active", "terminated"]),
    st.sampled_from(
        ["registered", "created", "refreshed", "shortened", "expired", "deactivated",
         "probation", "unregistered", "rejected"]
    ),
    st.builds(lambda u: f"sip:{u}@host.example", _token),
    expires=_unsigned,
    duration_registered=_unsigned,
    retry_after=_unsigned,
    q=st.none() | st.sampled_from(["0", "0.5", "1.0"]),
    callid=st.none() | _token,
    cseq=_unsigned,
    display_name=_text,
    display_lang=st.none() | st.just("en"),
) | st.builds(
    Contact,
    _token,
    st.just("active"),
    st.just("created"),
    st.builds(lambda u: f"sip:{u}@host.example", _token),
)  # fmt: skip
_doc = st.builds(
    RegInfo,
    st.integers(0, 2**40),
    st.sampled_from(["full", "partial"]),
    st.lists(
        st.builds(
            Registration,
            st.builds(lambda u: f"sip:{u}@example.com", _token),
            _token,
            st.sampled_from(["init", "active", "terminated"]),
            st.lists(_contact, max_size=3).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=150, deadline=None)
@given(_doc)
def test_round_trip_and_schema_property(doc: RegInfo) -> None:
    body = build_reginfo(doc)
    assert_valid("reginfo", body)
    assert parse_reginfo(body) == doc

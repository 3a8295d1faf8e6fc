"""mappings.rlmi: RFC 4662 RLMI documents and the multipart/related list body (RFC 2387)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.pidf import PresenceDocument, Tuple, build_pidf, parse_pidf
from mappings.rlmi import (
    MEDIA_TYPE,
    NS,
    BodyPart,
    Instance,
    Name,
    Resource,
    RlmiError,
    RlmiList,
    UnknownCid,
    build_list_body,
    build_rlmi,
    parse_list_body,
    parse_rlmi,
)
from mappings.xmlsafe import FormatError, XmlRejected
from tests.unit.listdocs_support import assert_valid, hostile, vector

EXAMPLE = vector("rfc4662-s5.1-rlmi.xml")
# RFC 4662 §6 message 3, the body as printed (LF line ends, as extracted from the text).
NOTIFY_BODY = vector("rfc4662-s6-notify-body.txt")
# Its Content-Type header, unfolded (the SIP parser unfolds header lines).
NOTIFY_TYPE = (
    'multipart/related;type="application/rlmi+xml";'
    ' start="<nXYxAE@pres.vancouver.example.com>"; boundary="50UBfW7LSCVLtggUPe5z"'
)
# Erratum in the §6 example (not in DIGEST): `uri="sip:bob@vancouver.example.com""` has a
# stray quote, which makes the RLMI part malformed XML. Applied here, noted in
# tests/vectors/lists/README.md.
NOTIFY_FIXED = NOTIFY_BODY.replace(b'example.com"">', b'example.com">')
BOUNDARY = "50UBfW7LSCVLtggUPe5z"


def _crlf(body: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_media_type() -> None:
    assert MEDIA_TYPE == "application/rlmi+xml"  # RFC 4662 §7.2


def test_rfc4662_rlmi_example() -> None:
    assert_valid("rlmi", EXAMPLE)
    doc = parse_rlmi(EXAMPLE)
    assert doc.uri == "sip:adam-friends@lists.vancouver.example.com"
    assert doc.version == 7 and doc.full_state is True and doc.cid is None
    assert doc.names == (Name("Buddy List", "en"), Name("Liste d'amis", "fr"))
    bob, dave, jim, ed = doc.resources
    assert bob == Resource(
        "sip:bob@vancouver.example.com",
        (Name("Bob Smith"),),
        (Instance("juwigmtboe", "active", cid="12345.aaa@vancouver.example.com"),),
    )
    assert dave.instances[0].cid == "12345.aab@vancouver.example.com"
    assert jim.instances == (Instance("oflzxqzuvg", "terminated", reason="rejected"),)
    assert ed.instances == (Instance("grqhzsppxb", "pending"),)
    built = build_rlmi(doc)
    assert_valid("rlmi", built)
    assert parse_rlmi(built) == doc


def test_rfc4662_notify_body_as_printed_is_rejected() -> None:
    with pytest.raises(XmlRejected) as info:
        parse_list_body(NOTIFY_TYPE, _crlf(NOTIFY_BODY))
    assert info.value.sip_status == 400


@pytest.mark.parametrize("line_ends", [_crlf, lambda b: b], ids=["crlf", "bare-lf"])
def test_rfc4662_notify_body(line_ends: object) -> None:
    assert callable(line_ends)
    got = parse_list_body(NOTIFY_TYPE, line_ends(NOTIFY_FIXED))
    assert got.rlmi.version == 1 and got.rlmi.full_state
    assert [r.uri for r in got.rlmi.resources] == [
        "sip:bob@vancouver.example.com",
        "sip:dave@vancouver.example.com",
        "sip:ed@dallas.example.net",
        "sip:adam-friends@stockholm.example.org",
    ]
    assert got.rlmi.resources[3].names[1] == Name("Meine Freunde an ORG", "de")
    assert set(got.parts) == {
        "bUZBsM@pres.vancouver.example.com",
        "ZvSvkz@pres.vancouver.example.com",
    }
    bob = got.parts["bUZBsM@pres.vancouver.example.com"]
    assert bob.content_type == 'application/pidf+xml;charset="UTF-8"'
    pidf = parse_pidf(bob.body)
    assert pidf.entity == "sip:bob@vancouver.example.com" and pidf.tuples[0].basic == "open"
    dave = parse_pidf(got.parts["ZvSvkz@pres.vancouver.example.com"].body)
    assert dave.tuples[0].basic == "closed"


def test_unknown_cid_is_400() -> None:
    body = _crlf(NOTIFY_FIXED).replace(
        b'cid="ZvSvkz@pres.vancouver.example.com"', b'cid="nothere@pres.vancouver.example.com"'
    )
    with pytest.raises(UnknownCid) as info:
        parse_list_body(NOTIFY_TYPE, body)
    assert info.value.sip_status == 400
    with pytest.raises(UnknownCid):  # start names no part
        parse_list_body(NOTIFY_TYPE.replace("nXYxAE", "nXYxAF"), _crlf(NOTIFY_FIXED))


def _pidf(entity: str, basic: str = "open") -> bytes:
    return build_pidf(PresenceDocument(entity, (Tuple("t1", basic),)))  # type: ignore[arg-type]


def _list(*resources: Resource, version: int = 0, full: bool = True) -> RlmiList:
    return RlmiList("sip:alice-buddies@gw.example", version, full, (Name("Buddies"),), resources)


def test_build_list_body_round_trip() -> None:
    rlmi = _list(
        Resource(
            "xmpp:juliet@xmpp.example",
            (Name("Juliet"),),
            (Instance("i1", "active", cid="p1@gw.example"),),
        ),
        Resource("sip:romeo@sip.example", (), (Instance("i2", "pending"),)),
        Resource("sip:gone@sip.example", (), (Instance("i3", "terminated", reason="noresource"),)),
    )
    part = BodyPart("p1@gw.example", "application/pidf+xml", _pidf("xmpp:juliet@xmpp.example"))
    body = build_list_body(rlmi, [part], root_cid="root@gw.example", boundary="b-1")
    assert body.content_type == (
        'multipart/related;type="application/rlmi+xml";start="<root@gw.example>";boundary=b-1'
    )  # a token boundary unquoted (RFC 2045 §5.1; belle-sip keeps quotes, docs/lists.md)
    spaced = build_list_body(rlmi, [part], root_cid="root@gw.example", boundary="b 1:x")
    assert spaced.content_type.endswith(';boundary="b 1:x"')  # tspecials: quoted
    assert parse_list_body(spaced.content_type, spaced.body).rlmi == rlmi
    bare = build_list_body(
        rlmi, [part], root_cid="root@gw.example", boundary="b-1", bare_content_ids=True
    )  # liblinphone's reading (docs/lists.md): no brackets, not for RFC readers
    assert b"\r\nContent-Id: p1@gw.example\r\n" in bare.body
    assert b"Content-ID" not in bare.body and b"<p1@" not in bare.body
    assert body.body.startswith(b"--b-1\r\nContent-Transfer-Encoding: binary\r\n")
    assert body.body.endswith(b"\r\n--b-1--\r\n")
    assert_valid("rlmi", build_rlmi(rlmi))
    got = parse_list_body(body.content_type, body.body)
    assert got.rlmi == rlmi and dict(got.parts) == {"p1@gw.example": part}


def test_build_enforces_rfc4662_musts() -> None:
    with pytest.raises(RlmiError, match="reason"):
        build_rlmi(_list(Resource("sip:a@b", (), (Instance("i", "terminated"),))))
    with pytest.raises(RlmiError, match="cid"):
        build_rlmi(_list(Resource("sip:a@b", (), (Instance("i", "active"),))))
    active = _list(Resource("sip:a@b", (), (Instance("i", "active", cid="c@x"),)))
    part = BodyPart("c@x", "application/pidf+xml", _pidf("sip:a@b"))
    with pytest.raises(UnknownCid):  # a cid without its part
        build_list_body(active, [], root_cid="r@x", boundary="b")
    with pytest.raises(RlmiError, match="not referenced"):
        build_list_body(
            active, [part, BodyPart("d@x", "text/plain", b"")], root_cid="r@x", boundary="b"
        )
    with pytest.raises(RlmiError, match="duplicate"):
        build_list_body(active, [part, part], root_cid="r@x", boundary="b")
    with pytest.raises(RlmiError, match="duplicate"):
        build_list_body(active, [part], root_cid="c@x", boundary="b")
    with pytest.raises(RlmiError, match="boundary occurs"):
        build_list_body(
            active, [BodyPart("c@x", "text/plain", b"x\r\n--b\r\n")], root_cid="r@x", boundary="b"
        )
    for bad in ("", "x" * 71, "ends-in-space ", 'quote"', "new\nline"):
        with pytest.raises(RlmiError, match="boundary"):
            build_list_body(active, [part], root_cid="r@x", boundary=bad)


def test_invalid_models_cannot_be_built() -> None:
    for make in (
        lambda: Instance("", "active"),
        lambda: Instance("i", "happy"),  # type: ignore[arg-type]
        lambda: Instance("i", "active", cid="<c@x>"),
        lambda: Resource(" sip:a@b"),
        lambda: RlmiList("sip:l@x", -1, True),
        lambda: RlmiList("sip:l@x", 2**32, True),
        lambda: BodyPart("c@x", "text/plain\r\nX-Evil: 1", b""),
    ):
        with pytest.raises(RlmiError):
            make()


_HEAD = 'multipart/related;type="application/rlmi+xml";start="<r@x>";boundary="b"'


def _body(*parts: bytes, close: bool = True) -> bytes:
    out = b"".join(b"--b\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--b--\r\n" if close else b"")


_RLMI_PART = b"Content-ID: <r@x>\r\nContent-Type: application/rlmi+xml\r\n\r\n" + build_rlmi(
    _list()
)


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (_HEAD, _body(_RLMI_PART, close=False), 400),  # no closing delimiter
        (_HEAD, b"--b--\r\n", 400),  # no parts
        (_HEAD.replace("multipart/related", "multipart/mixed"), _body(_RLMI_PART), 400),
        (_HEAD.replace("application/rlmi+xml", "application/pidf+xml"), _body(_RLMI_PART), 400),
        (_HEAD.replace(';boundary="b"', ""), _body(_RLMI_PART), 400),
        (_HEAD, _body(b"Content-Type: application/rlmi+xml\r\n\r\n<x/>"), 400),  # no cid
        (_HEAD, _body(_RLMI_PART, _RLMI_PART), 400),  # duplicate Content-ID
        (
            _HEAD,
            _body(
                _RLMI_PART.replace(
                    b"Content-Type: application/rlmi+xml", b"Content-Type: text/plain"
                )
            ),
            400,
        ),
        (_HEAD, _body(b"Content-ID: <r@x>\r\nContent-Transfer-Encoding: base64\r\n\r\nAA=="), 400),
        (_HEAD, _body(b"Content-ID <r@x>\r\n\r\nx"), 400),  # malformed header
        ("not a media type", _body(_RLMI_PART), 400),
        (_HEAD, _body(*[_RLMI_PART] * 3000), 413),  # too many parts
        (_HEAD, b"x" * (2 * 1024 * 1024), 413),  # too many bytes
    ],
)
def test_bad_list_bodies(content_type: str, body: bytes, status: int) -> None:
    with pytest.raises(FormatError) as info:
        parse_list_body(content_type, body)
    assert info.value.sip_status == status


def test_minimal_body_parses() -> None:
    got = parse_list_body(_HEAD, _body(_RLMI_PART))
    assert got.rlmi == _list() and dict(got.parts) == {}
    # Without start, the first part is the root (RFC 2387 §3.2); preamble is ignored.
    no_start = _HEAD.replace(';start="<r@x>"', "")
    assert parse_list_body(no_start, b"preamble\r\n" + _body(_RLMI_PART)).rlmi == _list()
    # Everything after the close delimiter is epilogue (RFC 2046 §5.1.1), even delimiters.
    epilogue = _body(_RLMI_PART) + b"--b\r\nContent-ID: <late@x>\r\n\r\nx\r\n--b--\r\n"
    assert dict(parse_list_body(_HEAD, epilogue).parts) == {}


@pytest.mark.parametrize("kind", sorted(hostile(b"list", NS)))
def test_hostile_rlmi_gets_a_defined_error(kind: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_rlmi(hostile(b"list", NS)[kind])
    assert info.value.sip_status == (413 if kind == "huge" else 400)


@pytest.mark.parametrize(
    "body",
    [
        b'<list xmlns="urn:x" uri="sip:a@b" version="0" fullState="true"/>',
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:a@b" fullState="true"/>',
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:a@b" version="-1" fullState="1"/>',
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:a@b" version="0" fullState="yes"/>',
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:a@b" version="0" fullState="0">'
        b'<resource uri="sip:c@d"><instance state="active"/></resource></list>',
        b'<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:a@b" version="0" fullState="0">'
        b'<resource uri="sip:c@d"><instance id="i" state="gone"/></resource></list>',
    ],
)
def test_malformed_rlmi_is_400(body: bytes) -> None:
    with pytest.raises(RlmiError) as info:
        parse_rlmi(body)
    assert info.value.sip_status == 400


# ------------------------------------------------------------------ properties

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), max_size=10)
_token = st.from_regex(r"[A-Za-z0-9._-]{1,10}", fullmatch=True)
_cid = st.builds(lambda a, b: f"{a}@{b}", _token, _token)
_names = st.lists(st.builds(Name, _text, st.none() | st.just("en")), max_size=2).map(tuple)
_instance = st.one_of(
    st.builds(Instance, _token, st.just("active"), st.none(), _cid),
    st.builds(Instance, _token, st.just("pending"), st.none(), st.none() | _cid),
    st.builds(Instance, _token, st.just("terminated"), st.sampled_from(["rejected", "timeout"])),
)
_resources = st.lists(
    st.builds(
        Resource,
        st.builds(lambda t: f"sip:{t}@example.com", _token),
        _names,
        st.lists(_instance, max_size=2).map(tuple),
    ),
    max_size=5,
).map(tuple)
_rlmi = st.builds(
    RlmiList,
    st.just("sip:list@example.com"),
    st.integers(0, 2**32 - 1),
    st.booleans(),
    _names,
    _resources,
    st.none() | _cid,
)


@settings(max_examples=150, deadline=None)
@given(_rlmi)
def test_rlmi_round_trip_and_schema_property(doc: RlmiList) -> None:
    body = build_rlmi(doc)
    assert_valid("rlmi", body)
    assert parse_rlmi(body) == doc


@settings(max_examples=100, deadline=None)
@given(_rlmi, st.binary(max_size=64))
def test_list_body_round_trip_property(doc: RlmiList, payload: bytes) -> None:
    cids = list(dict.fromkeys(doc.cids()))
    if "root@gw" in cids:
        return
    parts = [BodyPart(cid, "application/octet-stream", payload) for cid in cids]
    boundary = "=_gw-boundary_="
    if f"--{boundary}".encode() in payload:
        return
    built = build_list_body(doc, parts, root_cid="root@gw", boundary=boundary)
    got = parse_list_body(built.content_type, built.body)
    assert got.rlmi == doc
    assert dict(got.parts) == {p.content_id: p for p in parts}

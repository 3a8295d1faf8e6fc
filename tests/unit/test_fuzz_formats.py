"""Fuzzing the body formats (issue 12, bounded for CI): message/cpim, PIDF/RPID,
isComposing, IMDN, and XEP-0106 / JID parsing.

Inputs: valid seed documents and documents generated as random XML trees (namespaces of
the formats, nesting, attributes, character and entity references, CDATA, comments,
PIs, DOCTYPEs), then mutated at the byte level and with hostile XML fragments. Every
parser must return a value or raise its module's error (a `FormatError`, which carries
the SIP status and the XMPP condition); consumers downstream of a successful parse
(presence mapping, chat state, XEP-0184 outcome) must not raise either. Hostile XML
(billion laughs, external entities, DTDs, deep nesting, huge attributes) is rejected,
and nothing of an entity's replacement text or an external file ever comes through.

scripts/fuzz_long.py runs the same parsers over 100,000+ bodies (docs/reliability.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings import cpim, imdn, iscomposing, pidf, presence
from mappings.jid import (
    JidError,
    escape_local,
    is_canonical_escape,
    parse_jid,
    unescape_local,
)
from mappings.xmlsafe import FormatError, XmlRejected, XmlTooLarge

T = TypeVar("T")

FUZZ = settings(
    max_examples=500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
ISC_NS = "urn:ietf:params:xml:ns:im-iscomposing"
IMDN_XML_NS = "urn:ietf:params:xml:ns:imdn"

SEED_PIDF = f"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="{PIDF_NS}" xmlns:rp="{RPID_NS}" xmlns:dm="{DM_NS}"
  xmlns:c="jabber:client" entity="pres:romeo@example.com">
 <tuple id="t1"><status><basic>open</basic><c:show>away</c:show></status>
  <contact priority="0.8">sip:romeo@example.com</contact>
  <note xml:lang="en">at the balcony</note><timestamp>2024-02-29T23:59:60Z</timestamp>
 </tuple>
 <dm:person id="p1"><rp:activities><rp:meal/><rp:x mustUnderstand="1"/></rp:activities>
  <dm:note>hungry</dm:note><dm:timestamp>2024-01-01T00:00:00+01:00</dm:timestamp></dm:person>
 <note>top</note>
</presence>""".encode()
SEED_ISC = f"""<?xml version="1.0" encoding="UTF-8"?>
<isComposing xmlns="{ISC_NS}"><state>active</state><contenttype>text/plain</contenttype>
<lastactive>2024-01-01T00:00:00Z</lastactive><refresh>90</refresh></isComposing>""".encode()
SEED_IMDN = f"""<?xml version="1.0" encoding="UTF-8"?>
<imdn xmlns="{IMDN_XML_NS}"><message-id>34jk324j</message-id>
<datetime>2008-04-04T12:16:49-05:00</datetime><recipient-uri>im:bob@example.com</recipient-uri>
<original-recipient-uri>im:bob@example.com</original-recipient-uri><subject>hi</subject>
<delivery-notification><status><failed/></status></delivery-notification></imdn>""".encode()
SEED_CPIM = (
    b"From: MR SANDERS <im:piglet@100akerwood.com>\r\n"
    b"To: Depressed Donkey <im:eeyore@100akerwood.com>\r\n"
    b"DateTime: 2000-12-13T13:40:00-08:00\r\n"
    b"Subject: the weather will be fine today\r\n"
    b"Subject:;lang=fr beau temps prevu pour aujourd'hui\r\n"
    b"NS: MyFeatures <mid:MessageFeatures@id.foo.com>\r\n"
    b"Require: MyFeatures.VitalMessageOption\r\n"
    b"MyFeatures.VitalMessageOption: Confirmation-requested\r\n"
    b"MyFeatures.WackyMessageOption: Use-silly-font\r\n"
    b"NS: imdn <urn:ietf:params:imdn>\r\n"
    b"imdn.Message-ID: 34jk324j\r\n"
    b"imdn.Disposition-Notification: positive-delivery, display\r\n"
    b"\r\n"
    b"Content-Type: text/xml; charset=utf-8\r\n"
    b"Content-ID: <1234567890@foo.com>\r\n"
    b"\r\n"
    b"<body>Here is the text of my message.</body>"
)
SEED_CPIM_IMDN = (
    b"From: <im:bob@example.com>\r\nTo: <im:alice@example.com>\r\n"
    b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: d834jied93rf\r\n\r\n"
    b"Content-type: message/imdn+xml\r\nContent-Disposition: notification\r\n\r\n" + SEED_IMDN
)

# -- hostile XML -----------------------------------------------------------------------------

SECRET = "ROOT-SECRET-7f3a"  # what a resolved entity would leak into a parsed value


def _laughs(ns: str, root: str) -> bytes:
    entities = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
        for i in range(1, 10)
    )
    doctype = f'<?xml version="1.0"?><!DOCTYPE {root} [{entities}]>'
    return f'{doctype}<{root} xmlns="{ns}">&lol9;</{root}>'.encode()


def hostile_documents(ns: str, root: str, inner: str) -> dict[str, bytes]:
    """Named hostile variants of a document `<root xmlns=ns>inner</root>`."""
    open_tag = f'<{root} xmlns="{ns}">'
    close = f"</{root}>"
    deep = "<a>" * 5000 + "x" + "</a>" * 5000
    return {
        "billion-laughs": _laughs(ns, root),
        "quadratic-blowup": (
            f'<!DOCTYPE {root} [<!ENTITY a "{"x" * 2000}">]>{open_tag}{"&a;" * 2000}{close}'
        ).encode(),
        "external-entity": (
            f'<!DOCTYPE {root} [<!ENTITY e SYSTEM "file:///etc/hostname">]>{open_tag}&e;{close}'
        ).encode(),
        "external-entity-net": (
            f'<!DOCTYPE {root} [<!ENTITY e SYSTEM "http://192.0.2.1/x">]>{open_tag}&e;{close}'
        ).encode(),
        "parameter-entity": (
            f'<!DOCTYPE {root} [<!ENTITY % p SYSTEM "http://192.0.2.1/dtd"> %p;]>'
            f"{open_tag}{inner}{close}"
        ).encode(),
        "external-dtd": (
            f'<!DOCTYPE {root} SYSTEM "http://192.0.2.1/x.dtd">{open_tag}{inner}{close}'
        ).encode(),
        "internal-entity-secret": (
            f'<!DOCTYPE {root} [<!ENTITY s "{SECRET}">]>{open_tag}&s;{inner}{close}'
        ).encode(),
        "doctype-after-bom": b"\xef\xbb\xbf"
        + f"<!DOCTYPE {root}>{open_tag}{inner}{close}".encode(),
        "utf16-doctype": f'<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE {root}>'
        f"{open_tag}{inner}{close}".encode("utf-16"),
        "encoding-lie": b'<?xml version="1.0" encoding="ISO-8859-1"?>'
        + f"{open_tag}{inner}{close}".encode(),
        "deep-nesting": f"{open_tag}{deep}{inner}{close}".encode(),
        "huge-attribute": f'{open_tag}<x a="{"A" * 60000}"/>{inner}{close}'.encode(),
        "long-attribute": f'{open_tag}<x a="{"A" * 5000}"/>{inner}{close}'.encode(),
        "many-elements": f"{open_tag}{'<x/>' * 3000}{inner}{close}".encode(),
        "oversized": f"{open_tag}{'x' * 70000}{inner}{close}".encode(),
        "undefined-entity": f"{open_tag}&undefined;{inner}{close}".encode(),
        "bad-char-ref": f"{open_tag}&#0;&#x110000;{inner}{close}".encode(),
        "unclosed": f"{open_tag}{inner}".encode(),
    }


FORMATS: dict[str, tuple[Callable[[bytes], object], str, str, str]] = {
    "pidf": (pidf.parse_pidf, PIDF_NS, "presence", '<tuple id="t"><status/></tuple>'),
    "iscomposing": (iscomposing.parse_iscomposing, ISC_NS, "isComposing", "<state>active</state>"),
    "imdn": (
        imdn.parse_imdn,
        IMDN_XML_NS,
        "imdn",
        "<message-id>m</message-id><delivery-notification/>",
    ),
}


def inert_documents(ns: str, root: str, inner: str) -> dict[str, bytes]:
    """Hostile-looking documents that parse as if the extra element were absent: XInclude
    is never processed, attributes of unknown elements are never read (64 KiB bound)."""
    open_tag = f'<{root} xmlns="{ns}">'
    return {
        "xinclude": (
            f'{open_tag}<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" '
            f'href="file:///etc/hostname" parse="text"/>{inner}</{root}>'
        ).encode(),
        "many-attributes": (
            open_tag + "<x " + " ".join(f'a{i}="1"' for i in range(5000)) + f"/>{inner}</{root}>"
        ).encode(),
    }


HOSTILE = [
    (fmt, name, doc)
    for fmt, (_, ns, root, inner) in FORMATS.items()
    for name, doc in hostile_documents(ns, root, inner).items()
]


@pytest.mark.parametrize(("fmt", "name", "doc"), HOSTILE, ids=[f"{f}-{n}" for f, n, _ in HOSTILE])
def test_hostile_xml_is_rejected(fmt: str, name: str, doc: bytes) -> None:
    parse = FORMATS[fmt][0]
    with pytest.raises(FormatError) as info:
        parse(doc)
    assert isinstance(info.value, XmlRejected)
    expected = 413 if len(doc) > 64 * 1024 else 400
    assert info.value.sip_status == expected
    assert isinstance(info.value, XmlTooLarge) == (expected == 413)


INERT = [
    (fmt, name, doc)
    for fmt, (_, ns, root, inner) in FORMATS.items()
    for name, doc in inert_documents(ns, root, inner).items()
]


@pytest.mark.parametrize(("fmt", "name", "doc"), INERT, ids=[f"{f}-{n}" for f, n, _ in INERT])
def test_inert_constructs_change_nothing(fmt: str, name: str, doc: bytes) -> None:
    parse, ns, root, inner = FORMATS[fmt]
    assert parse(doc) == parse(f'<{root} xmlns="{ns}">{inner}</{root}>'.encode())


def test_no_entity_text_in_any_value() -> None:
    """Even a document that parsed would not carry the entity's text: it is refused first."""
    for fmt, (parse, ns, root, inner) in FORMATS.items():
        doc = hostile_documents(ns, root, inner)["internal-entity-secret"]
        with contextlib.suppress(FormatError):
            assert SECRET not in repr(parse(doc)), fmt


# -- generated XML ---------------------------------------------------------------------------

NAMESPACES = [PIDF_NS, RPID_NS, DM_NS, ISC_NS, IMDN_XML_NS, "jabber:client", "urn:x", ""]
LOCAL_NAMES = [
    "presence", "tuple", "status", "basic", "contact", "note", "timestamp", "person",
    "activities", "away", "show", "im", "isComposing", "state", "lastactive", "refresh",
    "contenttype", "imdn", "message-id", "datetime", "delivery-notification",
    "display-notification", "processing-notification", "delivered", "failed", "forbidden",
    "error", "displayed", "processed", "stored", "recipient-uri", "subject", "x",
]  # fmt: skip
TEXTS = [
    "open", "closed", "active", "idle", "away", "xa", "dnd", "chat", "0.5", "1.0", "1.5",
    "-1", "0", "90", "9" * 20, "9" * 5000, "2024-02-30T00:00:00Z", "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:60+23:59", "2024-01-01T00:00:00+24:00", "sip:a@b", "\u202e", "é",
    " ", "",
]  # fmt: skip
ATTRS = [("id", "t1"), ("id", ""), ("entity", "pres:a@b"), ("priority", "0.5"),
         ("priority", "NaN"), ("priority", "1e999"), ("mustUnderstand", "1"),
         ("xml:lang", "en"), ("xml:lang", ""), ("xmlns", ""), ("xmlns:p", "urn:x")]  # fmt: skip
REFS = ["&amp;", "&lt;", "&#65;", "&#x1F600;", "<![CDATA[<x>]]>", "<!-- c -->", "<?pi x?>"]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


elements: st.SearchStrategy[str] = st.deferred(
    lambda: st.builds(
        _element,
        st.sampled_from(NAMESPACES),
        st.sampled_from(LOCAL_NAMES),
        st.lists(st.sampled_from(ATTRS), max_size=3, unique_by=lambda a: a[0]),
        st.lists(
            st.one_of(st.sampled_from(TEXTS).map(_escape), st.sampled_from(REFS), elements),
            max_size=4,
        ),
    )
)


def _element(ns: str, local: str, attrs: list[tuple[str, str]], children: list[str]) -> str:
    attr_text = "".join(f' {k}="{_escape(v)}"' for k, v in attrs if k != "xmlns")
    return f'<{local} xmlns="{ns}"{attr_text}>{"".join(children)}</{local}>'


# Children each format needs to get past its first checks, so generated documents reach
# the deeper code (status values, timestamps, priorities, notification kinds).
REQUIRED = {
    "presence": [
        '<tuple id="t1"><status><basic>open</basic></status><contact>sip:a@b</contact></tuple>',
        '<tuple id="t2"><status><basic>closed</basic></status><note>n</note></tuple>',
        f'<person xmlns="{DM_NS}" id="p"><activities xmlns="{RPID_NS}"><away/></activities>'
        "</person>",
    ],
    "isComposing": ["<state>active</state>", "<refresh>60</refresh>"],
    "imdn": [
        "<message-id>m1</message-id>",
        "<delivery-notification><status><delivered/></status></delivery-notification>",
        "<display-notification><status><displayed/></status></display-notification>",
        "<processing-notification><status><stored/></status></processing-notification>",
    ],
}


@st.composite
def documents(draw: st.DrawFn, ns: str, root: str) -> bytes:
    decl = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', "\ufeff"]))
    required = draw(st.lists(st.sampled_from(REQUIRED[root]), max_size=3))
    children = required + draw(st.lists(elements, max_size=4))
    root_attrs = st.lists(st.sampled_from(ATTRS[:-2]), max_size=3, unique_by=lambda a: a[0])
    attrs = "".join(f' {k}="{_escape(v)}"' for k, v in draw(root_attrs))
    return f'{decl}<{root} xmlns="{ns}"{attrs}>{"".join(children)}</{root}>'.encode()


HOSTILE_FRAGMENTS = [
    b"<!DOCTYPE x>", b'<!ENTITY e "x">', b"&e;", b"<", b">", b"&", b"]]>", b"<![CDATA[",
    b"<!--", b"-->", b"<?", b"?>", b'"', b"'", b"\x00", b"\xff\xfe", b"\xc3", b"\xed\xa0\x80",
    b"xmlns=''", b'xmlns:xml="urn:bad"', b"<a:b>", b"</", b"<x>" * 40, b"\r\n",
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "insert", "delete", "truncate"]))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0x20, 0x7E) | st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(HOSTILE_FRAGMENTS))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 12))]
        else:
            del data[pos:]
    return bytes(data)


def _bodies(seed: bytes, ns: str, root: str) -> st.SearchStrategy[bytes]:
    generated = documents(ns, root)
    return st.one_of(
        generated,
        mutated(st.just(seed)),
        mutated(generated),
        st.binary(max_size=200),
    )


def _only_format_errors(parse: Callable[[bytes], object], data: bytes) -> object | None:
    try:
        return parse(data)
    except FormatError as exc:
        assert 400 <= exc.sip_status < 500 and exc.xmpp_condition
        return None


def _round_trip(build: Callable[[T], bytes], parse: Callable[[bytes], T], doc: T) -> None:
    """What is built from a parsed document parses back to it. The builders only write
    what the schemas allow (an RPID extension activity, an IMDN without DateTime or
    status: ValueError), which the parsers tolerate on input; the gateway never rebuilds
    a parsed document, it maps it (presence.pidf_to_xmpp, imdn.xmpp_outcome)."""
    try:
        wire = build(doc)
    except ValueError as exc:
        assert not isinstance(exc, FormatError)
        return
    assert parse(wire) == doc


@FUZZ
@given(_bodies(SEED_PIDF, PIDF_NS, "presence"))
def test_pidf(data: bytes) -> None:
    doc = _only_format_errors(pidf.parse_pidf, data)
    if isinstance(doc, pidf.PresenceDocument):
        presence.pidf_to_xmpp(doc)  # the consumer of a parsed document
        _round_trip(pidf.build_pidf, pidf.parse_pidf, doc)


@FUZZ
@given(_bodies(SEED_ISC, ISC_NS, "isComposing"))
def test_iscomposing(data: bytes) -> None:
    doc = _only_format_errors(iscomposing.parse_iscomposing, data)
    if isinstance(doc, iscomposing.IsComposing):
        iscomposing.chat_state_for(doc)
        _round_trip(iscomposing.build_iscomposing, iscomposing.parse_iscomposing, doc)


@FUZZ
@given(_bodies(SEED_IMDN, IMDN_XML_NS, "imdn"))
def test_imdn(data: bytes) -> None:
    doc = _only_format_errors(imdn.parse_imdn, data)
    if isinstance(doc, imdn.Imdn):
        imdn.xmpp_outcome(doc, "xmpp-id")
        _round_trip(imdn.build_imdn, imdn.parse_imdn, doc)


# -- message/cpim ----------------------------------------------------------------------------

CPIM_FRAGMENTS = [
    b"\r\n", b"\n", b"\r", b":", b";", b";lang=", b'"', b"\\", b"\\u00", b"<", b">", b" ",
    b"\t", b"NS: ", b"Require: ", b"DateTime: ", b"From: ", b"x.", b"\x00", b"\xff",
    b"\r\n\r\n", b"Content-Type: message/cpim\r\n",
]  # fmt: skip


@st.composite
def cpim_mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from([SEED_CPIM, SEED_CPIM_IMDN])))
    for _ in range(draw(st.integers(1, 5))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]))
        if kind == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0x20, 0x7E) | st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from(CPIM_FRAGMENTS + HOSTILE_FRAGMENTS))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 12))]
        elif kind == "dup":
            start = data.rfind(b"\n", 0, pos) + 1
            end = data.find(b"\n", pos)
            if end > start:
                data[start:start] = data[start : end + 1]
        else:
            del data[pos:]
    return bytes(data)


@FUZZ
@given(st.one_of(cpim_mutated(), st.binary(max_size=200)))
def test_cpim(data: bytes) -> None:
    _only_format_errors(cpim.parse_cpim, data)  # with the Require check (RFC 3862 §3.5)
    msg = _only_format_errors(lambda d: cpim.parse_cpim(d, understood=None), data)
    if not isinstance(msg, cpim.CpimMessage):
        return
    # the accessors the bridge reads must not raise anything but a FormatError
    readers: list[Callable[[cpim.CpimMessage], object]] = [
        lambda m: m.from_,
        lambda m: m.to,
        lambda m: m.cc,
        lambda m: m.datetime,
        lambda m: m.subjects,
        lambda m: m.media_type,
        imdn.read_disposition_request,
        lambda m: imdn.parse_notification(m) if imdn.is_imdn(m) else None,
    ]
    for read in readers:
        with contextlib.suppress(FormatError):
            read(msg)
    assert cpim.parse_cpim(cpim.build_cpim(msg), understood=None) == msg


def test_cpim_seeds_parse() -> None:
    """The seeds are valid, so mutations start from documents that reach deep code."""
    assert cpim.parse_cpim(SEED_CPIM, understood=None).from_ is not None
    note = imdn.parse_notification(cpim.parse_cpim(SEED_CPIM_IMDN))
    assert note.status == "failed"
    assert pidf.parse_pidf(SEED_PIDF).person is not None
    assert iscomposing.parse_iscomposing(SEED_ISC).refresh == 90


# -- XEP-0106 and JIDs -------------------------------------------------------------------------

escapey = st.lists(
    st.one_of(
        st.sampled_from([*" \"&'/:<>@\\", "\\20", "\\5c", "\\3a", "\\2f", "\\41", "\\5C"]),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=20,
).map("".join)


@FUZZ
@given(escapey)
def test_xep0106_unescape_total(text: str) -> None:
    """Unescaping never fails and never grows the text; canonical forms round-trip."""
    out = unescape_local(text)
    assert len(out) <= len(text)
    if is_canonical_escape(text):
        assert escape_local(out) == text


@FUZZ
@given(escapey)
def test_xep0106_escape_round_trip(text: str) -> None:
    try:
        escaped = escape_local(text)
    except JidError:
        return
    assert unescape_local(escaped) == text
    assert is_canonical_escape(escaped)


@FUZZ
@given(st.one_of(escapey, st.from_regex(r"[a-z\\@/.]{0,10}@[a-z.\[\]:0-9]{0,12}(/.{0,8})?")))
def test_parse_jid_total(text: str) -> None:
    try:
        jid = parse_jid(text)
    except JidError:
        return
    assert parse_jid(str(jid)) == jid


# -- regressions found by the fuzzer -----------------------------------------------------------


def test_empty_xml_lang_means_no_language() -> None:
    """XML 1.0 §2.12: xml:lang="" undeclares the language. The parser reported lang=""
    (so a note built back lost it, and the round trip differed)."""
    doc = pidf.parse_pidf(
        f'<presence xmlns="{PIDF_NS}" entity="pres:a@b" xml:lang="en"><tuple id="t">'
        '<status><basic>open</basic></status><note xml:lang="">n</note><note>m</note>'
        "</tuple></presence>".encode()
    )
    assert [n.lang for n in doc.tuples[0].notes] == [None, "en"]


def test_undecodable_sip_header_octets_are_refused_before_xmpp() -> None:
    """Found by the wire fuzzer: a Call-ID with a non-UTF-8 octet became the stanza's
    <thread> as a surrogate escape; slixmpp failed to encode it in its send queue while
    the MESSAGE had been answered 200 (a silent loss). The model now refuses such text,
    and the bridge answers 400 (gateway.bridge.pager.sip_message.from_sip)."""
    from mappings.model import Address, BodyPart, MessageOp, Subject

    bad = b"fz@127.0.\xdd.1".decode("utf-8", "surrogateescape")
    source = Address("romeo", "sip.localhost")
    parts = (BodyPart.plain("hi"),)
    with pytest.raises(ValueError, match="UTF-8"):
        MessageOp(source=source, destination=source, trans_id="t", parts=parts, thread=bad)
    with pytest.raises(ValueError, match="UTF-8"):
        Subject(bad)
    op = MessageOp(source=source, destination=source, trans_id="t", parts=parts, thread="ok@h")
    assert op.thread == "ok@h"

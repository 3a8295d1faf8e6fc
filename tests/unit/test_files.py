"""mappings.files: XEP-0066 OOB URLs <-> RCS FT-HTTP file-info (RCC.07), hostile inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from mappings import files
from mappings.xmlsafe import XmlRejected, XmlTooLarge

pytestmark = pytest.mark.unit

NS = files.FT_HTTP_NS
URL = "https://upload.example.org/Ab3/photo%20of%20me.jpg"

# What Linphone (liblinphone 5) sends for a file it uploaded (RCC.07 Annex A).
LINPHONE = f"""<?xml version="1.0" encoding="UTF-8"?>
<file xmlns="{NS}">
<file-info type="thumbnail"><file-size>700</file-size><content-type>image/png</content-type>
<data url="https://files.example.org/t.png" until="2026-12-14T10:00:00Z"/></file-info>
<file-info type="file">
<file-size>123456</file-size>
<file-name>holiday.jpg</file-name>
<content-type>image/jpeg</content-type>
<data url="https://files.example.org/abc/holiday.jpg" until="2026-12-14T10:00:00Z"/>
</file-info>
</file>""".encode()


def doc(url: str, *, extra: str = "", ns: str = f' xmlns="{NS}"') -> bytes:
    return (
        f'<file{ns}><file-info type="file"><file-size>5</file-size>'
        f'{extra}<data url="{url}"/></file-info></file>'
    ).encode()


def test_parse_linphone_document_takes_the_file_not_the_thumbnail() -> None:
    link = files.parse_ft_http(LINPHONE)
    assert link == files.FileLink(
        "https://files.example.org/abc/holiday.jpg",
        name="holiday.jpg",
        size=123456,
        content_type="image/jpeg",
        until=datetime(2026, 12, 14, 10, 0, tzinfo=UTC),
    )


def test_build_has_the_rcc07_shape_and_reads_back() -> None:
    link = files.FileLink(
        URL,
        name="a.jpg",
        size=42,
        content_type="image/jpeg",
        until=datetime(2027, 1, 1, tzinfo=UTC),
    )
    data = files.build_ft_http(link)
    root = etree.fromstring(data)
    assert root.tag == f"{{{NS}}}file"
    (info,) = root
    assert info.get("type") == "file"
    assert [etree.QName(c).localname for c in info] == [
        "file-size",
        "file-name",
        "content-type",
        "data",
    ]
    assert info[3].get("url") == URL and info[3].get("until") == "2027-01-01T00:00:00Z"
    assert files.parse_ft_http(data) == link


def test_oob_link_defaults_name_and_type_from_the_url_and_omits_size_and_until() -> None:
    link = files.link_from_oob(f"  {URL}\n", "my photo")
    assert link == files.FileLink(
        URL, name="photo of me.jpg", content_type="image/jpeg", desc="my photo"
    )
    info = etree.fromstring(files.build_ft_http(link))[0]
    names = [etree.QName(c).localname for c in info]
    assert names == ["file-name", "content-type", "data"]  # unknown size/validity: left out
    assert info[2].get("until") is None


def test_oob_link_without_file_name_is_octet_stream() -> None:
    link = files.link_from_oob("https://example.org/")
    assert link is not None and link.name is None
    assert link.content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "file:///etc/passwd",
        "data:text/html,<b>x</b>",
        "ftp://example.org/a",
        "xmpp:juliet@example.org",
        "https://",
        "https:///nohost",
        "https://exa mple.org/a",
        "https://example.org/a\x00b",
        "https://example.org:99999/a",
        "",
        "https://example.org/" + "a" * 3000,
    ],
)
def test_only_http_urls_with_a_host_are_links(url: str) -> None:
    assert files.link_from_oob(url) is None
    with pytest.raises(files.FileLinkError):
        files.check_url(url)
    with pytest.raises(ValueError):
        files.FileLink(url)


@pytest.mark.parametrize(
    ("url", "status"),
    [("javascript:alert(1)", 415), ("file:///etc/passwd", 415), ("data:,x", 415), ("x", 415)],
)
def test_hostile_scheme_in_ft_http_is_415(url: str, status: int) -> None:
    with pytest.raises(files.FileLinkError) as info:
        files.parse_ft_http(doc(url))
    assert info.value.sip_status == status
    assert info.value.xmpp_condition == "not-acceptable"


@pytest.mark.parametrize(
    ("body", "error", "status"),
    [
        (b"<file", XmlRejected, 400),
        (b"", XmlRejected, 400),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><file/>', XmlRejected, 400),
        (b"<other/>", files.FileLinkError, 400),
        (f'<file xmlns="{NS}"/>'.encode(), files.FileLinkError, 400),
        (f'<file xmlns="{NS}"><file-info type="file"/></file>'.encode(), files.FileLinkError, 400),
        (
            b'<file xmlns="urn:evil"><file-info><data url="https://a.b/"/></file-info></file>',
            files.FileLinkError,
            400,
        ),
        (doc("https://a.b/" + "x" * 17000), XmlTooLarge, 413),
        (b"<file>" + b"<x>" * 40 + b"</x>" * 40 + b"</file>", XmlRejected, 400),
        (doc("https://a.b/c", extra="<file-key>AAAA</file-key>"), files.FileLinkError, 415),
    ],
)
def test_hostile_ft_http(body: bytes, error: type[Exception], status: int) -> None:
    with pytest.raises(error) as info:
        files.parse_ft_http(body)
    assert info.value.sip_status == status


def test_lenient_on_optional_fields() -> None:
    """No namespace, a bad size, a bad type and a bad until read as absent."""
    body = (
        b'<file><file-info type="file"><file-size>-3</file-size>'
        b"<content-type>not a type</content-type><file-name>a\x01b</file-name>"
        b'<data url="http://a.example/x" until="tomorrow"/></file-info></file>'
    )
    with pytest.raises(XmlRejected):  # a control character is not XML at all
        files.parse_ft_http(body)
    body = body.replace(b"\x01", b"")
    assert files.parse_ft_http(body) == files.FileLink("http://a.example/x", name="ab")


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (None, URL),
        ("", URL),
        (URL, URL),
        (f"look {URL}", f"look {URL}"),
        ("look at this", f"look at this\n{URL}"),
    ],
)
def test_text_with_url(body: str | None, text: str) -> None:
    assert files.text_with_url(body, URL) == text


NAME = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() == s and s.strip())


@settings(max_examples=150, deadline=None)
@given(
    path=st.text(alphabet="abcXYZ019-._~%/", max_size=40),
    name=st.one_of(st.none(), NAME),
    size=st.one_of(st.none(), st.integers(0, 2**40)),
)
def test_round_trip(path: str, name: str | None, size: int | None) -> None:
    url = f"https://h.example/{path}"
    link = files.FileLink(url, name=name, size=size, content_type="image/png")
    back = files.parse_ft_http(files.build_ft_http(link))
    assert back.url == url and back.size == size and back.content_type == "image/png"
    assert back.name == (name or files.link_from_oob(url).name)  # type: ignore[union-attr]

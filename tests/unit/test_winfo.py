"""mappings.winfo: RFC 3858 watcherinfo documents (build, hardened parse, schema validity)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.bridge.presence.hosted import parse_command
from mappings.winfo import (
    MEDIA_TYPE,
    Watcher,
    WatcherInfo,
    WatcherList,
    WinfoError,
    build_watcherinfo,
    parse_watcherinfo,
)
from mappings.xmlsafe import XmlRejected

SCHEMAS = Path(__file__).resolve().parents[1] / "vectors" / "standards" / "schemas"

# RFC 3858 §5, the professor example (verbatim).
RFC3858_EXAMPLE = b"""<?xml version="1.0"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"
             version="0" state="full">
  <watcher-list resource="sip:professor@example.net" package="presence">
    <watcher status="active"
             id="8ajksjda7s"
             duration-subscribed="509"
             event="approved" >sip:userA@example.net</watcher>
    <watcher status="pending"
             id="hh8juja87s997-ass7"
             display-name="Mr. Subscriber"
             event="subscribe">sip:userB@example.org</watcher>
  </watcher-list>
</watcherinfo>
"""


@functools.cache
def _schema() -> etree.XMLSchema:
    """tests/vectors/standards/schemas/watcherinfo.xsd: RFC 3858 §6 (imports xml.xsd)."""
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "watcherinfo.xsd")))


@pytest.fixture
def schema() -> etree.XMLSchema:
    return _schema()


def test_media_type() -> None:
    assert MEDIA_TYPE == "application/watcherinfo+xml"  # RFC 3858 §8.1


def test_rfc3858_example_parses(schema: etree.XMLSchema) -> None:
    assert schema.validate(etree.fromstring(RFC3858_EXAMPLE)), schema.error_log
    doc = parse_watcherinfo(RFC3858_EXAMPLE)
    assert doc.version == 0 and doc.state == "full"
    (wl,) = doc.lists
    assert wl.resource == "sip:professor@example.net" and wl.package == "presence"
    a, b = wl.watchers
    assert a == Watcher(
        "8ajksjda7s", "sip:userA@example.net", "active", "approved", duration_subscribed=509
    )
    assert b.status == "pending" and b.event == "subscribe"
    assert b.display_name == "Mr. Subscriber" and b.uri == "sip:userB@example.org"
    assert list(doc.watchers("sip:professor@example.net")) == [a, b]
    assert list(doc.watchers("sip:other@example.net")) == []


def test_schema_is_live(schema: etree.XMLSchema) -> None:
    for bad in (
        RFC3858_EXAMPLE.replace(b'status="active"', b'status="happy"'),
        RFC3858_EXAMPLE.replace(b'state="full"', b""),
        RFC3858_EXAMPLE.replace(b'event="approved" ', b""),
    ):
        assert not schema.validate(etree.fromstring(bad))


def test_unknown_namespaces_are_ignored() -> None:
    body = RFC3858_EXAMPLE.replace(
        b'<watcher-list resource="sip:professor',
        b'<x:ext xmlns:x="urn:example:x"/><watcher-list resource="sip:professor',
    )
    assert parse_watcherinfo(body) == parse_watcherinfo(RFC3858_EXAMPLE)


@pytest.mark.parametrize(
    "body",
    [
        RFC3858_EXAMPLE.replace(b'status="active"', b'status="happy"'),
        RFC3858_EXAMPLE.replace(b'event="approved" ', b'event="invented" '),
        RFC3858_EXAMPLE.replace(b'version="0" ', b""),
        RFC3858_EXAMPLE.replace(b'version="0" ', b'version="-1" '),
        RFC3858_EXAMPLE.replace(b'state="full"', b'state="some"'),
        RFC3858_EXAMPLE.replace(b'id="8ajksjda7s"', b'id="has space"'),
        RFC3858_EXAMPLE.replace(b'duration-subscribed="509"', b'duration-subscribed="x"'),
        RFC3858_EXAMPLE.replace(b' package="presence"', b""),
        RFC3858_EXAMPLE.replace(b">sip:userA@example.net<", b"><"),
        b'<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="a"/>',
    ],
)
def test_bad_documents_are_refused(body: bytes) -> None:
    with pytest.raises(WinfoError):
        parse_watcherinfo(body)


def test_hostile_xml_is_refused() -> None:
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]>' + RFC3858_EXAMPLE[21:]
    with pytest.raises(XmlRejected):
        parse_watcherinfo(doctype)
    with pytest.raises(XmlRejected):
        parse_watcherinfo(b"<watcherinfo")


def test_invalid_values_cannot_be_built() -> None:
    with pytest.raises(WinfoError):
        Watcher("a b", "sip:x@y", "pending", "subscribe")
    with pytest.raises(WinfoError):
        Watcher("a", "sip:x@y", "pending", "expired")  # type: ignore[arg-type]
    with pytest.raises(WinfoError):
        WatcherInfo(2**32, "full")  # RFC 3858 §3: 32 bits, no wrap
    with pytest.raises(WinfoError):
        WatcherList("", "presence")


_token = st.text(alphabet="abcXYZ019-.!%*_+`'~", min_size=1, max_size=12)
_local = st.text(alphabet="abcxyz019.-_~", min_size=1, max_size=12)
_uri = st.builds(lambda u, d: f"xmpp:{u}@{d}", _local, st.sampled_from(["localhost", "a.example"]))
_watcher = st.builds(
    Watcher,
    id=_token,
    uri=_uri,
    status=st.sampled_from(["pending", "active", "waiting", "terminated"]),
    event=st.sampled_from(
        [
            "subscribe",
            "approved",
            "deactivated",
            "probation",
            "rejected",
            "timeout",
            "giveup",
            "noresource",
        ]
    ),
    display_name=st.none()
    | st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
    expiration=st.none() | st.integers(0, 2**40),
    duration_subscribed=st.none() | st.integers(0, 2**40),
)
_documents = st.builds(
    WatcherInfo,
    version=st.integers(0, 2**32 - 1),
    state=st.sampled_from(["full", "partial"]),
    lists=st.lists(
        st.builds(
            WatcherList,
            resource=st.sampled_from(["sip:alice@sip.localhost", "sip:b@example.net"]),
            package=st.sampled_from(["presence", "presence.winfo"]),
            watchers=st.lists(_watcher, max_size=4).map(tuple),
        ),
        max_size=3,
    ).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(_documents)
def test_round_trip_and_schema_property(doc: WatcherInfo) -> None:
    body = build_watcherinfo(doc)
    assert parse_watcherinfo(body) == doc
    xsd = _schema()  # the RFC 3858 §6 schema
    assert xsd.validate(etree.fromstring(body)), xsd.error_log


@pytest.mark.parametrize(
    ("body", "ctype", "verdict"),
    [
        (b"/allow", "text/plain", "allow"),
        (b" /DENY \r\n", None, "deny"),
        (b"/allow please", "text/plain", None),  # only the whole text is a command
        (b"allow", "text/plain", None),
        (b"/deny", "text/html", None),
        (b"\xff/deny", "text/plain", None),
    ],
)
def test_hosted_user_commands(body: bytes, ctype: str | None, verdict: str | None) -> None:
    """gateway/bridge/presence/hosted.py: `/allow` and `/deny` MESSAGEs (docs/presence.md)."""
    assert parse_command(body, ctype) == verdict

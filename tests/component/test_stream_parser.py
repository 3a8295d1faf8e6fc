"""RestrictedStreamParser: the name cache stays bounded and slixmpp sees the same stanzas.

The consumer below is slixmpp's XMLStream.data_received loop (depth counting, the root
emptied after each stanza); the reference is a plain XMLPullParser fed the same bytes.
"""

from __future__ import annotations

import gc
import itertools
import logging
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.xmpp.component import install_log_filters
from gateway.xmpp.streamparser import RestrictedStreamParser

pytestmark = pytest.mark.unit

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns='jabber:component:accept' id='s1' from='sip.localhost'>"
)


def stanza(i: int, names: int, *, tricky: bool = False) -> bytes:
    """A <message/> carrying `names` fresh element and attribute names (two per child)."""
    children = "".join(f'<e{i}n{j} a{i}n{j}="{j}"/>' for j in range(names))
    gt = ' note="a > b"' if tricky else ""  # a '>' inside an attribute value
    return (
        f'<message to="r{i}@sip.localhost" from="j@localhost/x" id="m{i}"{gt}>'
        f"<body>hello {i} &amp; &lt;b&gt;</body>"
        f'<x xmlns="urn:test:{i % 7}">{children}</x></message>'
    ).encode()


class Consumer:
    """slixmpp's data_received loop over a parser: the stanzas, serialised as they end."""

    def __init__(self, parser: ET.XMLPullParser[Any]) -> None:
        self.parser = parser
        self.depth = 0
        self.root: ET.Element | None = None
        self.stanzas: list[bytes] = []
        self.ended = False

    def data(self, chunk: bytes) -> None:
        self.parser.feed(chunk)
        item: Any
        for item in self.parser.read_events():
            event, xml = item
            if event == "start":
                if self.depth == 0:
                    self.root = xml
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 0:
                    self.ended = True
                    return
                if self.depth == 1:
                    tail, xml.tail = xml.tail, None  # whitespace after it: not the stanza's
                    self.stanzas.append(ET.tostring(xml))
                    xml.tail = tail
                    assert self.root is not None
                    self.root.clear()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def reference(data: bytes) -> list[bytes]:
    c = Consumer(ET.XMLPullParser(("start", "end")))
    c.data(data)
    return c.stanzas


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=40),
    inside=st.integers(min_value=0, max_value=10**6),
    tricky=st.booleans(),
    keepalive=st.sampled_from([b"", b" ", b"\n"]),
)
def test_same_stanzas_across_renewals_whatever_the_chunking(
    cuts: list[int], inside: int, tricky: bool, keepalive: bytes
) -> None:
    stanzas = [stanza(i, 12, tricky=tricky and i % 2 == 0) for i in range(30)]
    data = HEADER + keepalive.join(stanzas) + b"</stream:stream>"
    # besides the drawn cuts, one cut inside every stanza (TCP rarely delivers a whole
    # stream at once): renewals need a feed after the limit is passed
    at, inner = len(HEADER), []
    for s in stanzas:
        inner.append(at + inside % len(s))
        at += len(s) + len(keepalive)
    parser = RestrictedStreamParser(name_limit=40)
    c = Consumer(parser)
    for chunk in split(data, cuts + inner):
        c.data(chunk)
    assert c.stanzas == reference(data)
    assert c.ended
    # 30 stanzas of 24 new names each, a limit of 40: renewed again and again
    assert parser.renewals >= 10


def test_names_kept_stay_bounded_and_memory_with_them() -> None:
    def grow(parser: ET.XMLPullParser[Any]) -> int:
        c = Consumer(parser)
        c.data(HEADER)
        gc.collect()
        before = sys_blocks()
        for i in range(100):  # 200,000 distinct names in all
            c.data(stanza(i, 1000))
        assert len(c.stanzas) == 100
        gc.collect()
        return sys_blocks() - before

    restricted = RestrictedStreamParser(name_limit=10_000)
    grown_restricted = grow(restricted)
    grown_plain = grow(ET.XMLPullParser(("start", "end")))
    # the plain parser keeps every name (two objects each, at least); the restricted one
    # keeps at most the limit plus one stanza's worth
    assert grown_plain > 300_000
    assert grown_restricted < 40_000, (grown_restricted, grown_plain)
    assert restricted.renewals >= 15


def sys_blocks() -> int:
    return sys.getallocatedblocks()


def test_doctype_refused_after_a_renewal() -> None:
    parser = RestrictedStreamParser(name_limit=5)
    c = Consumer(parser)
    for chunk in (HEADER, stanza(1, 10), stanza(2, 10)):
        c.data(chunk)
    assert parser.renewals == 1 and len(c.stanzas) == 2
    with pytest.raises(ET.ParseError, match="DTD"):
        c.data(b"<!DOCTYPE x [<!ENTITY a 'b'>]>")


def test_renewal_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    parser = RestrictedStreamParser(name_limit=5)
    c = Consumer(parser)
    for chunk in (HEADER, stanza(1, 10), stanza(2, 1)):
        c.data(chunk)
    lines = [r for r in caplog.records if "parser renewed" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "WARNING"
    assert lines[0].fields["renewals"] == 1  # type: ignore[attr-defined]


def test_a_broken_stream_still_fails_after_renewal() -> None:
    parser = RestrictedStreamParser(name_limit=5)
    c = Consumer(parser)
    for chunk in (HEADER, stanza(1, 10), stanza(2, 1)):
        c.data(chunk)
    assert parser.renewals == 1
    with pytest.raises(ET.ParseError):
        c.data(b"<message><body>x</bod></message>")


def test_parse_error_log_line_is_short(caplog: pytest.LogCaptureFixture) -> None:
    """slixmpp's `Parse error: %r` carries the whole chunk: cut to its first 200 bytes."""
    slix = logging.getLogger("slixmpp.xmlstream.xmlstream")
    install_log_filters()
    install_log_filters()  # idempotent: one filter, not two
    assert len(slix.filters) == 1
    slix.error("Parse error: %r", b"<" + b"x" * 70_000)
    slix.error("Parse error: %r", b"<short")
    long_line, short_line = (r.getMessage() for r in caplog.records[-2:])
    assert long_line.startswith("Parse error (70001 bytes, the first 200 shown): b'<xxx")
    assert len(long_line) < 300
    assert short_line == "Parse error: b'<short'"


def test_importing_the_component_installs_no_log_filter() -> None:
    """The filter comes with the first component (`install_log_filters`), not the import."""
    code = (
        "import logging, gateway.xmpp.component\n"
        "print(len(logging.getLogger('slixmpp.xmlstream.xmlstream').filters))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"

"""mappings.xmlsafe's isolated parse thread: libxml2's name dictionary stays bounded.

lxml interns every parsed element/attribute name in the parsing thread's dictionary,
which never shrinks (docs/reliability.md §4). parse_xml/parse_html run on a worker
thread replaced after a budget of input bytes, so its sub-dictionary is freed.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from lxml import etree

from gateway.bridge.pager.sip_message import html_to_xhtml_im
from gateway.heap import heap_stats
from mappings.errors import MappingError
from mappings.iscomposing import parse_iscomposing
from mappings.pidf import parse_pidf
from mappings.xmlsafe import (
    DEFAULT_DICT_BUDGET,
    DEFAULT_MAX_BYTES,
    XML_LANG,
    IsolatedParser,
    XmlRejected,
    XmlTooLarge,
    isolated,
    parse_html,
    parse_xml,
    xml_lang,
)

_names = itertools.count()  # every name in this module is new to the process

# 1999 children with a fresh element name and a fresh attribute name each: 4,000 new
# names in ~40 KB, within parse_xml's limits (64 KiB, 2,000 elements).
_PER_BODY = 1999


def _hostile_body() -> bytes:
    ids = [next(_names) for _ in range(_PER_BODY)]
    children = "".join(f'<n{i:x} m{i:x}="1"/>' for i in ids)
    return f"<r>{children}</r>".encode()


def _heap_bytes() -> int:
    gc.collect()
    stats = heap_stats()
    assert stats is not None
    # libxml2's dictionary table is one block that doubles: once large, glibc serves
    # it with mmap, outside `in_use`. Count both.
    return stats.in_use + stats.mmapped


# 200 bodies x 4,000 names = 800,000 distinct names, ~7.7 MB: seven budgets' worth.
_BODIES = 200
# One budget's dictionary for this input is ~3.4 MiB; the old code added ~40-53 MiB.
_BOUND = 10 * 1024 * 1024


def _growth(parse: Callable[[bytes], etree._Element]) -> int:
    parse(_hostile_body())  # warm up: first worker, parser objects
    before = _heap_bytes()
    for _ in range(_BODIES):
        root = parse(_hostile_body())
        assert len(root) == _PER_BODY
    del root
    return _heap_bytes() - before


needs_glibc = pytest.mark.skipif(heap_stats() is None, reason="glibc's mallinfo2 needed")


@needs_glibc
def test_parse_xml_memory_stays_bounded_under_new_names() -> None:
    growth = _growth(parse_xml)
    assert growth < _BOUND, f"{growth / 2**20:.1f} MiB for {_BODIES * 2 * _PER_BODY} names"


@needs_glibc
def test_a_worker_never_replaced_grows_past_the_bound() -> None:
    """The old behaviour (one dictionary for ever) fails the bound above."""
    unbounded = IsolatedParser(budget=None)

    def parse_in_one_thread(data: bytes) -> etree._Element:
        return unbounded.run(len(data), etree.fromstring, data)

    try:
        growth = _growth(parse_in_one_thread)
        assert unbounded.generation == 1
    finally:
        unbounded.close()  # its thread ends: that dictionary is freed
    assert growth > _BOUND, f"{growth / 2**20:.1f} MiB"


def _body_of(size: int) -> bytes:
    filler = "x" * (size - 40)
    return f"<r><a>{filler}</a><b/></r>".encode()


def test_parse_xml_switches_worker_after_its_budget() -> None:
    parser = isolated()
    parse_xml(b"<r/>")
    first_gen, first_thread = parser.generation, parser.worker_thread
    assert first_thread is not None and first_thread.is_alive()
    seen = {first_gen}
    body = _body_of(DEFAULT_MAX_BYTES - 100)
    for _ in range(2 * DEFAULT_DICT_BUDGET // len(body) + 2):
        root = parse_xml(body)
        assert [child.tag for child in root] == ["a", "b"]
        seen.add(parser.generation)
    assert len(seen) >= 2  # at least one switch happened; parses kept working across it
    assert parser.worker_thread is not first_thread
    assert not first_thread.is_alive()  # the old worker's thread has ended


def test_worker_replaced_exactly_after_budget() -> None:
    parser = IsolatedParser(budget=1000)
    try:
        threads = [parser.run(400, threading.current_thread) for _ in range(6)]
        # 400 + 400 + 400 >= 1000: the fourth call goes to a fresh worker.
        assert threads[0] is threads[1] is threads[2]
        assert threads[3] is threads[4] is threads[5]
        assert threads[3] is not threads[0] and not threads[0].is_alive()
        assert threading.current_thread() not in threads
        assert parser.generation == 2
    finally:
        parser.close()
    assert parser.worker_thread is None


def test_exceptions_from_the_worker_reach_the_caller_unchanged() -> None:
    parser = IsolatedParser()

    def boom(key: str) -> None:
        raise KeyError(key)

    try:
        with pytest.raises(KeyError) as info:
            parser.run(1, boom, "k")
        assert info.value.args == ("k",)
        assert parser.run(1, len, b"abc") == 3  # the worker survives a failed call
    finally:
        parser.close()


def _lxml_message(data: bytes) -> str:
    try:
        etree.fromstring(data)
    except etree.XMLSyntaxError as exc:
        return f"malformed XML: {exc.msg}"
    raise AssertionError("expected a syntax error")


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"<a>", XmlRejected, _lxml_message(b"<a>")),
        (b"<a></b>", XmlRejected, _lxml_message(b"<a></b>")),
        (b"<a>" * 33 + b"</a>" * 33, XmlRejected, "XML nesting deeper than 32"),
        (b"<r>" + b"<e/>" * 2000 + b"</r>", XmlRejected, "XML has more than 2000 elements"),
        (
            b'<r a="' + b"x" * 4097 + b'"/>',
            XmlRejected,
            "XML attribute longer than 4096 characters",
        ),
        (b"<!DOCTYPE r><r/>", XmlRejected, "DOCTYPE and entity declarations are not accepted"),
        (b"   ", XmlRejected, "empty XML body"),
        (b"<r>" + b"x" * DEFAULT_MAX_BYTES + b"</r>", XmlTooLarge, None),
    ],
)
def test_rejections_keep_their_types_and_messages(
    data: bytes, kind: type[XmlRejected], message: str | None
) -> None:
    with pytest.raises(XmlRejected) as info:
        parse_xml(data)
    assert type(info.value) is kind
    if message is not None:
        assert str(info.value) == message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
    assert info.value.sip_status == (413 if kind is XmlTooLarge else 400)


def test_html_parse_errors_and_results() -> None:
    with pytest.raises(etree.ParserError):
        parse_html("<!-- -->")  # nothing but a comment: "Document is empty"
    with pytest.raises(MappingError, match="unparseable HTML: Document is empty"):
        html_to_xhtml_im("<!-- -->")
    root = parse_html("<p>hi <b onclick='x'>there</b><script>x()</script></p>")
    assert root.tag == "html" and root.find("body/p/b") is not None
    xhtml, plain = html_to_xhtml_im("<p>hi <b onclick='x'>there</b><script>x()</script></p>")
    assert plain == "hi there"
    assert b"script" not in xhtml and b"onclick" not in xhtml


_DOC = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com" xml:lang="en">
  <tuple id="t1"><status><basic>open</basic></status><note>hello</note></tuple>
</presence>"""
_PIDF = "{urn:ietf:params:xml:ns:pidf}"


def test_trees_from_the_worker_work_in_the_callers_thread() -> None:
    root = parse_xml(_DOC)
    note = root.find(f"{_PIDF}tuple/{_PIDF}note")
    assert note is not None and note.text == "hello"
    assert xml_lang(note) == "en"
    assert note.getparent() is root.find(f"{_PIDF}tuple")
    assert root.xpath("//p:basic/text()", namespaces={"p": _PIDF[1:-1]}) == ["open"]
    assert [el.tag for el in root.iter(f"{_PIDF}basic")] == [f"{_PIDF}basic"]
    assert root.get("entity") == "sip:a@example.com" and root.get(XML_LANG) == "en"
    # Edited in place, copied, and moved into a tree built in this thread.
    etree.SubElement(root, f"{_PIDF}tuple", id="t2")
    clone = copy.deepcopy(root)
    fresh = etree.Element("wrapper")
    fresh.append(root)
    text = etree.tostring(fresh)
    assert b'id="t2"' in text and b"<basic>open</basic>" in text
    assert len(clone.findall(f"{_PIDF}tuple")) == 2


def _composing(i: int) -> bytes:
    return (
        '<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
        f"<state>active</state><refresh>{60 + i}</refresh></isComposing>"
    ).encode()


def test_concurrent_callers_get_their_own_results() -> None:
    shared = IsolatedParser(budget=2000)  # one instance from many threads, switching often

    def work(n: int) -> list[int]:
        out = []
        for i in range(n * 100, n * 100 + 50):
            out.append(parse_iscomposing(_composing(i)).refresh or -1)
            root = shared.run(64, etree.fromstring, f"<r{i}/>".encode())
            assert root.tag == f"r{i}"
        return out

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(work, n) for n in range(8)]
            results = [f.result(timeout=120) for f in futures]
    finally:
        shared.close()
    assert results == [[60 + i for i in range(n * 100, n * 100 + 50)] for n in range(8)]
    assert shared.generation > 1


def test_callers_from_asyncio_to_thread_do_not_deadlock() -> None:
    async def main() -> list[str]:
        calls = [asyncio.to_thread(parse_pidf, _DOC) for _ in range(20)]
        docs = await asyncio.wait_for(asyncio.gather(*calls), timeout=120)
        return [doc.tuples[0].basic or "" for doc in docs]

    assert asyncio.run(main()) == ["open"] * 20


def test_a_callers_worker_ends_with_the_calling_thread() -> None:
    workers: list[threading.Thread | None] = []

    def caller() -> None:
        parse_xml(b"<r/>")
        workers.append(isolated().worker_thread)

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    worker = workers[0]
    assert worker is not None and worker is not isolated().worker_thread
    gc.collect()
    worker.join(timeout=60)  # its parser died with the thread's locals: the worker stops
    assert not worker.is_alive()

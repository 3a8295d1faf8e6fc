"""One hardened XML parser for every XML body read from the network.

PIDF (RFC 3863), isComposing (RFC 3994) and IMDN (RFC 5438) bodies arrive from
untrusted peers. Everything goes through :func:`parse_xml`, which:

* refuses documents larger than ``max_bytes`` before parsing (413 / policy-violation);
* accepts UTF-8 (or its ASCII subset) only -- RFC 3994 §6 and RFC 5438 §11.1 require
  UTF-8 and RFC 3863 §3.1 makes it the one encoding every consumer MUST accept --
  so the byte-level DOCTYPE check below cannot be dodged with UTF-16;
* refuses any DOCTYPE at all (billion laughs, external entities, DTD fetches);
* parses with entity resolution, network access and DTD loading disabled and
  libxml2's ``huge_tree`` protection left on, dropping comments and PIs;
* bounds nesting depth, element count and attribute size after parsing.

libxml2 interns every element and attribute name it parses (and short text) in the
parsing thread's name dictionary, which never shrinks; lxml gives a non-main thread its
own sub-dictionary, freed when the thread ends and the last tree using it is gone. So
every parse of network input (:func:`parse_xml`, :func:`parse_html`) runs on an
:class:`IsolatedParser` worker thread that is replaced after a budget of input bytes:
a peer inventing names grows memory by at most one budget's dictionary
(docs/reliability.md §4).
"""

from __future__ import annotations

import queue
import re
import threading
import weakref
from collections.abc import Callable
from typing import ClassVar, Final, ParamSpec, TypeVar, cast

from lxml import etree
from lxml import html as lxml_html

from mappings.errors import MappingError

DEFAULT_MAX_BYTES: Final = 64 * 1024
DEFAULT_MAX_DEPTH: Final = 32
DEFAULT_MAX_ELEMENTS: Final = 2000
DEFAULT_MAX_ATTRIBUTE_CHARS: Final = 4096
# Input bytes one parse worker handles before it is replaced. Worst case ~25 bytes of
# dictionary per input byte (names of one or two characters), typically a few.
DEFAULT_DICT_BUDGET: Final = 1024 * 1024

_P = ParamSpec("_P")
_T = TypeVar("_T")


class FormatError(MappingError, ValueError):
    """A body from the peer is malformed; carries the answer for either side.

    ``sip_status`` is the final response a SIP UAS sends for the request that
    carried the body; ``xmpp_condition`` the RFC 6120 §8.3.3 stanza error.
    Subclasses set class-level defaults.
    """

    default_sip_status: ClassVar[int] = 400
    default_xmpp_condition: ClassVar[str] = "bad-request"

    def __init__(
        self, reason: str, *, sip_status: int | None = None, xmpp_condition: str | None = None
    ) -> None:
        super().__init__(
            reason,
            sip_status=sip_status or self.default_sip_status,
            xmpp_condition=xmpp_condition or self.default_xmpp_condition,
        )


class XmlRejected(FormatError):
    """The XML body is not acceptable (malformed, DTD, too deep, too many elements)."""


class XmlTooLarge(XmlRejected):
    """The XML body exceeds the byte limit: 413 Request Entity Too Large."""

    default_sip_status = 413
    default_xmpp_condition = "policy-violation"


# A DOCTYPE declaration can only start with these exact bytes (XML 1.0 §2.8, case
# sensitive); in UTF-8 input a byte search cannot miss it.
_DOCTYPE = b"<!DOCTYPE"
_ENTITY = b"<!ENTITY"
# XMLDecl encoding (XML 1.0 §4.3.3): EncodingDecl ::= S 'encoding' Eq ('"' EncName '"' | ...)
_ENCODING_DECL = re.compile(rb"""\A<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_UTF8_NAMES: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})
_BOM_UTF8: Final = b"\xef\xbb\xbf"

_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers keep per-parse state: one instance per (worker) thread.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            dtd_validation=False,
            load_dtd=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def _html_parser() -> lxml_html.HTMLParser:
    parser: lxml_html.HTMLParser | None = getattr(_local, "html_parser", None)
    if parser is None:
        parser = lxml_html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
        _local.html_parser = parser
    return parser


_Call = tuple[Callable[..., object], tuple[object, ...], dict[str, object]]


class _Worker:
    """One parse thread fed through a queue; the caller waits on the reply queue."""

    def __init__(self, generation: int) -> None:
        self.requests: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self.replies: queue.SimpleQueue[tuple[bool, object]] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=self._loop, name=f"xml-parse-{generation}", daemon=True
        )
        self.thread.start()
        self.finalizer: weakref.finalize[..., IsolatedParser] | None = None

    def _loop(self) -> None:
        while (call := self.requests.get()) is not None:
            fn, args, kwargs = call
            try:
                reply: tuple[bool, object] = (True, fn(*args, **kwargs))
            except BaseException as exc:  # handed to the caller, which raises it
                reply = (False, exc)
            self.replies.put(reply)
            del call, fn, args, kwargs, reply  # keep no tree alive between calls

    def stop(self, *, wait: bool = True) -> None:
        if self.finalizer is not None:
            self.finalizer.detach()
        self.requests.put(None)
        if wait:
            self.thread.join()


class IsolatedParser:
    """Runs lxml parses on one worker thread, replaced after ``budget`` input bytes.

    The worker's name dictionary (an lxml sub-dictionary of the main thread's) holds the
    names of everything it parsed; replacing the worker ends its thread, so the
    dictionary is freed once the trees parsed there are gone. Callers block on the
    result; exceptions raised by ``fn`` reach the caller unchanged. Calls on one
    instance are serialized, so the worker is idle whenever no call is running: while
    a caller reads its tree, no other parse is writing to that tree's dictionary.
    ``budget=None`` never replaces the worker (the old, unbounded behaviour; tests).
    """

    def __init__(self, budget: int | None = DEFAULT_DICT_BUDGET) -> None:
        self.budget = budget
        self.generation = 0  # workers started so far
        self._spent = 0
        self._lock = threading.Lock()
        self._worker: _Worker | None = None

    @property
    def worker_thread(self) -> threading.Thread | None:
        """The current worker's thread (None before the first call or after close)."""
        worker = self._worker
        return None if worker is None else worker.thread

    def run(self, cost: int, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """``fn(*args, **kwargs)`` on the worker; ``cost`` = input bytes it parses."""
        with self._lock:
            worker = self._worker
            if worker is not None and self.budget is not None and self._spent >= self.budget:
                # Idle (calls are serialized): joining it is quick, and its dictionary
                # is freed now (or with the last tree parsed there).
                worker.stop()
                worker = None
            if worker is None:
                self.generation += 1
                worker = self._worker = _Worker(self.generation)
                # Stopped with this parser (e.g. a caller thread's, when that thread ends).
                worker.finalizer = weakref.finalize(self, worker.requests.put, None)
                self._spent = 0
            self._spent += cost
            worker.requests.put((fn, args, kwargs))
            try:
                ok, value = worker.replies.get()
            except BaseException:  # interrupted: its late reply must not answer a later call
                self._worker = None
                worker.stop(wait=False)
                raise
        if ok:
            return cast("_T", value)
        raise cast("BaseException", value)

    def close(self) -> None:
        """End the worker (a later :meth:`run` starts a new one)."""
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None


def isolated() -> IsolatedParser:
    """The calling thread's :class:`IsolatedParser` (one per caller thread, so a tree
    read in one thread never shares a dictionary with a parse running for another)."""
    parser: IsolatedParser | None = getattr(_local, "isolated", None)
    if parser is None:
        parser = _local.isolated = IsolatedParser()
    return parser


def _check_encoding(data: bytes) -> None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"\x3c\x00", b"\x00\x3c")):
        raise XmlRejected("XML body must be UTF-8")
    body = data.removeprefix(_BOM_UTF8)
    match = _ENCODING_DECL.match(body)
    if match and match.group(1).decode("ascii").lower() not in _UTF8_NAMES:
        raise XmlRejected("XML body must be UTF-8")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise XmlRejected("XML body is not valid UTF-8") from None


def _check_tree(root: etree._Element, *, max_depth: int, max_elements: int, max_attr: int) -> None:
    depth = 0
    count = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        count += 1
        if depth > max_depth:
            raise XmlRejected(f"XML nesting deeper than {max_depth}")
        if count > max_elements:
            raise XmlRejected(f"XML has more than {max_elements} elements")
        for value in element.attrib.values():
            if len(value) > max_attr:
                raise XmlRejected(f"XML attribute longer than {max_attr} characters")


def parse_xml(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    max_attribute_chars: int = DEFAULT_MAX_ATTRIBUTE_CHARS,
) -> etree._Element:
    """Parse an untrusted XML body and return its root element.

    Raises :class:`XmlTooLarge` or :class:`XmlRejected`.
    """
    if len(data) > max_bytes:
        raise XmlTooLarge(f"XML body of {len(data)} bytes exceeds {max_bytes}")
    if not data.strip():
        raise XmlRejected("empty XML body")
    _check_encoding(data)
    if _DOCTYPE in data or _ENTITY in data:
        raise XmlRejected("DOCTYPE and entity declarations are not accepted")
    return isolated().run(len(data), _parse, data, max_depth, max_elements, max_attribute_chars)


def _parse(data: bytes, max_depth: int, max_elements: int, max_attr: int) -> etree._Element:
    # On the IsolatedParser's worker thread.
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"malformed XML: {exc.msg}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.public_id or docinfo.internalDTD is not None:  # belt and braces
        raise XmlRejected("DOCTYPE is not accepted")
    _check_tree(root, max_depth=max_depth, max_elements=max_elements, max_attr=max_attr)
    return root


def parse_html(text: str) -> lxml_html.HtmlElement:
    """An untrusted HTML document -> its ``<html>`` root, parsed on the calling thread's
    :class:`IsolatedParser`. Raises what ``lxml.html.document_fromstring`` raises
    (``etree.ParserError``, ``ValueError``); callers sanitise the tree."""
    return isolated().run(len(text), _parse_html, text)


def _parse_html(text: str) -> lxml_html.HtmlElement:
    return lxml_html.document_fromstring(text, parser=_html_parser())


def xml_lang(element: etree._Element) -> str | None:
    """The in-scope ``xml:lang`` of ``element`` (XML 1.0 §2.12), or None. An empty value
    undeclares the language ("no language information available"): None."""
    node: etree._Element | None = element
    while node is not None:
        lang = node.get(XML_LANG)
        if lang is not None:
            return lang or None
        node = node.getparent()
    return None


def nsmap(default: str | None = None, **prefixes: str) -> dict[str, str]:
    """An lxml ``nsmap``; the default namespace goes under the ``None`` key, which
    lxml accepts but lxml-stubs does not model."""
    mapping: dict[str | None, str] = {}
    mapping.update(prefixes)
    if default is not None:
        mapping[None] = default
    return cast("dict[str, str]", mapping)


def serialize(root: etree._Element) -> bytes:
    """UTF-8 serialization with an XML declaration (RFC 3863 §3.1 / RFC 5438 §11.1)."""
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"

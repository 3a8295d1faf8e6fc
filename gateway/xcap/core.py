"""The XCAP server's request semantics (RFC 4825 §7, §8), pure.

:func:`handle` takes a parsed request URI, the stored document (if any) and the request,
and returns a :class:`Reply`: the HTTP status, headers, body and what to persist
(``store``: new document bytes, or ``delete``). No I/O: the glue reads the current
document from the store, calls this, writes what the reply says and only then answers.

* Entity tags (§7.11): a strong tag per document state, derived from its bytes
  (:func:`etag_of`); ``If-Match`` / ``If-None-Match`` are checked before anything
  else: 412 on mismatch for writes, 304 for a matching ``If-None-Match`` on GET.
* Documents are parsed with :func:`mappings.xmlsafe.parse_xml` (no DTDs, bounded), so
  comments and processing instructions do not survive an element or attribute write;
  a whole-document PUT is stored as sent.
* Every write is validated by its application usage afterwards (§8.2.5, usages.py).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Final, cast
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from gateway.xcap.errors import (
    XcapError,
    cannot_delete,
    cannot_insert,
    no_parent,
    not_found,
    not_utf8,
    not_well_formed,
    not_xml_att_value,
    not_xml_frag,
)
from gateway.xcap.uri import NodeSelector, Step, XcapUri
from gateway.xcap.usages import Usage
from mappings.xmlsafe import XmlRejected, XmlTooLarge, parse_xml

__all__ = [
    "ATT_MEDIA_TYPE",
    "EL_MEDIA_TYPE",
    "NO_PRECONDITIONS",
    "NS_MEDIA_TYPE",
    "Preconditions",
    "Reply",
    "Stored",
    "etag_of",
    "handle",
    "select",
]

EL_MEDIA_TYPE: Final = "application/xcap-el+xml"
ATT_MEDIA_TYPE: Final = "application/xcap-att+xml"
NS_MEDIA_TYPE: Final = "application/xcap-ns+xml"
MAX_ELEMENTS: Final = 16 * 1024
_ATT_QUOTE = {'"': "&quot;"}


@dataclass(frozen=True)
class Stored:
    """The current document and its entity tag."""

    body: bytes
    etag: str


@dataclass(frozen=True)
class Preconditions:
    """The raw ``If-Match`` / ``If-None-Match`` header values (None: absent)."""

    if_match: str | None = None
    if_none_match: str | None = None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    etag: str | None = None  # the document's entity tag after the request
    store: bytes | None = field(default=None, repr=False)  # persist this document
    delete: bool = False  # remove the document

    @property
    def writes(self) -> bool:
        return self.store is not None or self.delete


def etag_of(document: bytes) -> str:
    """A strong entity tag for these document bytes (quoted, RFC 7232 §2.3)."""
    return '"' + hashlib.sha256(document).hexdigest()[:32] + '"'


NO_PRECONDITIONS: Final = Preconditions()
_TAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|\Z)')


def _tags(value: str) -> tuple[bool, list[tuple[bool, str]]]:
    """(is "*", [(weak, tag)]) of an If-Match / If-None-Match value; 400 when malformed."""
    if value.strip() == "*":
        return True, []
    out, pos = [], 0
    while pos < len(value):
        m = _TAG.match(value, pos)
        if m is None:
            raise XcapError(400, "malformed entity-tag list")
        out.append((m.group(1) is not None, m.group(2)))
        pos = m.end()
    return False, out


def _preconditions(method: str, cond: Preconditions, current: Stored | None) -> Reply | None:
    """§7.11 with RFC 7232 §3.1/§3.2: None to proceed, else the 412 / 304 reply."""
    etag = None if current is None else current.etag
    if cond.if_match is not None:
        star, tags = _tags(cond.if_match)
        ok = etag is not None and (star or any(not weak and t == etag for weak, t in tags))
        if not ok:
            return error_reply(XcapError(412, "If-Match does not match the document"))
    if cond.if_none_match is not None:
        star, tags = _tags(cond.if_none_match)
        hit = etag is not None and (star or any(t == etag for _weak, t in tags))
        if hit:
            if method in ("GET", "HEAD"):
                return Reply(304, etag=etag)
            return error_reply(XcapError(412, "If-None-Match matches the document"))
    return None


def error_reply(exc: XcapError) -> Reply:
    return Reply(exc.status, exc.body(), exc.content_type)


# ------------------------------------------------------------------ selection (§6.3)


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [c for c in parent if isinstance(c.tag, str)]


def _candidates(children: list[etree._Element], step: Step) -> list[etree._Element]:
    found = [c for c in children if step.matches_name(c.tag)]
    if step.position is not None:
        found = found[step.position - 1 : step.position]
    if step.attr is not None:
        found = [c for c in found if c.get(step.attr) == step.value]
    return found


def select(root: etree._Element, steps: tuple[Step, ...]) -> etree._Element | None:
    """The one element the steps select from the document root, or None (no-match)."""
    children = [root]
    element: etree._Element | None = None
    for step in steps:
        found = _candidates(children, step)
        if len(found) != 1:
            return None
        element = found[0]
        children = _elements(element)
    return element


# ------------------------------------------------------------------ parsing


def _mime(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _parse_document(data: bytes, max_bytes: int) -> etree._Element:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8("the document is not UTF-8") from None
    try:
        return parse_xml(data, max_bytes=max_bytes, max_elements=MAX_ELEMENTS)
    except XmlTooLarge as exc:
        raise XcapError(413, str(exc)) from None
    except XmlRejected as exc:
        raise not_well_formed(str(exc)) from None


def _ns_declarations(context: etree._Element) -> str:
    parts = []
    for prefix, ns in context.nsmap.items():
        attr = "xmlns" if prefix is None else f"xmlns:{prefix}"
        parts.append(f"{attr}={quoteattr(ns)}")
    return " ".join(parts)


_WRAP = "xcap-fragment-wrapper"


def _parse_fragment(data: bytes, context: etree._Element, max_bytes: int) -> etree._Element:
    """§8.2.2: one element, well balanced, read with the namespaces in scope at the
    insertion point (a fragment may use the document's prefixes)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8("the element is not UTF-8") from None
    if text.lstrip().startswith("<?xml"):
        raise not_xml_frag("an element body has no XML declaration")
    wrapped = f"<{_WRAP} {_ns_declarations(context)}>{text}</{_WRAP}>".encode()
    try:
        wrapper = parse_xml(wrapped, max_bytes=max_bytes + 4096, max_elements=MAX_ELEMENTS)
    except XmlTooLarge as exc:
        raise XcapError(413, str(exc)) from None
    except XmlRejected as exc:
        raise not_xml_frag(str(exc)) from None
    elements = _elements(wrapper)
    stray = (wrapper.text or "").strip() or any((c.tail or "").strip() for c in wrapper)
    if etree.QName(wrapper).localname != _WRAP or len(elements) != 1 or len(wrapper) != 1 or stray:
        raise not_xml_frag("the body must be exactly one element")
    element = elements[0]
    element.tail = None
    return element


_ATT_REF = re.compile(r"&(?:[A-Za-z_][\w.\-]*|#[0-9]+|#x[0-9A-Fa-f]+);")


def _parse_att_value(data: bytes) -> str:
    """§8.2.2: the body is an AttValue without its quotes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise not_utf8("the attribute value is not UTF-8") from None
    if "<" in text or "&" in _ATT_REF.sub("", text) or ('"' in text and "'" in text):
        raise not_xml_att_value("not an XML attribute value")
    quote = "'" if '"' in text else '"'
    try:
        el = parse_xml(f"<a v={quote}{text}{quote}/>".encode(), max_bytes=len(data) + 64)
    except XmlRejected:
        raise not_xml_att_value("not an XML attribute value") from None
    return el.get("v") or ""


# ------------------------------------------------------------------ the request


def _document_bytes(root: etree._Element) -> bytes:
    tree = root.getroottree()
    return bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))


def _check_size(body: bytes, max_bytes: int) -> None:
    if len(body) > max_bytes:
        raise XcapError(413, f"{len(body)} bytes exceed the limit of {max_bytes}")


def handle(
    method: str,
    uri: XcapUri,
    current: Stored | None,
    usage: Usage,
    *,
    body: bytes = b"",
    content_type: str | None = None,
    preconditions: Preconditions = NO_PRECONDITIONS,
    max_bytes: int = 256 * 1024,
) -> Reply:
    """One XCAP request (GET / PUT / DELETE) against ``current``; never raises XcapError."""
    try:
        if method not in ("GET", "HEAD", "PUT", "DELETE"):
            raise XcapError(405, f"{method} is not an XCAP method")
        if method in ("PUT", "DELETE") and not usage.writable:
            raise XcapError(405, f"{usage.auid} documents are read only")
        early = _preconditions(method, preconditions, current)
        if early is not None:
            return early
        if method == "PUT":
            _check_size(body, max_bytes)
        if uri.node is None:
            return _document(
                method, current, usage, body=body, content_type=content_type, max_bytes=max_bytes
            )
        return _node(
            method,
            uri.node,
            current,
            usage,
            body=body,
            content_type=content_type,
            max_bytes=max_bytes,
        )
    except XcapError as exc:
        return error_reply(exc)


def _document(
    method: str,
    current: Stored | None,
    usage: Usage,
    *,
    body: bytes,
    content_type: str | None,
    max_bytes: int,
) -> Reply:
    if method in ("GET", "HEAD"):
        if current is None:
            raise not_found("no such document")
        return Reply(200, current.body, usage.mime, current.etag)
    if method == "DELETE":
        if current is None:
            raise not_found("no such document")
        return Reply(200, delete=True)
    if _mime(content_type) != usage.mime:
        raise XcapError(415, f"a {usage.auid} document is {usage.mime}")
    root = _parse_document(body, max_bytes)
    usage.check(body, root, max_bytes)
    return Reply(201 if current is None else 200, etag=etag_of(body), store=body)


def _node(
    method: str,
    node: NodeSelector,
    current: Stored | None,
    usage: Usage,
    *,
    body: bytes,
    content_type: str | None,
    max_bytes: int,
) -> Reply:
    if current is None:
        if method == "PUT":
            raise no_parent("the document does not exist")
        raise not_found("no such document")
    root = _parse_document(current.body, max(max_bytes, len(current.body)))
    if method in ("GET", "HEAD"):
        return _get_node(node, root, current)
    if node.kind == "namespace":
        raise XcapError(405, "namespace bindings are read only")
    if node.kind == "attribute":
        created, root = _write_attribute(method, node, root, body, content_type)
    elif method == "PUT":
        created, root = _put_element(node, root, body, content_type, max_bytes)
    else:
        created, root = False, _delete_element(node, root)
    document = _document_bytes(root)
    _check_size(document, max_bytes)
    usage.check(document, root, max_bytes)
    return Reply(201 if created else 200, etag=etag_of(document), store=document)


def _get_node(node: NodeSelector, root: etree._Element, current: Stored) -> Reply:
    element = select(root, node.steps)
    if element is None:
        raise not_found("the node selector selects no element")
    if node.terminal is None:
        text = etree.tostring(element, encoding="UTF-8", with_tail=False)
        return Reply(200, bytes(text), EL_MEDIA_TYPE, current.etag)
    if node.kind == "namespace":
        bindings = etree.Element(element.tag, nsmap=cast("dict[str, str]", element.nsmap))
        return Reply(200, bytes(etree.tostring(bindings)), NS_MEDIA_TYPE, current.etag)
    name = node.terminal.name  # type: ignore[union-attr]
    value = element.get(name)
    if value is None:
        raise not_found("no such attribute")
    return Reply(200, escape(value, _ATT_QUOTE).encode(), ATT_MEDIA_TYPE, current.etag)


def _write_attribute(
    method: str,
    node: NodeSelector,
    root: etree._Element,
    body: bytes,
    content_type: str | None,
) -> tuple[bool, etree._Element]:
    element = select(root, node.steps)
    name = node.terminal.name  # type: ignore[union-attr]
    if method == "DELETE":
        if element is None or element.get(name) is None:
            raise not_found("no such attribute")
        del element.attrib[name]
        return False, root
    if element is None:
        raise no_parent("the node selector selects no element")
    if _mime(content_type) != ATT_MEDIA_TYPE:
        raise XcapError(415, f"an attribute is {ATT_MEDIA_TYPE}")
    created = element.get(name) is None
    element.set(name, _parse_att_value(body))
    return created, root


def _put_element(
    node: NodeSelector,
    root: etree._Element,
    body: bytes,
    content_type: str | None,
    max_bytes: int,
) -> tuple[bool, etree._Element]:
    """§8.2.1 locate the parent, §8.2.3 creation / §8.2.4 replacement."""
    *parent_steps, last = node.steps
    parent = select(root, tuple(parent_steps)) if parent_steps else None
    if parent_steps and parent is None:
        raise no_parent("the parent of the target element does not exist")
    if _mime(content_type) != EL_MEDIA_TYPE:
        raise XcapError(415, f"an element is {EL_MEDIA_TYPE}")
    new = _parse_fragment(body, parent if parent is not None else root, max_bytes)
    if parent is None:  # the root element itself
        if _candidates([root], last) != [root]:
            raise cannot_insert("a document has one root element")
        root = new
        created = False
    else:
        created = _place(parent, last, new)
    if select(root, node.steps) is not new:
        raise cannot_insert("the request URI would not select the element put")
    return created, root


def _place(parent: etree._Element, last: Step, new: etree._Element) -> bool:
    siblings = _elements(parent)
    found = _candidates(siblings, last)
    if len(found) == 1:  # replacement, in place
        found[0].addprevious(new)
        new.tail = found[0].tail
        parent.remove(found[0])
        return False
    same = [c for c in siblings if last.matches_name(c.tag)]
    if last.position is not None:
        n = last.position
        if n <= len(same):
            same[n - 1].addprevious(new)
            return True
        if n > len(same) + 1:
            raise cannot_insert(f"position {n} is past the end")
    if same and last.name != "*":
        same[-1].addnext(new)  # "earliest last": after the last one of that name
    elif siblings:
        siblings[-1].addnext(new)
    else:
        parent.append(new)
    return True


def _delete_element(node: NodeSelector, root: etree._Element) -> etree._Element:
    element = select(root, node.steps)
    if element is None:
        raise not_found("the node selector selects no element")
    parent = element.getparent()
    if parent is None:
        raise cannot_delete("the root element cannot be deleted (delete the document)")
    previous = element.getprevious()
    if element.tail:  # keep the text that followed the element
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)
    if select(root, node.steps) is not None:
        raise cannot_delete("the request URI would select another element afterwards")
    return root

"""Resource lists (RFC 4826 §3, ``application/resource-lists+xml``).

A buddy list as data: the body of an RFC 5367 request-contained list SUBSCRIBE and the
document an XCAP server (RFC 4825) stores behind a user's list URI. This module is the
document format and its expansion into member URIs, nothing else: frozen dataclasses,
:func:`build_resource_lists`, a hardened :func:`parse_resource_lists` over
:func:`mappings.xmlsafe.parse_xml`, and :func:`expand`, which flattens nested lists and
follows ``<entry-ref>`` / ``<external>`` references through a caller-supplied resolver
(:func:`document_resolver` resolves those that point into the same document).

Errors carry the SIP status the request that brought the list gets:

* 400 :class:`ResourceListsError` -- malformed (not the schema's shape, empty URIs,
  hostile XML via :class:`mappings.xmlsafe.XmlRejected`);
* 413 :class:`ListTooLarge` -- more bytes than ``ListLimits.max_bytes`` or more members
  than ``ListLimits.max_entries`` (before or after expansion): the body is too big;
* 403 :class:`ListRefused` -- valid but beyond policy: nesting (lists in lists, and
  references followed) deeper than ``ListLimits.max_depth``; :class:`ListLoop`, a
  reference that leads back into a list being expanded. XML nested deeper than
  ``ListLimits.xml_depth()`` (32 by default) is hostile XML: 400.

Unknown elements and attributes from other namespaces are ignored on input (the schema's
``##other`` extension points); references that cannot be resolved are reported in
:attr:`Expansion.unresolved`, not raised (an RLS lists what it can, RFC 4662 §4.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, TypeAlias
from urllib.parse import unquote

from lxml import etree

from mappings.xmlsafe import (
    DEFAULT_MAX_DEPTH,
    XML_LANG,
    FormatError,
    nsmap,
    parse_xml,
    serialize,
)

__all__ = [
    "MEDIA_TYPE",
    "NS",
    "DisplayName",
    "Entry",
    "EntryRef",
    "Expansion",
    "External",
    "ListItem",
    "ListLimits",
    "ListLoop",
    "ListRefused",
    "ListTooLarge",
    "ResourceList",
    "ResourceLists",
    "ResourceListsError",
    "build_resource_lists",
    "document_resolver",
    "expand",
    "parse_resource_lists",
]

MEDIA_TYPE: Final = "application/resource-lists+xml"
NS: Final = "urn:ietf:params:xml:ns:resource-lists"


class ResourceListsError(FormatError):
    """Not a resource-lists document we can use: 400."""


class ListTooLarge(ResourceListsError):
    """More bytes or members than the limits allow: 413 Request Entity Too Large."""

    default_sip_status = 413
    default_xmpp_condition = "policy-violation"


class ListRefused(ResourceListsError):
    """A list the gateway will not expand (nesting beyond policy): 403 Forbidden."""

    default_sip_status = 403
    default_xmpp_condition = "policy-violation"


class ListLoop(ListRefused):
    """A reference leads back into a list being expanded: 403 Forbidden."""


@dataclass(frozen=True)
class ListLimits:
    """Bounds for one document and its expansion (docs/lists.md)."""

    max_bytes: int = 256 * 1024
    max_entries: int = 1000  # members, counted before and after expansion
    max_depth: int = 8  # nested <list>s plus references followed

    def xml_depth(self) -> int:
        # resource-lists > list (x max_depth) > entry > display-name, plus slack for
        # extension elements; never below xmlsafe's default, so lists nested past
        # max_depth get the policy answer (403) before the hostile-XML bound (400).
        return max(self.max_depth + 4, DEFAULT_MAX_DEPTH)

    def xml_elements(self) -> int:
        # An entry is two elements with its display-name; lists add one or two each.
        return 4 * self.max_entries + 16


@dataclass(frozen=True)
class DisplayName:
    """``<display-name xml:lang=...>`` (RFC 4826 §3.2)."""

    text: str
    lang: str | None = None


@dataclass(frozen=True)
class Entry:
    """``<entry uri=...>``: one member (RFC 4826 §3.2)."""

    uri: str
    display_name: DisplayName | None = None

    def __post_init__(self) -> None:
        _check_uri(self.uri, "entry uri")


@dataclass(frozen=True)
class EntryRef:
    """``<entry-ref ref=...>``: an entry elsewhere, by XCAP URI relative to the XCAP root
    (RFC 4826 §3.2)."""

    ref: str
    display_name: DisplayName | None = None

    def __post_init__(self) -> None:
        _check_uri(self.ref, "entry-ref ref")


@dataclass(frozen=True)
class External:
    """``<external anchor=...>``: a whole list elsewhere, by absolute HTTP URI
    (RFC 4826 §3.2). The schema makes ``anchor`` optional; one without it names nothing
    and expands to nothing."""

    anchor: str | None
    display_name: DisplayName | None = None

    def __post_init__(self) -> None:
        if self.anchor is not None:
            _check_uri(self.anchor, "external anchor")


@dataclass(frozen=True)
class ResourceList:
    """``<list name=...>``: members, references and nested lists, in document order."""

    name: str | None = None
    display_name: DisplayName | None = None
    items: tuple[ListItem, ...] = ()

    def lists(self) -> Iterator[ResourceList]:
        """This list and every list nested in it, depth first."""
        yield self
        for item in self.items:
            if isinstance(item, ResourceList):
                yield from item.lists()


ListItem: TypeAlias = "Entry | EntryRef | External | ResourceList"


@dataclass(frozen=True)
class ResourceLists:
    """A ``<resource-lists>`` document: its top-level lists."""

    lists: tuple[ResourceList, ...] = ()

    def find(self, *names: str) -> ResourceList | None:
        """The list reached through ``names`` (top level first), or None."""
        candidates = self.lists
        found: ResourceList | None = None
        for name in names:
            found = next((c for c in candidates if c.name == name), None)
            if found is None:
                return None
            candidates = tuple(i for i in found.items if isinstance(i, ResourceList))
        return found


def _check_uri(value: str, what: str) -> None:
    if not value or value != value.strip():
        raise ResourceListsError(f"{what} is empty or padded")


# ------------------------------------------------------------------ build


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


def _display(parent: etree._Element, name: DisplayName | None) -> None:
    if name is not None:
        el = etree.SubElement(parent, _q("display-name"))
        el.text = name.text
        if name.lang is not None:
            el.set(XML_LANG, name.lang)


def _build_list(parent: etree._Element, lst: ResourceList) -> None:
    el = etree.SubElement(parent, _q("list"))
    if lst.name is not None:
        el.set("name", lst.name)
    _display(el, lst.display_name)
    for item in lst.items:
        if isinstance(item, ResourceList):
            _build_list(el, item)
            continue
        if isinstance(item, Entry):
            child = etree.SubElement(el, _q("entry"), uri=item.uri)
        elif isinstance(item, EntryRef):
            child = etree.SubElement(el, _q("entry-ref"), ref=item.ref)
        else:
            child = etree.SubElement(el, _q("external"))
            if item.anchor is not None:
                child.set("anchor", item.anchor)
        _display(child, item.display_name)


def build_resource_lists(doc: ResourceLists) -> bytes:
    """UTF-8 XML in the RFC 4826 §3.2 schema."""
    root = etree.Element(_q("resource-lists"), nsmap=nsmap(NS))
    for lst in doc.lists:
        _build_list(root, lst)
    return serialize(root)


# ------------------------------------------------------------------ parse


class _Counter:
    def __init__(self, limits: ListLimits) -> None:
        self.limits = limits
        self.entries = 0

    def add(self) -> None:
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise ListTooLarge(f"list has more than {self.limits.max_entries} entries")


def _display_name(el: etree._Element) -> DisplayName | None:
    for child in el:
        if child.tag == _q("display-name"):
            return DisplayName(child.text or "", child.get(XML_LANG))
    return None


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise ResourceListsError(f"<{etree.QName(el).localname}> lacks the {name} attribute")
    return value.strip()


def _parse_list(el: etree._Element, depth: int, counter: _Counter) -> ResourceList:
    if depth > counter.limits.max_depth:
        raise ListRefused(f"lists nested deeper than {counter.limits.max_depth}")
    items: list[ListItem] = []
    for child in el:
        tag = child.tag
        if tag == _q("list"):
            items.append(_parse_list(child, depth + 1, counter))
        elif tag == _q("entry"):
            counter.add()
            items.append(Entry(_required(child, "uri"), _display_name(child)))
        elif tag == _q("entry-ref"):
            counter.add()
            items.append(EntryRef(_required(child, "ref"), _display_name(child)))
        elif tag == _q("external"):
            counter.add()
            anchor = child.get("anchor")
            items.append(External(anchor.strip() if anchor else None, _display_name(child)))
        elif isinstance(tag, str) and tag.startswith(f"{{{NS}}}") and tag != _q("display-name"):
            raise ResourceListsError(f"unknown element {etree.QName(child).localname} in <list>")
        # other namespaces: ignored (##other)
    return ResourceList(el.get("name"), _display_name(el), tuple(items))


def parse_resource_lists(data: bytes, limits: ListLimits | None = None) -> ResourceLists:
    """Parse an untrusted resource-lists body (413 / 403 / 400 errors, module docstring)."""
    limits = limits or ListLimits()
    if len(data) > limits.max_bytes:
        raise ListTooLarge(f"resource-lists body of {len(data)} bytes exceeds {limits.max_bytes}")
    root = parse_xml(
        data,
        max_bytes=limits.max_bytes,
        max_depth=limits.xml_depth(),
        max_elements=limits.xml_elements(),
    )
    if root.tag != _q("resource-lists"):
        raise ResourceListsError(f"root element is {root.tag}, not resource-lists")
    counter = _Counter(limits)
    lists = []
    for child in root:
        if child.tag == _q("list"):
            lists.append(_parse_list(child, 1, counter))
        elif isinstance(child.tag, str) and child.tag.startswith(f"{{{NS}}}"):
            raise ResourceListsError("<resource-lists> holds only <list> elements")
    return ResourceLists(tuple(lists))


# ------------------------------------------------------------------ expansion

Resolved: TypeAlias = "Entry | ResourceList | None"
Resolver: TypeAlias = "Callable[[str], Entry | ResourceList | None]"
"""Maps an ``entry-ref`` ref or ``external`` anchor to what it names (None: unknown)."""


@dataclass(frozen=True)
class Expansion:
    """The members of a list: unique by URI in document order (the first display name
    wins), and the references that could not be resolved."""

    entries: tuple[Entry, ...]
    unresolved: tuple[str, ...] = ()


def expand(
    root: ResourceList | ResourceLists,
    resolve: Resolver | None = None,
    limits: ListLimits | None = None,
) -> Expansion:
    """Flatten ``root`` (a list, or every list of a document) into its members.

    ``resolve`` follows references (None: none are followed, all are unresolved). Raises
    :class:`ListLoop` when a reference leads back into a list being expanded,
    :class:`ListRefused` past ``max_depth`` and :class:`ListTooLarge` past
    ``max_entries`` distinct members (so a resolver's answers are bounded too).
    """
    limits = limits or ListLimits()
    seen: dict[str, Entry] = {}
    unresolved: list[str] = []
    active: list[int] = []  # id() of the lists being expanded (the path from root)
    following: set[str] = set()  # references on the path

    def add(entry: Entry) -> None:
        if entry.uri not in seen:
            if len(seen) >= limits.max_entries:
                raise ListTooLarge(f"list expands to more than {limits.max_entries} entries")
            seen[entry.uri] = entry

    def follow(ref: str, depth: int) -> None:
        if ref in following:
            raise ListLoop(f"reference loop through {ref}")
        target = resolve(ref) if resolve is not None else None
        if target is None:
            if ref not in unresolved:
                unresolved.append(ref)
        elif isinstance(target, Entry):
            add(target)
        else:
            following.add(ref)
            walk(target, depth + 1)
            following.discard(ref)

    def walk(lst: ResourceList, depth: int) -> None:
        if depth > limits.max_depth:
            raise ListRefused(f"list nesting deeper than {limits.max_depth}")
        if id(lst) in active:
            raise ListLoop(f"list {lst.name!r} contains itself")
        active.append(id(lst))
        for item in lst.items:
            if isinstance(item, Entry):
                add(item)
            elif isinstance(item, ResourceList):
                walk(item, depth + 1)
            elif isinstance(item, EntryRef):
                follow(item.ref, depth)
            elif item.anchor is not None:
                follow(item.anchor, depth)
        active.pop()

    for lst in root.lists if isinstance(root, ResourceLists) else (root,):
        walk(lst, 1)
    return Expansion(tuple(seen.values()), tuple(unresolved))


# XCAP node selector steps (RFC 4825 §6.3) of the forms this document uses:
# list[@name="x"] and entry[@uri="y"], percent-decoded first.
_STEP = re.compile(r'(list|entry)\[@(name|uri)="([^"]*)"\]\Z')
_SEPARATOR: Final = "/~~/"


def document_resolver(doc: ResourceLists, document_uri: str) -> Resolver:
    """A resolver for references into ``doc`` itself, stored at ``document_uri``.

    ``document_uri`` is the document's path relative to the XCAP root
    (``resource-lists/users/sip:bill@example.com/index``), which is how ``entry-ref``
    refs start (RFC 4826 §3.2); an ``external`` anchor is absolute and matches when it
    ends with ``/`` + that path. The node selector after ``~~`` may name nested lists by
    ``list[@name="..."]`` and end in one ``entry[@uri="..."]``; anything else, or a
    reference to another document, resolves to None.
    """
    prefix = document_uri.strip("/") + _SEPARATOR

    def resolve(ref: str) -> Resolved:
        decoded = unquote("".join(ref.split()))  # RFC examples fold refs across lines
        at = decoded.find(prefix)
        if at < 0 or (at > 0 and not decoded[:at].endswith("/")):
            return None
        if at > 0 and not decoded.startswith(("http://", "https://")):
            return None
        steps = decoded[at + len(prefix) :].split("/")
        if not steps or steps[0] != "resource-lists":
            return None
        names: list[str] = []
        entry_uri: str | None = None
        for i, step in enumerate(steps[1:], start=1):
            m = _STEP.match(step)
            if m is None or (m.group(1) == "list") != (m.group(2) == "name"):
                return None
            if m.group(1) == "entry":
                if i != len(steps) - 1:
                    return None
                entry_uri = m.group(3)
            else:
                names.append(m.group(3))
        lst = doc.find(*names) if names else None
        if lst is None:
            return None
        if entry_uri is None:
            return lst
        return next((i for i in lst.items if isinstance(i, Entry) and i.uri == entry_uri), None)

    return resolve

"""Resource List Meta-Information (RFC 4662 §5) and its multipart/related body (RFC 2387).

A list NOTIFY (``Require: eventlist``) carries ``multipart/related;
type="application/rlmi+xml"; start="<cid>"``: the RLMI document as the root part, then one
part per resource instance whose state is known (a PIDF document for presence, or a
nested list's own multipart/related body), each named by ``Content-ID`` and referenced
from the RLMI ``cid`` attributes.

This module is the document format only: frozen dataclasses, :func:`build_rlmi` /
:func:`parse_rlmi`, :func:`build_list_body` (RLMI + parts -> Content-Type value and body)
and :func:`parse_list_body` (for tests and for list NOTIFYs received on the SIP side).

Building is strict (RFC 4662 §5.4 MUSTs: ``reason`` on a terminated instance, ``cid`` on
an active one; every ``cid`` names a part and every part is named). Parsing accepts
what the schema accepts, but a ``cid`` that names no top-level part
(:class:`UnknownCid`) or a malformed body is a 400; a body larger than
``max_bytes`` or with more than ``max_parts`` parts is a 413.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, cast, get_args

from lxml import etree

from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import ContentType, parse_content_type
from mappings.xmlsafe import XML_LANG, FormatError, XmlTooLarge, nsmap, parse_xml, serialize

__all__ = [
    "MEDIA_TYPE",
    "NS",
    "BodyPart",
    "Instance",
    "InstanceState",
    "ListBody",
    "Name",
    "Resource",
    "RlmiError",
    "RlmiList",
    "UnknownCid",
    "build_list_body",
    "build_rlmi",
    "parse_list_body",
    "parse_rlmi",
]

MEDIA_TYPE: Final = "application/rlmi+xml"
NS: Final = "urn:ietf:params:xml:ns:rlmi"
MULTIPART_RELATED: Final = "multipart/related"

InstanceState = Literal["active", "pending", "terminated"]
_STATES: Final = frozenset(get_args(InstanceState))
_MAX_VERSION: Final = 2**32 - 1  # RFC 4662 §5.2: 0 .. 2^32-1
DEFAULT_MAX_BYTES: Final = 1024 * 1024
DEFAULT_MAX_PARTS: Final = 1024

# RFC 2046 §5.1.1: bchars, 1..70 characters, not ending in a space.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 2045 §5.1 token
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")


class RlmiError(FormatError):
    """Not an RLMI document or list body we can use: 400."""


class UnknownCid(RlmiError):
    """An RLMI ``cid`` (or the ``start`` parameter) names no part of the body: 400."""


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


@dataclass(frozen=True)
class Name:
    """``<name xml:lang=...>`` of a list or resource."""

    text: str
    lang: str | None = None


@dataclass(frozen=True)
class Instance:
    """One subscription to a resource (RFC 4662 §5.4: ``<instance>``)."""

    id: str
    state: InstanceState
    reason: str | None = None
    cid: str | None = None  # Content-ID without angle brackets

    def __post_init__(self) -> None:
        if not self.id:
            raise RlmiError("instance id is empty")
        if self.state not in _STATES:
            raise RlmiError(f"unknown instance state {self.state!r}")
        if self.cid is not None and not _cid_ok(self.cid):
            raise RlmiError(f"cid {self.cid!r} is not a Content-ID")


@dataclass(frozen=True)
class Resource:
    """``<resource uri=...>``: one list member and its instances (RFC 4662 §5.3)."""

    uri: str
    names: tuple[Name, ...] = ()
    instances: tuple[Instance, ...] = ()

    def __post_init__(self) -> None:
        if not self.uri or self.uri != self.uri.strip():
            raise RlmiError("resource uri is empty or padded")


@dataclass(frozen=True)
class RlmiList:
    """``<list>``: the RLMI root (RFC 4662 §5.2)."""

    uri: str
    version: int
    full_state: bool
    names: tuple[Name, ...] = ()
    resources: tuple[Resource, ...] = ()
    cid: str | None = None  # aggregate state part, if any

    def __post_init__(self) -> None:
        if not self.uri or self.uri != self.uri.strip():
            raise RlmiError("list uri is empty or padded")
        if not 0 <= self.version <= _MAX_VERSION:
            raise RlmiError(f"version {self.version} out of range")
        if self.cid is not None and not _cid_ok(self.cid):
            raise RlmiError(f"cid {self.cid!r} is not a Content-ID")

    def cids(self) -> tuple[str, ...]:
        """Every cid the document references, in document order."""
        out = [self.cid] if self.cid is not None else []
        out += [i.cid for r in self.resources for i in r.instances if i.cid is not None]
        return tuple(out)


def _cid_ok(cid: str) -> bool:
    # RFC 2392 addr-spec; here: printable ASCII without brackets, spaces or quotes.
    return bool(cid) and all(33 <= ord(c) < 127 and c not in '<>"' for c in cid)


# ------------------------------------------------------------------ RLMI document


def _names(parent: etree._Element, names: Iterable[Name]) -> None:
    for name in names:
        el = etree.SubElement(parent, _q("name"))
        el.text = name.text
        if name.lang is not None:
            el.set(XML_LANG, name.lang)


def build_rlmi(doc: RlmiList) -> bytes:
    """UTF-8 XML in the RFC 4662 §5.1 schema; raises RlmiError on a §5.4 MUST violation."""
    root = etree.Element(
        _q("list"),
        nsmap=nsmap(NS),
        uri=doc.uri,
        version=str(doc.version),
        fullState="true" if doc.full_state else "false",
    )
    if doc.cid is not None:
        root.set("cid", doc.cid)
    _names(root, doc.names)
    for res in doc.resources:
        el = etree.SubElement(root, _q("resource"), uri=res.uri)
        _names(el, res.names)
        for inst in res.instances:
            if inst.state == "terminated" and not inst.reason:
                raise RlmiError(f"terminated instance {inst.id!r} needs a reason (§5.4)")
            if inst.state == "active" and inst.cid is None:
                raise RlmiError(f"active instance {inst.id!r} needs a cid (§5.4)")
            item = etree.SubElement(el, _q("instance"), id=inst.id, state=inst.state)
            if inst.reason is not None:
                item.set("reason", inst.reason)
            if inst.cid is not None:
                item.set("cid", inst.cid)
    return serialize(root)


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise RlmiError(f"<{etree.QName(el).localname}> lacks the {name} attribute")
    return value


def _parse_names(el: etree._Element) -> tuple[Name, ...]:
    return tuple(Name(c.text or "", c.get(XML_LANG)) for c in el if c.tag == _q("name"))


_BOOLEAN: Final = {"true": True, "1": True, "false": False, "0": False}  # xs:boolean


def _opt_cid(el: etree._Element) -> str | None:
    cid = el.get("cid")
    return None if cid is None else cid.strip()


def parse_rlmi(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> RlmiList:
    """Parse an untrusted RLMI document (hardened parser; RlmiError / XmlRejected)."""
    root = parse_xml(data, max_bytes=max_bytes, max_elements=8 * DEFAULT_MAX_PARTS)
    if root.tag != _q("list"):
        raise RlmiError(f"root element is {root.tag}, not an RLMI list")
    version = _required(root, "version").strip()
    if not version.isdigit():
        raise RlmiError(f"version is not an unsigned integer: {version!r}")
    full = _BOOLEAN.get(_required(root, "fullState").strip())
    if full is None:
        raise RlmiError("fullState is not a boolean")
    resources = []
    for res in root:
        if res.tag != _q("resource"):
            continue
        instances = tuple(
            Instance(
                _required(i, "id"),
                cast(InstanceState, _required(i, "state")),
                i.get("reason"),
                _opt_cid(i),
            )
            for i in res
            if i.tag == _q("instance")
        )
        resources.append(Resource(_required(res, "uri").strip(), _parse_names(res), instances))
    return RlmiList(
        _required(root, "uri").strip(),
        int(version),
        full,
        _parse_names(root),
        tuple(resources),
        _opt_cid(root),
    )


# ------------------------------------------------------------------ multipart/related


@dataclass(frozen=True)
class BodyPart:
    """One MIME part: its Content-ID (without brackets), Content-Type and bytes."""

    content_id: str
    content_type: str
    body: bytes

    def __post_init__(self) -> None:
        if not _cid_ok(self.content_id):
            raise RlmiError(f"Content-ID {self.content_id!r} is not valid")
        if not self.content_type or any(c in self.content_type for c in "\r\n"):
            raise RlmiError("Content-Type is empty or spans lines")


@dataclass(frozen=True)
class ListBody:
    """A list notification body: the Content-Type header value, the RLMI document and
    the other parts by Content-ID (read-only)."""

    content_type: str
    rlmi: RlmiList
    parts: Mapping[str, BodyPart]
    body: bytes


def build_list_body(
    rlmi: RlmiList,
    parts: Iterable[BodyPart],
    *,
    root_cid: str,
    boundary: str,
    bare_content_ids: bool = False,
) -> ListBody:
    """RFC 2387 multipart/related with the RLMI document first (the ``start`` part).

    ``boundary`` comes from the caller (pure: no randomness here); it must be an
    RFC 2046 boundary that occurs in no part. Every cid the RLMI references must name
    one of ``parts`` and every part must be referenced (RFC 4662 §5: one part per
    instance with state).

    ``bare_content_ids``: write ``Content-Id: cid`` without the RFC 2045 angle
    brackets, the form liblinphone (5.1) matches the RLMI ``cid`` against
    (docs/lists.md, "Linphone"); such a body is not for RFC-conforming readers.
    """
    if not _BOUNDARY.fullmatch(boundary):
        raise RlmiError(f"boundary {boundary!r} is not an RFC 2046 boundary")
    by_cid: dict[str, BodyPart] = {}
    for part in parts:
        if part.content_id in by_cid or part.content_id == root_cid:
            raise RlmiError(f"duplicate Content-ID {part.content_id!r}")
        by_cid[part.content_id] = part
    referenced = rlmi.cids()
    missing = [cid for cid in referenced if cid not in by_cid]
    if missing:
        raise UnknownCid(f"RLMI references cids with no part: {missing}")
    unused = set(by_cid) - set(referenced)
    if unused:
        raise RlmiError(f"parts not referenced by the RLMI: {sorted(unused)}")
    root = BodyPart(root_cid, f'{MEDIA_TYPE};charset="UTF-8"', build_rlmi(rlmi))
    delimiter = f"--{boundary}".encode("ascii")
    out = bytearray()
    for part in (root, *by_cid.values()):
        if delimiter in part.body:
            raise RlmiError("boundary occurs in a part")
        out += delimiter + b"\r\n"
        out += b"Content-Transfer-Encoding: binary\r\n"
        if bare_content_ids:
            out += f"Content-Id: {part.content_id}\r\n".encode("ascii")
        else:
            out += f"Content-ID: <{part.content_id}>\r\n".encode("ascii")
        out += f"Content-Type: {part.content_type}\r\n\r\n".encode()
        out += part.body + b"\r\n"
    out += delimiter + b"--\r\n"
    # RFC 2045 §5.1: a boundary that is a token goes unquoted. liblinphone's belle-sip
    # (5.1) keeps the quotes of a quoted one as part of the boundary and cannot split
    # the body (tests/integration/test_linphone.py, docs/lists.md).
    param = boundary if _TOKEN.fullmatch(boundary) else f'"{boundary}"'
    content_type = f'{MULTIPART_RELATED};type="{MEDIA_TYPE}";start="<{root_cid}>";boundary={param}'
    return ListBody(content_type, rlmi, MappingProxyType(by_cid), bytes(out))


_HEADER = re.compile(rb"([!-9;-~]+)[ \t]*:[ \t]*(.*)")


def _split_parts(body: bytes, boundary: str, max_parts: int) -> list[bytes]:
    """RFC 2046 §5.1.1: the parts between ``--boundary`` lines up to the close delimiter
    (CRLF; bare LF accepted). Preamble and epilogue are ignored."""
    delimiter = re.escape(f"--{boundary}".encode("ascii"))
    line = re.compile(rb"(?:\A|\r?\n)" + delimiter + rb"(--)?[ \t]*(?:\r?\n|\Z)")
    parts: list[bytes] = []
    start: re.Match[bytes] | None = None
    for mark in line.finditer(body):
        if start is not None:
            parts.append(body[start.end() : mark.start()])
            if len(parts) > max_parts:
                raise XmlTooLarge(f"multipart body has more than {max_parts} parts")
        if mark.group(1) is not None:
            if not parts:
                raise RlmiError("multipart body has no parts")
            return parts
        start = mark
    raise RlmiError("multipart body lacks its closing delimiter")


def _read_part(raw: bytes) -> BodyPart:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    if not sep:
        if raw.startswith((b"\r\n", b"\n")):  # no headers at all
            head, body = b"", raw.split(b"\n", 1)[1]
        else:
            raise RlmiError("part lacks the blank line after its headers")
    headers: dict[str, str] = {}
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", head)
    for line in unfolded.splitlines():
        m = _HEADER.fullmatch(line)
        if m is None:
            raise RlmiError("malformed part header")
        headers[m.group(1).decode("ascii").lower()] = m.group(2).decode("utf-8", "replace")
    cid = headers.get("content-id", "").strip()
    if not (cid.startswith("<") and cid.endswith(">")):
        raise RlmiError("part lacks a Content-ID <...>")
    ctype = headers.get("content-type", "").strip()
    encoding = headers.get("content-transfer-encoding", "binary").strip().lower()
    if encoding not in ("binary", "8bit", "7bit"):
        raise RlmiError(f"Content-Transfer-Encoding {encoding!r} is not supported")
    return BodyPart(cid[1:-1].strip(), ctype or "text/plain", body)


def _content_type(value: str) -> ContentType:
    try:
        return parse_content_type(value)
    except RemoteProtocolError as exc:
        raise RlmiError(str(exc)) from None


def parse_list_body(
    content_type: str,
    body: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_parts: int = DEFAULT_MAX_PARTS,
) -> ListBody:
    """Parse an untrusted list NOTIFY body given its Content-Type header value.

    The root part is the one ``start`` names (RFC 2387 §3.2; the first part when
    ``start`` is absent) and must be RLMI. Every RLMI cid must name a part of this body
    (:class:`UnknownCid`); nested multipart parts are returned as they are.
    """
    if len(body) > max_bytes:
        raise XmlTooLarge(f"list body of {len(body)} bytes exceeds {max_bytes}")
    ctype = _content_type(content_type)
    if ctype.mime != MULTIPART_RELATED:
        raise RlmiError(f"list body is {ctype.mime}, not {MULTIPART_RELATED}")
    root_type = (ctype.params.get("type") or "").lower()
    if root_type != MEDIA_TYPE:
        raise RlmiError(f"multipart/related type is {root_type!r}, not {MEDIA_TYPE}")
    boundary = ctype.boundary
    if boundary is None or not _BOUNDARY.fullmatch(boundary):
        raise RlmiError("multipart body lacks a valid boundary")
    parts = [_read_part(raw) for raw in _split_parts(body, boundary, max_parts)]
    by_cid: dict[str, BodyPart] = {}
    for part in parts:
        if part.content_id in by_cid:
            raise RlmiError(f"duplicate Content-ID {part.content_id!r}")
        by_cid[part.content_id] = part
    start = ctype.params.get("start")
    root_cid = start.strip().strip("<>") if start else parts[0].content_id
    root = by_cid.pop(root_cid, None)
    if root is None:
        raise UnknownCid(f"start {root_cid!r} names no part")
    if _content_type(root.content_type).mime != MEDIA_TYPE:
        raise RlmiError(f"root part is {root.content_type}, not {MEDIA_TYPE}")
    rlmi = parse_rlmi(root.body, max_bytes=max_bytes)
    missing = [cid for cid in rlmi.cids() if cid not in by_cid]
    if missing:
        raise UnknownCid(f"RLMI references cids with no part: {missing}")
    return ListBody(content_type, rlmi, MappingProxyType(by_cid), body)

"""XCAP URIs (RFC 4825 §6): document selectors, node selectors and xmlns() bindings.

``<root>/<auid>/users/<xui>/<document>[/~~/<node selector>][?xmlns(p=ns)...]``, or
``<root>/<auid>/global/<document>``. The node selector is percent-decoded (§6.3), then
read with the §6.3 grammar: steps by name (``*`` or a QName), ``[n]`` position and
``[@attr="v"]`` attribute test (position first when both), and an optional terminal
``@attr`` (attribute selector) or ``namespace::*`` (namespace selector).

Names are resolved here into Clark notation (``{ns}local``): an element name without a
prefix is in the application usage's default document namespace (§6.4), an attribute
name without a prefix is in no namespace, and a prefix must be bound by an ``xmlns()``
expression of the query (else 400). A document selector that names no document of this
server is 404 (documents are named ``index``: one per user and application usage); a
node selector that does not follow the grammar is 400.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import unquote
from xml.sax.saxutils import unescape

from gateway.xcap.errors import XcapError, not_found

__all__ = [
    "AttributeSelector",
    "DocumentSelector",
    "NamespaceSelector",
    "NodeSelector",
    "Step",
    "XcapUri",
    "parse_bindings",
    "parse_node_selector",
    "parse_xcap_uri",
]

SEPARATOR: Final = "/~~/"
_NCNAME = r"[A-Za-z_][\w.\-]*"
_QNAME = re.compile(rf"(?:({_NCNAME}):)?({_NCNAME})\Z")
# One document per user and usage, the well-known name (RFC 4826 §3.7, RFC 5025 §9.7,
# RFC 4825 §12.7): what the gateway reads, and a bound on what a user can store.
DOCUMENT_NAME: Final = "index"
_AUID = re.compile(r"[a-z0-9][a-z0-9.\-]{0,63}\Z")
_XMLNS = re.compile(rf"\s*xmlns\(\s*({_NCNAME})\s*=\s*([^)\s]+)\s*\)")
_ENTITIES: Final = {"&quot;": '"', "&apos;": "'"}
MAX_STEPS: Final = 32
MAX_SELECTOR: Final = 4096  # characters of a decoded node selector


def _bad(reason: str) -> XcapError:
    return XcapError(400, reason)


@dataclass(frozen=True)
class DocumentSelector:
    """``auid`` / ``global`` or ``users/<xui>`` / ``name`` (§6.2); ``xui`` None: global."""

    auid: str
    xui: str | None
    name: str

    @property
    def path(self) -> str:
        """The selector as text (not percent-encoded)."""
        home = "global" if self.xui is None else f"users/{self.xui}"
        return f"{self.auid}/{home}/{self.name}"


@dataclass(frozen=True)
class Step:
    """One element step: ``name`` in Clark notation or ``*``; ``position`` 1-based; an
    attribute test (``attr`` in Clark notation, ``value``)."""

    name: str
    position: int | None = None
    attr: str | None = None
    value: str | None = None

    def matches_name(self, tag: object) -> bool:
        return isinstance(tag, str) and self.name in ("*", tag)


@dataclass(frozen=True)
class AttributeSelector:
    name: str  # Clark notation


@dataclass(frozen=True)
class NamespaceSelector:
    pass


Terminal = AttributeSelector | NamespaceSelector


@dataclass(frozen=True)
class NodeSelector:
    steps: tuple[Step, ...]
    terminal: Terminal | None = None

    @property
    def kind(self) -> Literal["element", "attribute", "namespace"]:
        if isinstance(self.terminal, AttributeSelector):
            return "attribute"
        return "element" if self.terminal is None else "namespace"


@dataclass(frozen=True)
class XcapUri:
    document: DocumentSelector
    node: NodeSelector | None = None
    node_text: str | None = None  # the decoded node selector, for conflict reports


def parse_bindings(query: str) -> dict[str, str]:
    """The ``xmlns(prefix=namespace)`` expressions of a query (§6.4); 400 on anything else."""
    text = unquote(query)
    bindings: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _XMLNS.match(text, pos)
        if m is None:
            if text[pos:].strip():
                raise _bad("the query holds something other than xmlns() expressions")
            break
        bindings[m.group(1)] = m.group(2)
        pos = m.end()
    return bindings


def _split_steps(text: str) -> list[str]:
    """Split on "/" outside quoted attribute values."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "/":
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if quote:
        raise _bad("unterminated attribute value in the node selector")
    parts.append("".join(current))
    return parts


def _resolve(qname: str, bindings: dict[str, str], default_ns: str | None) -> str:
    m = _QNAME.match(qname)
    if m is None:
        raise _bad(f"{qname!r} is not a QName")
    prefix, local = m.groups()
    if prefix is None:
        return local if default_ns is None else f"{{{default_ns}}}{local}"
    ns = bindings.get(prefix)
    if ns is None:
        raise _bad(f"prefix {prefix!r} is not bound by an xmlns() expression")
    return f"{{{ns}}}{local}"


_STEP = re.compile(
    rf"(\*|(?:{_NCNAME}:)?{_NCNAME})"
    r"(?:\[([0-9]+)\])?"
    rf"(?:\[@((?:{_NCNAME}:)?{_NCNAME})=(\"[^\"<]*\"|'[^'<]*')\])?\Z"
)


def _step(text: str, bindings: dict[str, str], default_ns: str | None) -> Step:
    m = _STEP.match(text)
    if m is None:
        raise _bad(f"step {text!r} does not follow RFC 4825 §6.3")
    name_text, pos_text, attr_text, quoted = m.groups()
    name = "*" if name_text == "*" else _resolve(name_text, bindings, default_ns)
    position = None if pos_text is None else int(pos_text)
    if position is not None and not 0 < position <= 1_000_000:
        raise _bad(f"position {pos_text} out of range")
    if attr_text is None:
        return Step(name, position)
    value = unescape(quoted[1:-1], _ENTITIES)
    return Step(name, position, _resolve(attr_text, bindings, None), value)


def parse_node_selector(
    text: str, bindings: dict[str, str], default_ns: str | None
) -> NodeSelector:
    """A decoded node selector (§6.3) -> its steps and terminal; 400 when malformed."""
    if not text or len(text) > MAX_SELECTOR:
        raise _bad("empty or oversized node selector")
    parts = _split_steps(text)
    terminal: Terminal | None = None
    last = parts[-1]
    if last == "namespace::*":
        terminal, parts = NamespaceSelector(), parts[:-1]
    elif last.startswith("@"):
        terminal, parts = AttributeSelector(_resolve(last[1:], bindings, None)), parts[:-1]
    if not parts or len(parts) > MAX_STEPS:
        raise _bad("a node selector has 1 to 32 element steps")
    return NodeSelector(tuple(_step(p, bindings, default_ns) for p in parts), terminal)


def _segment(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise not_found("a path segment is not UTF-8") from None


def parse_xcap_uri(
    path: str,
    query: str,
    *,
    root: str,
    default_ns: dict[str, str | None],
) -> XcapUri:
    """Parse a request path (still percent-encoded) under the XCAP ``root`` path.

    ``default_ns`` maps each application usage this server knows (its AUID) to its
    default document namespace; an unknown AUID is 404.
    """
    root = "/" + root.strip("/") if root.strip("/") else ""
    if not path.startswith(root + "/"):
        raise not_found("not under the XCAP root")
    rest = path[len(root) + 1 :]
    doc_part, sep, node_part = rest.partition(SEPARATOR)
    if not sep and rest.endswith("/~~"):
        raise _bad("empty node selector")
    segments = [_segment(s) for s in doc_part.split("/")]
    if len(segments) < 3 or not _AUID.match(segments[0]) or segments[0] not in default_ns:
        raise not_found("no such application usage or document")
    auid, home = segments[0], segments[1]
    if home == "global" and len(segments) == 3:
        xui = None
    elif home == "users" and len(segments) == 4 and segments[2]:
        xui = segments[2]
    else:
        raise not_found("documents are <auid>/users/<xui>/<name> or <auid>/global/<name>")
    name = segments[-1]
    if name != DOCUMENT_NAME:
        raise not_found(f"no document named {name!r}: this server keeps one, {DOCUMENT_NAME!r}")
    document = DocumentSelector(auid, xui, name)
    if not sep:
        return XcapUri(document)
    node_text = _segment(node_part)
    bindings = parse_bindings(query)
    node = parse_node_selector(node_text, bindings, default_ns[auid])
    return XcapUri(document, node, node_text)

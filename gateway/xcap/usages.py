"""The application usages this server knows (RFC 4825 §5, §12): AUID, MIME type, default
document namespace, and the validation every write must pass (§8.2.5).

* ``resource-lists`` (RFC 4826 §3.4): parsed with :func:`mappings.resourcelists.
  parse_resource_lists` under the server's size bound, plus the §3.4.3 uniqueness
  constraints (``name`` of ``<list>``, ``uri`` of ``<entry>``, ``ref`` of
  ``<entry-ref>``, ``anchor`` of ``<external>``, each unique among its siblings).
* ``pres-rules`` (RFC 5025 §9): parsed with :func:`mappings.presrules.parse_pres_rules`,
  with rule ids unique (xs:ID).
* ``xcap-caps`` (RFC 4825 §12): read only, one global document built by :mod:`caps`.

A document that fails is a 409 with the §11 report (``schema-validation-error``,
``uniqueness-failure``, ``constraint-failure``), or 413 when it is too large.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from lxml import etree

from gateway.xcap.errors import (
    XcapError,
    constraint_failure,
    not_well_formed,
    schema_validation_error,
    uniqueness_failure,
)
from mappings import presrules, resourcelists
from mappings.xmlsafe import FormatError, XmlRejected, XmlTooLarge

__all__ = ["CAPS_AUID", "CAPS_NS", "PRES_RULES", "RESOURCE_LISTS", "Usage", "usages"]

CAPS_AUID: Final = "xcap-caps"
CAPS_NS: Final = "urn:ietf:params:xml:ns:xcap-caps"
CAPS_MIME: Final = "application/xcap-caps+xml"
RESOURCE_LISTS: Final = "resource-lists"
PRES_RULES: Final = "pres-rules"

Checker = Callable[[etree._Element], None]
Validator = Callable[[bytes, int], object]


@dataclass(frozen=True)
class Usage:
    """One application usage: ``validate(document, max_bytes)`` raises a mappings
    ``FormatError`` for an invalid document; ``unique`` checks §-level uniqueness
    constraints on the parsed tree (raising an ``XcapError``)."""

    auid: str
    mime: str
    default_ns: str | None
    validate: Validator
    unique: Checker = field(default=lambda _root: None)
    writable: bool = True
    namespaces: tuple[str, ...] = ()

    def check(self, document: bytes, root: etree._Element, max_bytes: int) -> None:
        """§8.2.5: the document after a write must be valid; raises XcapError."""
        self.unique(root)
        try:
            self.validate(document, max_bytes)
        except XmlTooLarge as exc:
            raise XcapError(413, str(exc)) from None
        except resourcelists.ListTooLarge as exc:
            raise XcapError(413, str(exc)) from None
        except resourcelists.ListRefused as exc:
            raise constraint_failure(str(exc)) from None
        except XmlRejected as exc:
            raise not_well_formed(str(exc)) from None
        except FormatError as exc:
            raise schema_validation_error(str(exc)) from None


def _unique_children(parent: etree._Element, rules: dict[str, str], where: str) -> None:
    seen: set[tuple[str, str]] = set()
    for child in parent:
        attr = rules.get(child.tag) if isinstance(child.tag, str) else None
        if attr is None:
            continue
        value = child.get(attr)
        if value is None:
            continue
        key = (str(child.tag), value)
        if key in seen:
            local = etree.QName(child).localname
            raise uniqueness_failure(
                f'two <{local}> with {attr}="{value}" in {where}',
                f'{where}/{local}[@{attr}="{value}"]/@{attr}',
            )
        seen.add(key)


_RL = f"{{{resourcelists.NS}}}"
_RL_UNIQUE: Final = {
    f"{_RL}list": "name",
    f"{_RL}entry": "uri",
    f"{_RL}entry-ref": "ref",
    f"{_RL}external": "anchor",
}


def _resource_lists_unique(root: etree._Element) -> None:
    """RFC 4826 §3.4.3 uniqueness within each parent."""
    _unique_children(root, _RL_UNIQUE, "resource-lists")
    for lst in root.iter(f"{_RL}list"):
        _unique_children(lst, _RL_UNIQUE, f'list[@name="{lst.get("name", "")}"]')


def _pres_rules_unique(root: etree._Element) -> None:
    _unique_children(root, {f"{{{presrules.CP_NS}}}rule": "id"}, "ruleset")


def _validate_lists(document: bytes, max_bytes: int) -> object:
    return resourcelists.parse_resource_lists(
        document, resourcelists.ListLimits(max_bytes=max_bytes)
    )


def _validate_rules(document: bytes, max_bytes: int) -> object:
    if len(document) > max_bytes:
        raise XmlTooLarge(f"document of {len(document)} bytes exceeds {max_bytes}")
    return presrules.parse_pres_rules(document)


def _read_only(document: bytes, max_bytes: int) -> object:
    raise XcapError(405, "xcap-caps is read only")


def usages() -> dict[str, Usage]:
    """AUID -> usage, for every application usage of this server."""
    return {
        RESOURCE_LISTS: Usage(
            RESOURCE_LISTS,
            resourcelists.MEDIA_TYPE,
            resourcelists.NS,
            _validate_lists,
            _resource_lists_unique,
            namespaces=(resourcelists.NS,),
        ),
        PRES_RULES: Usage(
            PRES_RULES,
            presrules.MEDIA_TYPE,
            presrules.CP_NS,
            _validate_rules,
            _pres_rules_unique,
            namespaces=(presrules.CP_NS, presrules.PR_NS),
        ),
        CAPS_AUID: Usage(CAPS_AUID, CAPS_MIME, CAPS_NS, _read_only, writable=False),
    }

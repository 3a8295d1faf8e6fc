"""The xcap-caps document (RFC 4825 §12.2): the AUIDs, extensions and namespaces this
server supports, served read only at ``xcap-caps/global/index``."""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from gateway.xcap.usages import CAPS_NS, Usage
from mappings.xmlsafe import nsmap, serialize

__all__ = ["caps_document"]


def caps_document(usages: Iterable[Usage]) -> bytes:
    items = list(usages)
    root = etree.Element(f"{{{CAPS_NS}}}xcap-caps", nsmap=nsmap(CAPS_NS))
    auids = etree.SubElement(root, f"{{{CAPS_NS}}}auids")
    for u in items:
        etree.SubElement(auids, f"{{{CAPS_NS}}}auid").text = u.auid
    etree.SubElement(root, f"{{{CAPS_NS}}}extensions")
    namespaces = etree.SubElement(root, f"{{{CAPS_NS}}}namespaces")
    seen = [CAPS_NS] + [ns for u in items for ns in u.namespaces]
    for ns in dict.fromkeys(seen):
        etree.SubElement(namespaces, f"{{{CAPS_NS}}}namespace").text = ns
    return serialize(root)

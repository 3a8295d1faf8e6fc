"""Shared test support for the issue-24 documents: schemas, RFC vectors, hostile bodies."""

from __future__ import annotations

import functools
from pathlib import Path

from lxml import etree

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SCHEMAS = VECTORS / "standards" / "schemas"
LISTS = VECTORS / "lists"


@functools.cache
def schema(name: str) -> etree.XMLSchema:
    """tests/vectors/standards/schemas/<name>.xsd (transcribed from its RFC)."""
    return etree.XMLSchema(etree.parse(str(SCHEMAS / f"{name}.xsd")))


def assert_valid(name: str, data: bytes) -> None:
    xsd = schema(name)
    assert xsd.validate(etree.fromstring(data)), (xsd.error_log, data)


def vector(name: str) -> bytes:
    """tests/vectors/lists/<name>, verbatim from its RFC (see README.md for errata)."""
    return (LISTS / name).read_bytes()


def hostile(root: bytes, ns: str) -> dict[str, bytes]:
    """Hostile variants of a document whose root element is ``root`` in namespace ``ns``:
    each must be refused with a defined error (mappings.xmlsafe)."""
    open_tag = b"<" + root + b' xmlns="' + ns.encode() + b'">'
    close_tag = b"</" + root + b">"
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' + open_tag + b"&b;" + close_tag
    )
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + open_tag
        + b"&x;"
        + close_tag
    )
    deep = open_tag + b"<x:a xmlns:x='urn:x'>" * 200 + b"</x:a>" * 200 + close_tag
    huge = open_tag + b"<!--" + b"x" * (2 * 1024 * 1024) + b"-->" + close_tag
    utf16 = ('<?xml version="1.0" encoding="UTF-16"?>' + open_tag.decode()).encode("utf-16")
    return {
        "billion-laughs": laughs,
        "external-entity": xxe,
        "deep": deep,
        "huge": huge,
        "utf-16": utf16,
        "malformed": open_tag + b"<unclosed>",
        "empty": b"",
    }

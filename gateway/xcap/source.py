"""The resource-list server's `ListSource` over the users' XCAP resource-lists
(docs/xcap.md, "List URIs").

A hosted user ``sip:alice@example.com`` owns one list URI, ``sip:alice-list@example.com``:
every list of the user's ``resource-lists/users/sip:alice@example.com/index`` document,
flattened by :func:`mappings.resourcelists.expand` (unique member URIs in document
order; ``entry-ref`` and ``external`` references into the same document followed,
others ignored). This is the informal mapping RFC 4826 §3.4 leaves to the server; the
formal one, ``rls-services`` (RFC 4826 §4), is not served.

Contract (gateway/bridge/lists/source.ListSource): ``list_of(list_uri)`` is the member
entries, or None when the URI is not a list URI or its owner has no document;
``on_change(callback)`` calls ``callback(list_uri)`` after the owner's document changed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Final

from gateway.logs import event
from gateway.memo import Memo
from gateway.xcap.service import DEFAULT_DOCUMENT, XcapDocuments
from gateway.xcap.usages import RESOURCE_LISTS
from mappings.resourcelists import (
    Entry,
    ListLimits,
    ResourceLists,
    document_resolver,
    expand,
    parse_resource_lists,
)
from mappings.xmlsafe import FormatError

__all__ = ["LIST_SUFFIX", "XcapListSource", "list_uri_of", "owner_of"]

log = logging.getLogger(__name__)

LIST_SUFFIX: Final = "-list"
_LIST_URI = re.compile(r"sips?:([^@;:]+)-list@([^;>?]+)\Z", re.IGNORECASE)


def list_uri_of(aor: str) -> str:
    """``sip:alice@example.com`` -> ``sip:alice-list@example.com``."""
    user, _, domain = aor.removeprefix("sip:").partition("@")
    return f"sip:{user}{LIST_SUFFIX}@{domain}"


def owner_of(list_uri: str) -> str | None:
    """``sip:alice-list@example.com`` -> ``sip:alice@example.com``; None otherwise."""
    m = _LIST_URI.match(list_uri.strip().strip("<>"))
    return None if m is None else f"sip:{m.group(1)}@{m.group(2).lower()}"


class XcapListSource:
    """`ListSource` for the RLS (gateway/bridge/lists/source.py) over `XcapDocuments`."""

    def __init__(self, documents: XcapDocuments, limits: ListLimits | None = None) -> None:
        self.documents = documents
        self.limits = limits or ListLimits(max_bytes=documents.max_bytes)
        # (owner, etag) -> members: the owner too, as references resolve into its document
        self._parsed: Memo[tuple[str, str], tuple[Entry, ...]] = Memo(1024)
        self._callbacks: list[Callable[[str], None]] = []
        documents.on_change(self._changed)

    def lists_of_user(self, aor: str) -> ResourceLists | None:
        """The user's whole resource-lists document, parsed; None without one."""
        doc = self.documents.document(RESOURCE_LISTS, aor, DEFAULT_DOCUMENT)
        if doc is None:
            return None
        try:
            return parse_resource_lists(doc.body, self.limits)
        except FormatError as exc:
            event(log, logging.WARNING, "unusable resource-lists", aor=aor, error=str(exc))
            return None

    def list_of(self, list_uri: str) -> Sequence[Entry] | None:
        aor = owner_of(list_uri)
        if aor is None:
            return None
        doc = self.documents.document(RESOURCE_LISTS, aor, DEFAULT_DOCUMENT)
        if doc is None:
            return None
        key = (aor, doc.etag)
        found = self._parsed.peek(key)
        if found is None:
            found = self._parsed.put(key, self._members(aor, doc.body))
        return found

    def _members(self, aor: str, body: bytes) -> tuple[Entry, ...]:
        path = f"{RESOURCE_LISTS}/users/{aor}/{DEFAULT_DOCUMENT}"
        try:
            lists = parse_resource_lists(body, self.limits)
            return expand(lists, document_resolver(lists, path), self.limits).entries
        except FormatError as exc:  # a loop or an expansion past the limits: no members
            event(log, logging.WARNING, "unusable resource-lists", aor=aor, error=str(exc))
            return ()

    def on_change(self, callback: Callable[[str], None]) -> None:
        """`callback(list_uri)` after the list's owner wrote or deleted the document."""
        self._callbacks.append(callback)

    def _changed(self, auid: str, aor: str, name: str) -> None:
        if auid != RESOURCE_LISTS or name != DEFAULT_DOCUMENT:
            return
        uri = list_uri_of(aor)
        for callback in self._callbacks:
            callback(uri)

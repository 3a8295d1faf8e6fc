"""Where list members come from (RFC 4662 §4.4, RFC 5367).

`ListSource` is the contract a store of users' lists satisfies (the XCAP server's
resource-lists, docs/lists.md): `list_of(list_uri)` gives the members of the list behind a
URI, None when the URI is not a list. `on_change(callback)` registers `callback(list_uri)`
to be called after a list's members changed, so that the RLS re-expands it.

`RequestLists` is the source the RLS owns itself: the lists that arrived in a SUBSCRIBE
(RFC 5367 request-contained lists), each under a list URI the RLS creates; the list
lives as long as its subscription (RFC 5367 §6). Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

from mappings.resourcelists import Entry

__all__ = ["ListChanged", "ListSource", "RequestLists", "SourceChain"]

ListChanged = Callable[[str], None]  # callback(list_uri) after a list's members changed


@runtime_checkable
class ListSource(Protocol):
    """Lists by URI. `list_of` returns the members (flattened, unique URIs, document
    order) or None when `list_uri` names no list."""

    def list_of(self, list_uri: str) -> Sequence[Entry] | None: ...

    def on_change(self, callback: ListChanged) -> None: ...


class RequestLists:
    """Request-contained lists (RFC 5367), keyed by the list URI created for each."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._lists: dict[str, tuple[Entry, ...]] = {}
        self._callbacks: list[ListChanged] = []

    def __len__(self) -> int:
        return len(self._lists)

    def add(self, list_uri: str, entries: Iterable[Entry]) -> None:
        """Hold `entries` under `list_uri`; OverflowError past `limit` lists."""
        if list_uri not in self._lists and len(self._lists) >= self.limit:
            raise OverflowError("too many request-contained lists")
        self._lists[list_uri] = tuple(entries)

    def remove(self, list_uri: str) -> None:
        self._lists.pop(list_uri, None)

    def list_of(self, list_uri: str) -> Sequence[Entry] | None:
        return self._lists.get(list_uri)

    def on_change(self, callback: ListChanged) -> None:
        self._callbacks.append(callback)  # request-contained lists never change


class SourceChain:
    """Several sources asked in order; the first that knows the URI answers."""

    def __init__(self, *sources: ListSource) -> None:
        self.sources = sources

    def list_of(self, list_uri: str) -> Sequence[Entry] | None:
        for source in self.sources:
            entries = source.list_of(list_uri)
            if entries is not None:
                return entries
        return None

    def on_change(self, callback: ListChanged) -> None:
        for source in self.sources:
            source.on_change(callback)

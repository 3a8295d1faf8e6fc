"""The XMPP stream parser: ElementTree's public `XMLPullParser`, owned, not subclassed.

slixmpp's `XMLStream.data_received` needs an object with `feed(data)` and `read_events()`
yielding ``("start", elem)`` / ``("end", elem)``. `RestrictedStreamParser` is that object:
it holds an `ET.XMLPullParser(("start", "end"))` and uses only its public `feed`,
`read_events` and `close` (the C parser builds the elements: no Python call per element).
On top of the plain pull parser it:

* refuses DTDs (RFC 6120 §11.1: no internal or external subset in a stream; expat would
  expand the entities a DOCTYPE declares, so a server could inject text into any stanza):
  a declaration makes `read_events` raise `ParseError`, slixmpp's not-well-formed path
  (logged, stream closed, links.py reconnects). The check spans chunk boundaries (the
  tail of the last chunk is kept);
* bounds the names it keeps: expat's tables and ElementTree's name cache keep every
  element and attribute name for the parser's life (~250 bytes each). Once the stream has
  carried more than `name_limit` distinct names, input is fed up to one `>` at a time (the
  events read at once into our own queue) until a stanza (a child of the stream root) has
  just closed; the pull parser then holds nothing buffered and is replaced by a fresh one
  primed with the stream's header, and the old one's tables go with it. slixmpp sees no
  seam: the header's start event is dropped, and the new root is emptied after each
  stanza as slixmpp empties the first.

A syntax error is raised by `read_events` after the events that preceded it, as
`XMLPullParser` does.
"""

from __future__ import annotations

import itertools
import logging
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from typing import Any

__all__ = ["NAME_LIMIT", "RestrictedStreamParser"]

log = logging.getLogger(__name__)

# Distinct XML names (element and attribute, namespace-qualified) one parser may keep;
# past this many, the parser is renewed at the next stanza boundary.
NAME_LIMIT = 10_000
# What a renewed parser is primed with: the namespaces of an XEP-0114 stream (§3).
_COMPONENT_STREAM_HEADER = (
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns='jabber:component:accept'>"
)

Event = tuple[str, ET.Element]


def _pull_parser() -> ET.XMLPullParser[Any]:
    return ET.XMLPullParser(("start", "end"))


class RestrictedStreamParser:
    """A pull parser for an XMPP stream without DTDs and with a bounded name cache."""

    _MARKS = (b"<!DOCTYPE", b"<!ENTITY")

    def __init__(self, name_limit: int = NAME_LIMIT) -> None:
        self._pull = _pull_parser()
        # events read from `_pull` while feeding to a renewal, not yet handed out; then
        # the ParseError that stopped parsing, if any
        self._pending: deque[Event | ET.ParseError] = deque()
        self._tail = b""
        self._refused: ET.ParseError | None = None
        self._name_limit = name_limit
        self._names: set[str] = set()
        self._depth = 0  # element depth after the events handed out so far
        self._root: ET.Element | None = None  # the primed root, after a renewal
        self.renewals = 0

    # -- the pull-parser interface slixmpp uses ----------------------------------------------

    def feed(self, data: bytes | str) -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        window = self._tail + raw
        if self._refused is None and any(mark in window for mark in self._MARKS):
            self._refused = ET.ParseError("DTD in an XMPP stream (RFC 6120 §11.1)")
        if self._refused is not None:
            return
        self._tail = window[-(len(self._MARKS[0]) - 1) :]
        if len(self._names) <= self._name_limit:
            self._pull.feed(raw)
        else:
            self._feed_to_renewal(raw)

    def read_events(self) -> Iterator[Event]:
        if self._refused is not None:
            raise self._refused
        return self._read()

    def close(self) -> None:
        """End of input: the document must be complete (ParseError otherwise)."""
        self._pull.close()

    # -- internals ----------------------------------------------------------------------------

    def _read(self) -> Iterator[Event]:
        events: Iterator[Any] = self._pull.read_events()
        if self._pending:
            events = itertools.chain(self._drain_pending(), events)
        names = self._names
        for item in events:
            event, elem = item
            if event == "start":
                self._depth += 1
                if len(names) <= self._name_limit:
                    names.add(elem.tag)
                    if elem.attrib:
                        names.update(elem.attrib)
            else:
                self._depth -= 1
            yield item
            if event == "end" and self._depth == 1 and self._root is not None:
                self._root.clear()  # as slixmpp clears the stream's own root

    def _drain_pending(self) -> Iterator[Event]:
        pending = self._pending
        while pending:
            item = pending.popleft()
            if isinstance(item, ET.ParseError):
                raise item
            yield item

    def _take_events(self) -> list[Event] | None:
        """Move what `_pull` parsed so far into `_pending`; None after a syntax error."""
        taken: list[Any] = []
        try:
            for item in self._pull.read_events():
                taken.append(item)
        except ET.ParseError as exc:
            self._pending.extend(taken)
            self._pending.append(exc)
            return None
        self._pending.extend(taken)
        return taken

    def _feed_to_renewal(self, raw: bytes) -> None:
        if self._take_events() is None:
            return
        depth = self._depth + sum(
            (1 if ev[0] == "start" else -1) for ev in self._pending if isinstance(ev, tuple)
        )
        start = 0
        while start < len(raw):
            gt = raw.find(b">", start)
            stop = len(raw) if gt < 0 else gt + 1
            self._pull.feed(raw[start:stop])
            start = stop
            taken = self._take_events()
            if taken is None:  # a syntax error: the stream is lost anyway
                return
            for ev in taken:
                depth += 1 if ev[0] == "start" else -1
            if taken and taken[-1][0] == "end" and depth == 1 and gt >= 0:
                self._renew()  # a stanza closed on this '>'
                self._pull.feed(raw[start:])
                return

    def _renew(self) -> None:
        names = len(self._names)
        pull = _pull_parser()
        pull.feed(_COMPONENT_STREAM_HEADER)
        events: list[Any] = list(pull.read_events())
        ((_, root),) = events  # the primed header's start: not the stream's
        self._pull = pull
        self._root = root
        self._names = set()
        self.renewals += 1
        log.warning(
            "XMPP stream parser renewed after %d distinct XML names (limit %d)",
            names,
            self._name_limit,
            extra={"fields": {"names": names, "renewals": self.renewals}},
        )

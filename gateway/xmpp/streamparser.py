"""The XMPP stream parser: ElementTree's public `XMLParser` with our own target.

slixmpp's `XMLStream.data_received` needs an object with `feed(data)` and `read_events()`
yielding ``("start", elem)`` / ``("end", elem)`` (what `ET.XMLPullParser(("start", "end"))`
gives). `RestrictedStreamParser` is that object, built only on public API:
`XMLParser(target=_EventTarget)`, the target building elements with a `TreeBuilder` and
recording the events into our own deque. On top of a plain pull parser it:

* refuses DTDs (RFC 6120 §11.1: no internal or external subset in a stream; expat would
  expand the entities a DOCTYPE declares, so a server could inject text into any stanza):
  a declaration makes `read_events` raise `ParseError`, slixmpp's not-well-formed path
  (logged, stream closed, links.py reconnects). The check spans chunk boundaries (the
  tail of the last chunk is kept);
* bounds the names it keeps: expat's tables and ElementTree's name cache keep every
  element and attribute name for the parser's life (~250 bytes each). Once the stream has
  carried more than `name_limit` distinct names, input is fed up to one `>` at a time
  until a stanza (a child of the stream root) has just closed; the parser then holds
  nothing buffered and is replaced by a fresh one primed with the stream's header, and the
  old one's tables go with it. slixmpp sees no seam: the header's start event is dropped,
  and the new root is emptied after each stanza as slixmpp empties the first.

A syntax error is queued after the events that preceded it and raised by `read_events`
when reached, as `XMLPullParser` does.
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


class _EventTarget:
    """An `XMLParser` target: elements built by a `TreeBuilder`, ("start"|"end", element)
    appended to `events` (comments and processing instructions are dropped, as by a
    `TreeBuilder` without insert_comments/insert_pis)."""

    __slots__ = ("_builder", "data", "events")

    def __init__(self, events: deque[Any]) -> None:
        self.events = events
        self._builder = ET.TreeBuilder()
        self.data = self._builder.data

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self.events.append(("start", self._builder.start(tag, attrib)))

    def end(self, tag: str) -> None:
        self.events.append(("end", self._builder.end(tag)))

    def close(self) -> ET.Element:
        return self._builder.close()


def _new_parser(events: deque[Any]) -> ET.XMLParser:
    return ET.XMLParser(target=_EventTarget(events))


class RestrictedStreamParser:
    """A pull parser for an XMPP stream without DTDs and with a bounded name cache."""

    _MARKS = (b"<!DOCTYPE", b"<!ENTITY")

    def __init__(self, name_limit: int = NAME_LIMIT) -> None:
        self._events: deque[Any] = deque()  # Event or the ParseError that stopped parsing
        self._parser: ET.XMLParser | None = _new_parser(self._events)
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
            self._feed(raw)
        else:
            self._feed_to_renewal(raw)

    def read_events(self) -> Iterator[Event]:
        if self._refused is not None:
            raise self._refused
        return self._read()

    def close(self) -> None:
        """End of input: the document must be complete (ParseError otherwise)."""
        parser, self._parser = self._parser, None
        if parser is not None:
            parser.close()

    # -- internals ----------------------------------------------------------------------------

    def _feed(self, raw: bytes) -> None:
        if self._parser is None:
            raise ValueError("feed() called after close()")
        if raw:
            try:
                self._parser.feed(raw)
            except ET.ParseError as exc:
                self._events.append(exc)

    def _read(self) -> Iterator[Event]:
        events, names = self._events, self._names
        while events:
            item = events.popleft()
            if isinstance(item, Exception):
                raise item
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

    def _feed_to_renewal(self, raw: bytes) -> None:
        queue = self._events
        depth = self._depth + sum(
            (1 if ev[0] == "start" else -1) for ev in queue if isinstance(ev, tuple)
        )
        start = 0
        while start < len(raw):
            gt = raw.find(b">", start)
            stop = len(raw) if gt < 0 else gt + 1
            before = len(queue)
            self._feed(raw[start:stop])
            start = stop
            last = None
            for ev in itertools.islice(queue, before, None):
                if not isinstance(ev, tuple):  # a syntax error: the stream is lost anyway
                    return
                depth += 1 if ev[0] == "start" else -1
                last = ev[0]
            if last == "end" and depth == 1 and gt >= 0:  # a stanza closed on this '>'
                self._renew()
                self._feed(raw[start:])
                return

    def _renew(self) -> None:
        names = len(self._names)
        parser = _new_parser(self._events)
        parser.feed(_COMPONENT_STREAM_HEADER)
        _, root = self._events.pop()  # the primed header's start: not the stream's
        self._parser = parser
        self._root = root
        self._names = set()
        self.renewals += 1
        log.warning(
            "XMPP stream parser renewed after %d distinct XML names (limit %d)",
            names,
            self._name_limit,
            extra={"fields": {"names": names, "renewals": self.renewals}},
        )

"""Watcher information documents (RFC 3858, `application/watcherinfo+xml`).

The `presence.winfo` event package (RFC 3857) tells a presentity who asked to watch it and
in what state each subscription is. This module is the document format only: frozen
dataclasses, `build_watcherinfo` and a hardened `parse_watcherinfo` over
`mappings.xmlsafe.parse_xml`. Enumerations are the RFC 3858 §6 schema's; unknown elements
and attributes from other namespaces are ignored (RFC 3858 §3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from lxml import etree

from mappings.xmlsafe import XML_LANG, FormatError, nsmap, parse_xml, serialize

__all__ = [
    "MEDIA_TYPE",
    "NS",
    "Watcher",
    "WatcherEvent",
    "WatcherInfo",
    "WatcherList",
    "WatcherStatus",
    "WinfoError",
    "build_watcherinfo",
    "parse_watcherinfo",
]

MEDIA_TYPE: Final = "application/watcherinfo+xml"
NS: Final = "urn:ietf:params:xml:ns:watcherinfo"

WatcherStatus = Literal["pending", "active", "waiting", "terminated"]
WatcherEvent = Literal[
    "subscribe",
    "approved",
    "deactivated",
    "probation",
    "rejected",
    "timeout",
    "giveup",
    "noresource",
]
_STATUSES: Final = frozenset(get_args(WatcherStatus))
_EVENTS: Final = frozenset(get_args(WatcherEvent))
_MAX_VERSION: Final = 2**32 - 1  # RFC 3858 §3: a 32-bit integer that never wraps
# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")


class WinfoError(FormatError):
    """Not a watcherinfo document we can use."""


def _q(local: str) -> str:
    return f"{{{NS}}}{local}"


@dataclass(frozen=True)
class Watcher:
    """One subscription to the resource (RFC 3858 §3: `<watcher>`)."""

    id: str  # a token, unique within the winfo subscription
    uri: str  # the watcher's authenticated identity (an AOR)
    status: WatcherStatus
    event: WatcherEvent  # what caused the current status
    display_name: str | None = None
    display_lang: str | None = None
    expiration: int | None = None  # seconds from now
    duration_subscribed: int | None = None  # seconds since the SUBSCRIBE arrived

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.id):
            raise WinfoError(f"watcher id {self.id!r} is not a token (RFC 3261 §25.1)")
        if not self.uri or self.uri != self.uri.strip():
            raise WinfoError("watcher URI is empty or padded")
        if self.status not in _STATUSES:
            raise WinfoError(f"unknown watcher status {self.status!r}")
        if self.event not in _EVENTS:
            raise WinfoError(f"unknown watcher event {self.event!r}")
        for value in (self.expiration, self.duration_subscribed):
            if value is not None and value < 0:
                raise WinfoError("expiration and duration-subscribed are unsigned")


@dataclass(frozen=True)
class WatcherList:
    """The watchers of one resource in one event package (`<watcher-list>`)."""

    resource: str
    package: str
    watchers: tuple[Watcher, ...] = ()

    def __post_init__(self) -> None:
        if not self.resource or not self.package:
            raise WinfoError("watcher-list needs resource and package")


@dataclass(frozen=True)
class WatcherInfo:
    """A whole document: `version` orders documents within one winfo subscription;
    `state` says whether it is the full state or only what changed (RFC 3858 §4)."""

    version: int
    state: Literal["full", "partial"]
    lists: tuple[WatcherList, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.version <= _MAX_VERSION:
            raise WinfoError(f"version {self.version} out of range")
        if self.state not in ("full", "partial"):
            raise WinfoError(f"unknown state {self.state!r}")

    def watchers(self, resource: str | None = None) -> Iterable[Watcher]:
        for wl in self.lists:
            if resource is None or wl.resource == resource:
                yield from wl.watchers


# ------------------------------------------------------------------ build


def build_watcherinfo(doc: WatcherInfo) -> bytes:
    """UTF-8 XML (RFC 3858 §3: XML 1.0, UTF-8, namespace urn:ietf:params:xml:ns:watcherinfo)."""
    root = etree.Element(
        _q("watcherinfo"), nsmap=nsmap(NS), version=str(doc.version), state=doc.state
    )
    for wl in doc.lists:
        el = etree.SubElement(root, _q("watcher-list"), resource=wl.resource, package=wl.package)
        for w in wl.watchers:
            item = etree.SubElement(el, _q("watcher"), id=w.id, status=w.status, event=w.event)
            if w.display_name is not None:
                item.set("display-name", w.display_name)
                if w.display_lang is not None:
                    item.set(XML_LANG, w.display_lang)
            if w.expiration is not None:
                item.set("expiration", str(w.expiration))
            if w.duration_subscribed is not None:
                item.set("duration-subscribed", str(w.duration_subscribed))
            item.text = w.uri
    return serialize(root)


# ------------------------------------------------------------------ parse


def _unsigned(el: etree._Element, name: str) -> int | None:
    text = el.get(name)
    if text is None:
        return None
    if not text.strip().isdigit():
        raise WinfoError(f"{name} is not an unsigned integer: {text!r}")
    return int(text)


def _required(el: etree._Element, name: str) -> str:
    value = el.get(name)
    if value is None:
        raise WinfoError(f"<{etree.QName(el).localname}> lacks the {name} attribute")
    return value


def _watcher(el: etree._Element) -> Watcher:
    return Watcher(
        id=_required(el, "id"),
        uri=(el.text or "").strip(),
        status=cast(WatcherStatus, _required(el, "status")),
        event=cast(WatcherEvent, _required(el, "event")),
        display_name=el.get("display-name"),
        display_lang=el.get(XML_LANG),
        expiration=_unsigned(el, "expiration"),
        duration_subscribed=_unsigned(el, "duration-subscribed"),
    )


def parse_watcherinfo(data: bytes) -> WatcherInfo:
    """Parse an untrusted watcherinfo body (hardened parser; WinfoError/XmlRejected)."""
    root = parse_xml(data)
    if root.tag != _q("watcherinfo"):
        raise WinfoError(f"root element is {root.tag}, not watcherinfo")
    version_text = _required(root, "version")
    if not version_text.strip().isdigit():
        raise WinfoError(f"version is not a non-negative integer: {version_text!r}")
    lists = []
    for wl in root:
        if wl.tag != _q("watcher-list"):
            continue  # other namespaces are ignored (RFC 3858 §3)
        watchers = tuple(_watcher(w) for w in wl if w.tag == _q("watcher"))
        lists.append(WatcherList(_required(wl, "resource"), _required(wl, "package"), watchers))
    state = _required(root, "state")
    if state not in ("full", "partial"):
        raise WinfoError(f"unknown state {state!r}")
    return WatcherInfo(int(version_text), cast(Literal["full", "partial"], state), tuple(lists))

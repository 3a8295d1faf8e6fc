"""One XEP-0114 external component per configured domain (the only slixmpp subclass).

What a component does on its own, without the bridge:

* answers XEP-0030 disco (disco.py decides the content), XEP-0199 ping, XEP-0092 version and
  XEP-0100 jabber:iq:gateway (prompt and SIP address -> JID translation);
* answers any other IQ get/set with service-unavailable (RFC 6120 §8.4), not slixmpp's
  feature-not-implemented;
* rejects stanzas whose to/from is not a valid JID (RFC 7622, 1023 octets per part) with
  jid-malformed, before any handler sees them;
* routes every exception escaping a handler, slixmpp's plugins included, to the error
  boundary (boundary.py), so that nothing kills the stream.

Connection supervision (reconnect, keep-alive, confirmed sending) is links.py's business.
"""

from __future__ import annotations

import itertools
import logging
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import TYPE_CHECKING, Any

from slixmpp import ComponentXMPP
from slixmpp.exceptions import XMPPError
from slixmpp.plugins.xep_0030 import DiscoInfo, DiscoItems
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream import register_stanza_plugin
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath

from gateway.config import ComponentConfig
from gateway.xmpp.boundary import answer_exception, boundary
from gateway.xmpp.convert import error_reply, may_answer_with_error
from gateway.xmpp.disco import (
    NO_OPTIONAL_FEATURES,
    PROMPT_DESC,
    PROMPT_NAME,
    Features,
    GatewayQuery,
    PromptTranslator,
    disco_info,
    prompt_translator,
)
from mappings.errors import MappingError, XmppErrorInfo
from mappings.jid import Jid, parse_jid

log = logging.getLogger(__name__)

SOFTWARE_NAME = "cpim-gateway"


def _software_version() -> str:
    try:
        return metadata.version("cpim-gateway")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0"


# -- stanza classes that report to the boundary --------------------------------------------
# slixmpp calls `stanza.exception(e)` for any exception escaping a stanza or event handler
# and `iq.unhandled()` when no handler matched; these overrides are the safety net around
# handlers we do not wrap ourselves (slixmpp's plugins).


# slixmpp's private XMLStream lists the direct <message/> route reads (slixmpp 1.8-1.17)
_SLIX_PRIVATE = ("_XMLStream__handlers", "_XMLStream__filters", "_XMLStream__event_handlers")


class _Iq(Iq):
    def exception(self, e: Exception) -> None:
        answer_exception(self, e)

    def unhandled(self) -> None:
        # RFC 6120 §8.4: an IQ get/set nobody understands -> service-unavailable.
        if self["type"] in ("get", "set"):
            error_reply(self, XmppErrorInfo.of("service-unavailable")).send()


class _Message(Message):
    def exception(self, e: Exception) -> None:
        answer_exception(self, e)


class _Presence(Presence):
    def exception(self, e: Exception) -> None:
        answer_exception(self, e)


_STANZA_CLASSES = ((Iq, _Iq), (Message, _Message), (Presence, _Presence))


if TYPE_CHECKING:
    _PullParser = ET.XMLPullParser[Any]
else:
    _PullParser = ET.XMLPullParser


# Distinct XML names (element and attribute, namespace-qualified) one stream parser may
# keep. expat's tables and ElementTree's name cache keep every name for the parser's life
# (~250 bytes each): a peer sending stanzas full of fresh names would grow the gateway
# without bound. Past this many, the parser is renewed at the next stanza boundary.
NAME_LIMIT = 10_000
# What the renewed parser is primed with: the namespaces of an XEP-0114 stream (§3).
_COMPONENT_STREAM_HEADER = (
    b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns='jabber:component:accept'>"
)


class RestrictedStreamParser(_PullParser):
    """slixmpp's stream parser without DTDs and with a bounded name cache.

    DTDs: RFC 6120 §11.1 forbids internal and external subsets in a stream, and expat
    would expand the internal entities a DOCTYPE declares (a server could inject text into
    any stanza). A declaration makes `read_events` raise `ParseError`, slixmpp's
    not-well-formed path: logged, stream closed, links.py reconnects. The check spans
    chunk boundaries (the tail of the last chunk is kept).

    Names: once the stream has carried more than `name_limit` distinct names, input is fed
    up to one `>` at a time until a stanza (a child of the stream root) has just closed;
    the parser then has nothing buffered and is replaced by a fresh one primed with the
    stream's header, and the old one's tables go with it. slixmpp sees no seam: the
    header's start event is dropped, and the new root is emptied after each stanza as
    slixmpp empties the first."""

    _MARKS = (b"<!DOCTYPE", b"<!ENTITY")

    def __init__(self, name_limit: int = NAME_LIMIT) -> None:
        super().__init__(("start", "end"))
        self._tail = b""
        self._refused: ET.ParseError | None = None
        self._name_limit = name_limit
        self._names: set[str] = set()
        self._depth = 0  # element depth after the events handed out so far
        self._root: ET.Element | None = None  # the primed root, after a renewal
        self.renewals = 0

    def feed(self, data: Any) -> None:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        window = self._tail + raw
        if self._refused is None and any(mark in window for mark in self._MARKS):
            self._refused = ET.ParseError("DTD in an XMPP stream (RFC 6120 §11.1)")
        if self._refused is not None:
            return
        self._tail = window[-(len(self._MARKS[0]) - 1) :]
        if len(self._names) <= self._name_limit:
            super().feed(raw)
        else:
            self._feed_to_renewal(raw)

    def _feed_to_renewal(self, raw: bytes) -> None:
        queue: deque[Any] = self._events_queue  # type: ignore[attr-defined]
        depth = self._depth + sum(
            (1 if ev[0] == "start" else -1) for ev in queue if isinstance(ev, tuple)
        )
        start = 0
        while start < len(raw):
            gt = raw.find(b">", start)
            stop = len(raw) if gt < 0 else gt + 1
            before = len(queue)
            super().feed(raw[start:stop])
            start = stop
            last = None
            for ev in itertools.islice(queue, before, None):
                if not isinstance(ev, tuple):  # a syntax error: the stream is lost anyway
                    return
                depth += 1 if ev[0] == "start" else -1
                last = ev[0]
            if last == "end" and depth == 1 and gt >= 0:  # a stanza closed on this '>'
                self._renew(queue)
                super().feed(raw[start:])
                return

    def _renew(self, queue: deque[Any]) -> None:
        names = len(self._names)
        parser = ET.XMLParser(target=ET.TreeBuilder())
        parser._setevents(queue, ("start", "end"))  # type: ignore[attr-defined]
        parser.feed(_COMPONENT_STREAM_HEADER)
        _, root = queue.pop()  # the primed header's start: not the stream's
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

    def read_events(self) -> Iterator[Any]:
        if self._refused is not None:
            raise self._refused
        return self._events()

    def _events(self) -> Iterator[Any]:
        names = self._names
        item: Any
        for item in super().read_events():
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


# -- the direct route for <message/> (issue 11) ------------------------------------------------
# slixmpp matches every incoming stanza against every registered handler (~14 StanzaPath /
# XPath matches). Of the handlers slixmpp and our plugins register at start-up, those that
# match a <message/> only fire an event (IM -> "message", IMError -> "message_error",
# Chat State -> "chatstate"/"chatstate_<state>", Message Receipt -> "receipt_received") or
# do nothing (Message Receipt Request with auto_ack off); the others never match one. So,
# while nobody listens to those events, the bridge's message handler can be run straight
# from an "in" filter with the same outcome (`GatewayComponent.route_messages`).

_MESSAGE_EVENTS = (
    "message",
    "message_error",
    "receipt_received",
    "chatstate",
    "chatstate_active",
    "chatstate_composing",
    "chatstate_gone",
    "chatstate_inactive",
    "chatstate_paused",
)
_PASSIVE_HANDLERS = frozenset(
    {
        "IM",
        "IMError",
        "Presence",
        "Stream Error",
        "Handshake",
        "Disco Info",
        "Disco Items",
        "Software Version",
        "Ping",
        "Message Receipt",
        "jabber:iq:gateway",
    }
)
_CHAT_STATE_HANDLER = "Chat State"  # reads msg["chat_state"] and msg["from"].jid
_RECEIPT_REQUEST_HANDLER = "Message Receipt Request"  # passive while auto_ack is off
# Their debug lines ("RECV: ...", "Event triggered", "Chat State: ...") must still be
# logged when someone switched them on (WireTrace): then the stanza takes slixmpp's path.
# JID texts that parsed (issue 11: the same users write again and again; parse_jid is a pure
# function of the text). Only successes are kept: a malformed JID is parsed, and refused,
# every time. Bounded, forgotten all at once.
_VALID_JIDS: set[str] = set()
_VALID_JIDS_LIMIT = 8192


class _ShortParseError(logging.Filter):
    """slixmpp logs the whole chunk that failed to parse (`Parse error: %r`, up to 64 KB of
    peer data per line): keep the first `SHOWN` bytes and say how many there were."""

    SHOWN = 200

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Parse error: %r" and isinstance(record.args, tuple) and record.args:
            data = record.args[0]
            if isinstance(data, bytes | str) and len(data) > self.SHOWN:
                record.msg = "Parse error (%d bytes, the first %d shown): %r"
                record.args = (len(data), self.SHOWN, data[: self.SHOWN])
        return True


logging.getLogger("slixmpp.xmlstream.xmlstream").addFilter(_ShortParseError())

_SLIX_LOGGERS = (
    logging.getLogger("slixmpp.xmlstream.xmlstream"),
    logging.getLogger("slixmpp.plugins.xep_0085.chat_states"),
)


class GatewayComponent(ComponentXMPP):
    """The XEP-0114 endpoint for one component domain."""

    def __init__(
        self,
        component: ComponentConfig,
        *,
        server: str,
        port: int,
        features: Features = NO_OPTIONAL_FEATURES,
        prompt_to_jid: PromptTranslator | None = None,
    ) -> None:
        super().__init__(component.domain, component.secret, server, port)  # type: ignore[no-untyped-call]
        self.domain = component.domain
        self.addressing = component.addressing
        self.features = features
        self._prompt_to_jid = prompt_to_jid or prompt_translator(component)
        # The last <stream:error/> condition received (not-authorized, conflict, ...).
        self.last_stream_error: tuple[str, str] | None = None
        self._message_route: CoroutineCallback | None = None
        self._route_filter = self._route_message
        self._passive: frozenset[int] = frozenset()
        self._chat_state_handler: Any = None
        self._receipt_request_handler: Any = None
        for base, ours in _STANZA_CLASSES:
            self.remove_stanza(base)
            self.register_stanza(ours)
        self._register_plugins()
        self.add_filter("in", self._check_addresses)
        self.add_event_handler("stream_error", self._on_stream_error)
        self.add_event_handler("connected", self._on_connected)

    # -- setup -------------------------------------------------------------------------------

    def init_parser(self) -> None:
        super().init_parser()
        self.parser = RestrictedStreamParser()

    def _register_plugins(self) -> None:
        self.register_plugin("xep_0030")
        self.register_plugin(
            "xep_0092", {"software_name": SOFTWARE_NAME, "version": _software_version(), "os": ""}
        )
        self.register_plugin("xep_0199", {"keepalive": False})  # links.py keeps the link alive
        self.register_plugin("xep_0085")
        # Receipts are the bridge's to send, once SIP has the message (never automatically).
        self.register_plugin("xep_0184", {"auto_ack": False, "auto_request": False})
        disco = self.plugin["xep_0030"]
        disco.api.register(self._disco_info, "get_info")
        disco.api.register(self._disco_items, "get_items")
        register_stanza_plugin(Iq, GatewayQuery)
        self.register_handler(
            CoroutineCallback(
                "jabber:iq:gateway", StanzaPath("iq/gateway"), boundary(self._handle_gateway)
            )
        )

    def route_messages(self, handler: CoroutineCallback) -> None:
        """Register `handler` for every <message/>, reached straight from an "in" filter.

        The handler is also registered the usual way; a stanza takes slixmpp's handler
        matching instead whenever the direct route could differ from it (see
        `_route_message`), so the outcome is the same either way (tests/component/
        test_message_route.py runs both over random stanzas).
        """
        if handler._once or self._message_route is not None:
            raise ValueError("one message route per component, never a once-only handler")
        self.register_handler(handler)
        if not all(hasattr(self, name) for name in _SLIX_PRIVATE):
            # another slixmpp release: its private lists moved; slixmpp's own matching
            # (the registered handler) is the only route, never a broken filter
            log.warning("slixmpp internals differ (%s): message direct route off", _SLIX_PRIVATE)
            return
        handlers = self._XMLStream__handlers  # type: ignore[attr-defined]
        self._passive = frozenset(id(h) for h in handlers if h.name in _PASSIVE_HANDLERS)
        for h in handlers:
            if h.name == _CHAT_STATE_HANDLER:
                self._chat_state_handler = h
            elif h.name == _RECEIPT_REQUEST_HANDLER:
                self._receipt_request_handler = h
        self._message_route = handler
        self.add_filter("in", self._route_filter)

    def _route_message(self, stanza: Any) -> Any:
        """ "in" filter (the last one): run the message handler directly, or pass the stanza
        on to slixmpp's matching when a listener, a handler registered later, another filter
        after this one, the receipt plugin's auto_ack or a debug logger could see it."""
        route = self._message_route
        if route is None or stanza.name != "message" or not self._direct_ok(stanza, route):
            return stanza
        route.prerun(stanza)
        try:
            route.run(stanza)
        except Exception as e:  # as slixmpp's recv_stanza
            stanza.exception(e)
        return None

    def _direct_ok(self, stanza: Any, route: CoroutineCallback) -> bool:
        if self._XMLStream__filters["in"][-1] is not self._route_filter:  # type: ignore[attr-defined]
            return False
        for logger in _SLIX_LOGGERS:
            if logger.isEnabledFor(logging.DEBUG):
                return False
        events = self._XMLStream__event_handlers  # type: ignore[attr-defined]
        for name in _MESSAGE_EVENTS:
            if events.get(name):
                return False
        passive = self._passive
        for h in self._XMLStream__handlers:  # type: ignore[attr-defined]
            if h is route or id(h) in passive:
                continue
            if h is self._chat_state_handler:
                if h.match(stanza):
                    try:  # what its callback evaluates; an error takes slixmpp's path
                        stanza["chat_state"]
                        stanza["from"].jid  # noqa: B018
                    except Exception:
                        return False
                continue
            if h is self._receipt_request_handler and not self.plugin["xep_0184"].auto_ack:
                continue
            if h.match(stanza):
                return False
        return True

    def add_stanza_handler(self, event: str, handler: Callable[[Any], Any]) -> None:
        """Register a bridge handler for a slixmpp event, inside the error boundary."""
        self.add_event_handler(event, boundary(handler))

    # -- stream events -------------------------------------------------------------------------

    def _on_connected(self, _event: object) -> None:
        self.last_stream_error = None

    def _on_stream_error(self, error: Any) -> None:
        condition = str(error["condition"])
        text = str(error["text"] or "")
        self.last_stream_error = (condition, text)

    # -- inbound address check -------------------------------------------------------------------

    def _check_addresses(self, stanza: Any) -> Any:
        """Drop stanzas with an invalid to/from, answering jid-malformed (RFC 6120 §8.3.3.8)."""
        if stanza.name not in ("message", "presence", "iq"):
            return stanza
        valid = _VALID_JIDS
        try:
            for attr in ("to", "from"):
                value = stanza.xml.get(attr)
                if value is not None and value not in valid:
                    parse_jid(value)
                    if len(valid) >= _VALID_JIDS_LIMIT:
                        valid.clear()
                    valid.add(value)
        except MappingError as exc:
            log.info("dropping %s id=%s: %s", stanza.name, stanza.xml.get("id"), exc)
            try:
                if may_answer_with_error(stanza) and stanza.xml.get("from"):
                    error_reply(stanza, exc.to_xmpp()).send()
            except Exception:
                log.exception("could not answer a malformed JID")
            return None
        return stanza

    # -- XEP-0030 --------------------------------------------------------------------------------

    def _target(self, jid: Any) -> Jid:
        target = parse_jid(str(jid)) if jid else Jid(None, self.domain)
        if not target.same_domain(self.domain):
            raise XMPPError("item-not-found", etype="cancel")
        return target

    def _disco_info(self, jid: Any, node: str | None, ifrom: Any, iq: Any) -> DiscoInfo:
        target = self._target(jid)
        if node:
            raise XMPPError("item-not-found", etype="cancel")
        data = disco_info(
            self.features, has_local=target.local is not None, has_resource=target.is_full
        )
        info = DiscoInfo()
        for ident in data.identities:
            info.add_identity(ident.category, ident.type, name=ident.name)
        for var in data.features:
            info.add_feature(var)
        return info

    def _disco_items(self, jid: Any, node: str | None, ifrom: Any, iq: Any) -> DiscoItems:
        self._target(jid)
        if node:
            raise XMPPError("item-not-found", etype="cancel")
        return DiscoItems()  # X30-02: empty is a result, never an error

    # -- XEP-0100 §6.3 jabber:iq:gateway ---------------------------------------------------------

    def _handle_gateway(self, iq: Any) -> None:
        if iq["type"] == "get":
            reply = iq.reply()
            reply["gateway"]["desc"] = PROMPT_DESC
            reply["gateway"]["prompt"] = PROMPT_NAME
            reply.send()
            return
        if iq["type"] != "set":
            return
        prompt = str(iq["gateway"]["prompt"])
        if not prompt.strip():
            raise XMPPError("bad-request", "empty <prompt/>", etype="modify")
        jid = self._prompt_to_jid(prompt)
        reply = iq.reply()
        reply["gateway"]["jid"] = jid
        reply.send()

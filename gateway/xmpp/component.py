"""One XEP-0114 external component per configured domain (the only slixmpp subclass).

What a component does on its own, without the bridge:

* answers XEP-0030 disco (disco.py decides the content, XEP-0115 caps nodes included; a
  contact's features are its own, `contact_features`),
  XEP-0199 ping, XEP-0092 version, XEP-0100 jabber:iq:gateway (prompt and SIP address ->
  JID translation) and XEP-0054 vCards of the SIP contacts (vcard.py), after checking
  the IQ's shape (iqguard.py: bad-request for anything but the documented payload);
* says which avatar a contact has (`avatar_of`, XEP-0153: presence_convert.py puts its
  hash in every presence, vcard.py its image in the vCard);
* answers any other IQ get/set with service-unavailable (RFC 6120 §8.4), not slixmpp's
  feature-not-implemented;
* rejects stanzas whose to/from is not a valid JID (RFC 7622, 1023 octets per part) with
  jid-malformed, before any handler sees them;
* routes every exception escaping a handler, slixmpp's plugins included, to the error
  boundary (boundary.py), so that nothing kills the stream.

Connection supervision (reconnect, keep-alive, confirmed sending) is links.py's business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import metadata
from typing import Any

from slixmpp import ComponentXMPP
from slixmpp.exceptions import XMPPError
from slixmpp.plugins.xep_0030 import DiscoInfo, DiscoItems
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream import register_stanza_plugin
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.handler.base import BaseHandler
from slixmpp.xmlstream.matcher import StanzaPath

from gateway.config import Addressing, ComponentConfig
from gateway.memo import Memo
from gateway.xmpp.boundary import answer_exception, boundary
from gateway.xmpp.caps import CAPS_NODE, Caps
from gateway.xmpp.convert import error_reply, may_answer_with_error
from gateway.xmpp.disco import (
    NO_OPTIONAL_FEATURES,
    PROMPT_DESC,
    PROMPT_NAME,
    CapsTable,
    ContactFeatures,
    DiscoInfoData,
    Features,
    GatewayQuery,
    PromptTranslator,
    disco_info,
    prompt_translator,
)
from gateway.xmpp.iqguard import empty_payload, prompt_of
from gateway.xmpp.streamparser import NAME_LIMIT, RestrictedStreamParser
from gateway.xmpp.vcard import HANDLER_NAME as VCARD_HANDLER
from gateway.xmpp.vcard import VCardQuery, vcard_handler
from mappings.addresses import AddressingMode, DomainMap, jid_to_sip_target
from mappings.avatar import Avatar, Avatars
from mappings.errors import MappingError, XmppErrorInfo
from mappings.jid import Jid, parse_jid
from mappings.vcard import DisplayNames, LinkedAccounts

log = logging.getLogger(__name__)

__all__ = ["NAME_LIMIT", "GatewayComponent", "RestrictedStreamParser", "install_log_filters"]

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


# -- the direct route for <message/> (issue 11) ------------------------------------------------
# slixmpp matches every incoming stanza against every registered handler (~14 StanzaPath /
# XPath matches). Of the handlers slixmpp and our plugins register at start-up, those that
# match a <message/> only fire an event (IM -> "message", IMError -> "message_error",
# Chat State -> "chatstate"/"chatstate_<state>", Message Receipt -> "receipt_received") or
# do nothing (Message Receipt Request with auto_ack off); the others never match one. So,
# while nobody listens to those events, the bridge's message handler can be run straight
# from an "in" filter with the same outcome (`GatewayComponent.route_messages`).
#
# Everything the decision reads comes through slixmpp's public API: the component
# overrides `register_handler`/`remove_handler` and `add_filter`/`del_filter` (slixmpp,
# its plugins and our code all register through them) to keep its own record of the
# stanza handlers and "in" filters, and asks `event_handled(name)` for listeners. Handler
# names are the ones the plugins pass to `register_handler`.

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
        VCARD_HANDLER,
    }
)
_CHAT_STATE_HANDLER = "Chat State"  # reads msg["chat_state"] and msg["from"].jid
_RECEIPT_REQUEST_HANDLER = "Message Receipt Request"  # passive while auto_ack is off
# Their debug lines ("RECV: ...", "Event triggered", "Chat State: ...") must still be
# logged when someone switched them on (WireTrace): then the stanza takes slixmpp's path.
_SLIX_LOGGERS = (
    logging.getLogger("slixmpp.xmlstream.xmlstream"),
    logging.getLogger("slixmpp.plugins.xep_0085.chat_states"),
)

# JID texts that parsed (issue 11: the same users write again and again; parse_jid is a pure
# function of the text). A malformed JID is parsed, and refused, every time.
_VALID_JIDS_LIMIT = 8192
_VALID_JIDS: Memo[str, Jid] = Memo(_VALID_JIDS_LIMIT)


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


_SHORT_PARSE_ERROR = _ShortParseError()


def install_log_filters() -> None:
    """Shorten slixmpp's parse-error log lines (idempotent: `addFilter` adds a filter once).
    Called by every `GatewayComponent` at construction, never at import."""
    logging.getLogger("slixmpp.xmlstream.xmlstream").addFilter(_SHORT_PARSE_ERROR)


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
        display_names: DisplayNames | None = None,
        linked_accounts: LinkedAccounts | None = None,
        contact_features: ContactFeatures | None = None,
        avatars: Avatars | None = None,
    ) -> None:
        install_log_filters()
        # Our record of what slixmpp matches and filters with (see `register_handler`):
        # filled during slixmpp's own __init__ already, so set before it.
        self._stanza_handlers: list[BaseHandler] = []
        self._in_filters: list[Callable[[Any], Any]] = []
        self._watched: tuple[BaseHandler, ...] = ()  # handlers the direct route must ask
        self._message_listeners = False  # a listener for a message event was ever added
        self._message_route: CoroutineCallback | None = None
        self._passive: frozenset[int] = frozenset()
        super().__init__(component.domain, component.secret, server, port)  # type: ignore[no-untyped-call]
        self.domain = component.domain
        self.addressing = component.addressing
        self.features = features
        # XEP-0115: the <c/> of every presence sent for a contact (`caps_for`, used by
        # presence_convert.py), per contact's features; `caps` for a contact showing all
        self._contact_features = contact_features
        self.caps_table = CapsTable(features)
        self.caps: Caps = self.caps_table.caps(features)
        self._prompt_to_jid = prompt_to_jid or prompt_translator(component)
        mirrored = component.addressing is Addressing.MIRRORED
        mode = AddressingMode("mirrored" if mirrored else "escaped")
        self.domain_map = DomainMap(component.domain, mode)
        self._avatars = avatars
        # contact JID -> its SIP URI, for `avatar_of` on every presence (a pure mapping)
        self._contact_uris: Memo[Jid, str] = Memo(_VALID_JIDS_LIMIT)
        self._vcard = vcard_handler(self.domain_map, display_names, linked_accounts, avatars)
        # The last <stream:error/> condition received (not-authorized, conflict, ...).
        self.last_stream_error: tuple[str, str] | None = None
        self._route_filter = self._route_message
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
        # slixmpp calls only `feed` and `read_events` on it (the XMLPullParser interface)
        self.parser = RestrictedStreamParser()  # type: ignore[assignment]

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
        register_stanza_plugin(Iq, VCardQuery)
        self.register_handler(
            CoroutineCallback(VCARD_HANDLER, StanzaPath("iq/vcard_temp"), boundary(self._vcard))
        )

    # -- slixmpp's public registration points, recorded ----------------------------------------

    def register_handler(
        self,
        handler: BaseHandler,
        before: BaseHandler | None = None,
        after: BaseHandler | None = None,
    ) -> None:
        if handler.stream is None:  # slixmpp ignores a handler already registered somewhere
            # once-only handlers that fired (slixmpp dropped them) are forgotten here
            self._stanza_handlers = [h for h in self._stanza_handlers if not h.check_delete()]
            self._stanza_handlers.append(handler)
            self._rewatch()
        super().register_handler(handler, before, after)

    def remove_handler(self, name: str) -> bool:
        for i, h in enumerate(self._stanza_handlers):  # the first of that name, as slixmpp
            if h.name == name:
                del self._stanza_handlers[i]
                self._rewatch()
                break
        return bool(super().remove_handler(name))

    def add_filter(self, mode: Any, handler: Any, order: int | None = None) -> None:
        super().add_filter(mode, handler, order)
        if mode == "in":  # the position slixmpp documents ("order", when given and not 0)
            if order:
                self._in_filters.insert(order, handler)
            else:
                self._in_filters.append(handler)

    def del_filter(self, mode: str, handler: Callable[[Any], Any]) -> None:
        super().del_filter(mode, handler)
        if mode == "in":
            self._in_filters.remove(handler)

    def add_event_handler(
        self, name: str, pointer: Callable[..., Any], disposable: bool = False
    ) -> None:
        if name in _MESSAGE_EVENTS:
            self._message_listeners = True  # from now on, `event_handled` is asked
        super().add_event_handler(name, pointer, disposable)

    def stanza_handlers(self) -> tuple[BaseHandler, ...]:
        """The stanza handlers registered, in order (once-only ones that fired excepted)."""
        return tuple(h for h in self._stanza_handlers if not h.check_delete())

    # -- the direct <message/> route ------------------------------------------------------------

    def route_messages(self, handler: CoroutineCallback) -> None:
        """Register `handler` for every <message/>, reached straight from an "in" filter.

        The handler is also registered the usual way; a stanza takes slixmpp's handler
        matching instead whenever the direct route could differ from it (see
        `_route_message`), so the outcome is the same either way (tests/component/
        test_message_route.py runs both over random stanzas).
        """
        if self._message_route is not None:
            raise ValueError("one message route per component")
        if any(h.name == handler.name for h in self.stanza_handlers()):
            raise ValueError(f"a stanza handler named {handler.name!r} is already registered")
        self.register_handler(handler)
        handlers = self._stanza_handlers
        self._passive = frozenset(id(h) for h in handlers if h.name in _PASSIVE_HANDLERS)
        for h in handlers:
            if h.name == _CHAT_STATE_HANDLER:
                self._chat_state_handler = h
            elif h.name == _RECEIPT_REQUEST_HANDLER:
                self._receipt_request_handler = h
        self._message_route = handler
        self._rewatch()
        self.add_filter("in", self._route_filter)

    def _rewatch(self) -> None:
        """The handlers other than the route and the passive ones (a handful)."""
        route, passive = self._message_route, self._passive
        self._watched = tuple(
            h for h in self._stanza_handlers if h is not route and id(h) not in passive
        )

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
        if route.check_delete():  # a once-only handler, spent: slixmpp would drop it now
            self._message_route = None
            self.del_filter("in", self._route_filter)
            self.remove_handler(route.name)  # the first of its name (unique when routed)
        return None

    def _direct_ok(self, stanza: Any, route: CoroutineCallback) -> bool:
        if self._in_filters[-1] is not self._route_filter:
            return False
        for logger in _SLIX_LOGGERS:
            if logger.isEnabledFor(logging.DEBUG):
                return False
        if self._message_listeners:
            for name in _MESSAGE_EVENTS:
                if self.event_handled(name):
                    return False
        for h in self._watched:
            if h.check_delete():  # a once-only handler that fired: slixmpp dropped it
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
        known, remember = _VALID_JIDS.peek, _VALID_JIDS.put
        try:
            for attr in ("to", "from"):
                value = stanza.xml.get(attr)
                if value is not None and known(value) is None:
                    remember(value, parse_jid(value))
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
        if target.local is not None:
            # a user JID must name a SIP user (as for vCards): else the AddressError's
            # item-not-found / jid-malformed, answered and logged by the boundary
            jid_to_sip_target(target.bare, domain_map=self.domain_map)
        return target

    def features_for(self, contact: Jid) -> Features:
        """The optional features of the SIP contact `contact` stands for (per contact when
        the application says, docs/xmpp.md), within the component's `features`."""
        if self._contact_features is None:
            return self.features
        return self._contact_features(contact).within(self.features)

    def caps_for(self, contact: Jid) -> Caps:
        """The XEP-0115 ``<c/>`` values of a presence sent for `contact` now."""
        return self.caps_table.caps(self.features_for(contact))

    # -- XEP-0153 ------------------------------------------------------------------------------

    def avatar_of(self, contact: Jid) -> Avatar | None:
        """The avatar of the SIP user `contact` stands for (a hosted user's, from the user
        file), None without one or for a JID that maps to no SIP user."""
        if self._avatars is None or contact.local is None:
            return None
        try:
            uri = self._contact_uris.get(contact.bare, self._contact_uri)
        except MappingError:
            return None
        return self._avatars(uri)

    def _contact_uri(self, contact: Jid) -> str:
        return str(jid_to_sip_target(contact, domain_map=self.domain_map))

    def _disco_info(self, jid: Any, node: str | None, ifrom: Any, iq: Any) -> DiscoInfo:
        if iq is not None:
            empty_payload(iq)
        target = self._target(jid)
        data: DiscoInfoData | None
        if node:  # XEP-0115 §6.2: `node#ver`, answered with what `ver` was computed on
            caps_node, _, ver = node.partition("#")
            data = self.caps_table.info(ver) if caps_node == CAPS_NODE else None
            if data is None or target.local is None:
                raise XMPPError("item-not-found", etype="cancel")
        else:
            features = self.features if target.local is None else self.features_for(target)
            data = disco_info(
                features, has_local=target.local is not None, has_resource=target.is_full
            )
        info = DiscoInfo()
        for ident in data.identities:
            info.add_identity(ident.category, ident.type, name=ident.name)
        for var in data.features:
            info.add_feature(var)
        return info

    def _disco_items(self, jid: Any, node: str | None, ifrom: Any, iq: Any) -> DiscoItems:
        if iq is not None:
            empty_payload(iq)
        self._target(jid)
        if node:
            raise XMPPError("item-not-found", etype="cancel")
        return DiscoItems()  # X30-02: empty is a result, never an error

    # -- XEP-0100 §6.3 jabber:iq:gateway ---------------------------------------------------------

    def _handle_gateway(self, iq: Any) -> None:
        if iq["type"] == "get":
            empty_payload(iq)
            reply = iq.reply()
            reply["gateway"]["desc"] = PROMPT_DESC
            reply["gateway"]["prompt"] = PROMPT_NAME
            reply.send()
            return
        if iq["type"] != "set":
            return
        jid = self._prompt_to_jid(prompt_of(iq))
        reply = iq.reply()
        reply["gateway"]["jid"] = jid
        reply.send()

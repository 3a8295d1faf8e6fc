"""Call activity of hosted users (RFC 4235, RFC 4480) fed into their XMPP presence.

The merge policy is pure (`mappings.callactivity`, table in docs/call-activity.md); this
module gathers its inputs and tells `hosted.Hosted` when they change:

* RPID ``<on-the-phone/>`` in the composed PIDF (`split_rpid_call`);
* dialog-info PUBLISHed by a device (`Registrar.publications(aor, "dialog")`, validated
  on PUBLISH by `registrar.publish`; a change is a presence change of the registrar);
* dialog-info NOTIFYs of the gateway's own subscriptions (`gateway.sip.subscriber`) to a
  device's dialog package: made when its REGISTER lists ``dialog`` in Allow-Events
  (``subscribe_dialog = "auto"``) or for every device (``"always"``), kept while the
  binding lives (`on_bindings`), not stored: after a restart the next REGISTER of the
  device subscribes again. A malformed or hostile body gets 400 (413 when oversized)
  and a "dialog NOTIFY refused" line, and the table is left as it was.

Bounded: at most `MAX_WATCHES` subscriptions, `dialoginfo.MAX_DIALOGS` rows each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.logs import event
from gateway.registrar.bindings import BindingsChange
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import NameAddr
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.subscriber import Subscriber, SubscriberConfig
from gateway.sip.subscription import (
    Action,
    AnswerNotify,
    SendSubscribe,
    StateDocument,
    Terminated,
)
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import MessageTooLarge, TransactionTimeout, TransportFailure
from gateway.store.api import Publication
from mappings.callactivity import CallDisplay, in_call, show_call, split_rpid_call
from mappings.dialoginfo import (
    MEDIA_TYPE,
    DialogInfo,
    merge,
    parse_dialog_info,
)
from mappings.errors import MappingError
from mappings.pidf import PresenceDocument
from mappings.presence import XmppPresence, pidf_to_xmpp
from mappings.xmlsafe import FormatError

__all__ = ["DIALOG_EVENT", "MAX_WATCHES", "ActivityRegistrar", "CallActivity", "DialogWatch"]

log = logging.getLogger("gateway.bridge.presence_activity")

DIALOG_EVENT: Final = "dialog"  # RFC 4235 §3.1
MAX_WATCHES: Final = 4096  # dialog subscriptions held at once (bounded memory)

Key = tuple[str, str]  # (Call-ID, our tag): how NOTIFYs find their subscription


class ActivityRegistrar(Protocol):
    """The slice of gateway.registrar.service.Registrar used here."""

    def publications(self, aor: str, event_package: str) -> tuple[Publication, ...]: ...

    def on_bindings_change(self, callback: Callable[[BindingsChange], None]) -> None: ...

    def resource_for(self, aor: str, contact_or_instance: str) -> str | None: ...

    async def send_to_user(
        self, aor: str, build: Callable[[str], SipRequest], *, resource: str | None = None
    ) -> SipResponse: ...


@dataclass(eq=False)
class DialogWatch:
    """The gateway's subscription to one device's dialog package."""

    aor: str
    contact: str  # the binding's Contact URI (the Request-URI)
    sub: Subscriber
    table: DialogInfo | None = None


class CallActivity:
    """Call state per hosted AOR, and the presence it makes of the base presence."""

    def __init__(
        self,
        display: CallDisplay,
        ctx: PresenceContext,
        registrar: ActivityRegistrar,
        *,
        subscribe_dialog: str = "auto",
        changed: Callable[[str], None] = lambda _aor: None,
    ) -> None:
        self.display = display
        self.ctx = ctx
        self.registrar = registrar
        self.subscribe_dialog = subscribe_dialog
        self.changed = changed
        self.watches: dict[Key, DialogWatch] = {}
        self.by_contact: dict[tuple[str, str], DialogWatch] = {}
        self._tasks = Tasks("call activity")
        registrar.on_bindings_change(self.on_bindings)

    # ------------------------------------------------------------ the merge

    def presences(self, aor: str, doc: PresenceDocument | None) -> list[XmppPresence]:
        """What XMPP watchers of `aor` see: the base presence, with the call shown."""
        if doc is None:
            return [XmppPresence(available=False)]
        base_doc, rpid = split_rpid_call(doc)
        base = pidf_to_xmpp(base_doc) or [XmppPresence(available=False)]
        return show_call(base, in_call(self._dialogs(aor), rpid), self.display)

    def calling(self, aor: str) -> bool:
        return in_call(self._dialogs(aor))

    def _dialogs(self, aor: str) -> list[DialogInfo]:
        docs = []
        for pub in self.registrar.publications(aor, DIALOG_EVENT):
            try:
                docs.append(merge(None, parse_dialog_info(pub.body)).table)
            except FormatError:
                continue  # validated on PUBLISH; a corrupt stored body is skipped
        docs.extend(w.table for w in self.by_contact.values() if w.aor == aor and w.table)
        return docs

    # ------------------------------------------------------------ registrar input

    def saw_register(self, aor: str, request: SipRequest) -> None:
        """`Registrar.on_register`: subscribe to the dialog package of the device that
        registered, when it offers it (Allow-Events) or the configuration says always."""
        if self.subscribe_dialog == "never":
            return
        offers = DIALOG_EVENT in {e.lower() for e in request.allow_events}
        if not offers and self.subscribe_dialog != "always":
            return
        try:
            contacts = request.contacts
        except RemoteProtocolError:
            return
        for c in contacts:
            if c.expires == 0 or not isinstance(c.uri, SipUri):
                continue
            if (aor, str(c.uri)) not in self.by_contact:
                self._watch(aor, str(c.uri))

    def on_bindings(self, change: BindingsChange) -> None:
        """A device's binding is gone: its dialog subscription ends with it."""
        live = {b.contact for b in change.after}
        for watch in list(self.by_contact.values()):
            if watch.aor == change.aor and watch.contact not in live:
                self._forget(watch)
                self.ctx.scheduler.cancel(("activity", watch.sub.key))
                if watch.table is not None and in_call([watch.table]):
                    self.changed(watch.aor)

    def _watch(self, aor: str, contact: str) -> None:
        if len(self.watches) >= MAX_WATCHES:
            event(log, logging.WARNING, "dialog subscription not made, table full", aor=aor)
            return
        target = parse_uri(contact)
        me = NameAddr(parse_uri(aor))
        config = SubscriberConfig(
            event=DIALOG_EVENT,
            accept=(MEDIA_TYPE,),
            expires=self.ctx.config.expires,
            timers=self.ctx.config.timers,
        )
        sub = Subscriber(target, local=me, remote=me, contact=self.ctx.config.contact_addr,
                         config=config)  # fmt: skip
        watch = DialogWatch(aor, contact, sub)
        self.watches[sub.key] = watch
        self.by_contact[(aor, contact)] = watch
        event(log, logging.INFO, "dialog subscription", aor=aor, contact=contact)
        self._run(watch, sub.subscribe(self.ctx.clock()))

    def _forget(self, watch: DialogWatch) -> None:
        self.watches.pop(watch.sub.key, None)
        if self.by_contact.get((watch.aor, watch.contact)) is watch:
            del self.by_contact[(watch.aor, watch.contact)]

    # ------------------------------------------------------------ SIP input

    def handle_notify(self, incoming: Any) -> bool:
        """A NOTIFY of one of our dialog subscriptions: answered here (True)."""
        req: SipRequest = incoming.request
        watch = self.watches.get((req.call_id or "", req.to_tag or ""))
        if watch is None:
            return False
        parsed = None
        if req.body:
            try:
                parsed = parse_dialog_info(req.body)
            except FormatError as exc:
                status = exc.sip_status or 400
                event(log, logging.WARNING, "dialog NOTIFY refused", aor=watch.aor,
                      call_id=req.call_id, status=status, error=str(exc))  # fmt: skip
                incoming.respond(make_response(req, status, "Malformed dialog-info"))
                return True
        now = self.ctx.clock()
        self._run(watch, watch.sub.receive_notify(req, now), incoming, parsed)
        return True

    def handle_timer(self, key: Key, now: float) -> None:
        watch = self.watches.get(key)
        if watch is not None:
            self._run(watch, watch.sub.handle_timer(now))

    # ------------------------------------------------------------ the engine

    def _run(
        self,
        watch: DialogWatch,
        actions: Iterable[Action],
        incoming: Any = None,
        parsed: DialogInfo | None = None,
    ) -> None:
        for action in actions:
            if isinstance(action, SendSubscribe):
                if action.new_dialog:  # fresh Call-ID and tag: re-index
                    self.watches = {k: w for k, w in self.watches.items() if w is not watch}
                self.watches[watch.sub.key] = watch
                self._tasks.spawn(self._subscribe_task(watch, action.request))
            elif isinstance(action, AnswerNotify):
                if incoming is not None:
                    incoming.respond(action.response)
            elif isinstance(action, StateDocument) and parsed is not None:
                self._document(watch, parsed)
            elif isinstance(action, Terminated):
                event(log, logging.INFO, "dialog subscription ended", aor=watch.aor,
                      contact=watch.contact, cause=action.cause.value,
                      status=action.status, reason=action.reason)  # fmt: skip
                was = watch.table is not None and in_call([watch.table])
                self._forget(watch)
                self.ctx.scheduler.cancel(("activity", watch.sub.key))
                if was:
                    self.changed(watch.aor)
                return
        if self.watches.get(watch.sub.key) is watch:
            self.ctx.scheduler.set(("activity", watch.sub.key), watch.sub.next_deadline())

    def _document(self, watch: DialogWatch, doc: DialogInfo) -> None:
        before = watch.table is not None and in_call([watch.table])
        merged = merge(watch.table, doc)
        if merged.stale:
            return
        if merged.resync:
            event(log, logging.INFO, "dialog versions lost", aor=watch.aor, version=doc.version)
        watch.table = merged.table
        if before != in_call([merged.table]):
            event(log, logging.INFO, "call activity", aor=watch.aor,
                  calling=in_call([merged.table]), source="notify")  # fmt: skip
            self.changed(watch.aor)

    async def _subscribe_task(self, watch: DialogWatch, request: SipRequest) -> None:
        """An initial SUBSCRIBE goes to the device over its registered flow (the location
        service, `Registrar.send_to_user`: NAT and Path as for any request to a hosted
        user); in-dialog ones to the dialog's remote target (`PresenceContext.send`)."""
        try:
            if request.to_tag is None:
                resource = self.registrar.resource_for(watch.aor, watch.contact)
                response = await self.registrar.send_to_user(
                    watch.aor, lambda contact: request.replace(uri=parse_uri(contact)),
                    resource=resource,
                )  # fmt: skip
            else:
                response = await self.ctx.send(request)
        except (SendFailed, MappingError, TransactionTimeout, TransportFailure,
                MessageTooLarge) as exc:  # fmt: skip
            status = _status(exc)
            event(log, logging.INFO, "dialog SUBSCRIBE failed", target=str(request.uri),
                  status=status, error=str(exc) or type(exc).__name__)  # fmt: skip
            response = make_response(request, status)
        if self.watches.get(watch.sub.key) is not watch:
            return
        self._run(watch, watch.sub.receive_response(response, self.ctx.clock()))

    def stop(self) -> list[Any]:
        """Tasks in flight, for the presence service to cancel."""
        return list(self._tasks)


def _status(exc: Exception) -> int:
    """The local final response for a SUBSCRIBE that got none (RFC 3261 §8.1.3.1)."""
    if isinstance(exc, SendFailed):
        return exc.status
    if isinstance(exc, MappingError):
        return exc.sip_status or 480
    return 408 if isinstance(exc, TransactionTimeout) else 503

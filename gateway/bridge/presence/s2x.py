"""S2X: a SIP user watches an XMPP user (RFC 8048 §5.3, RFC 6665 §4.2 notifier, RFC 3856).

One `Watch` per (SIP watcher as a component JID, XMPP contact): the XMPP authorization and
the contact's presence as the watcher receives it. Each SIP dialog (a `Notifier`, the pure
RFC 6665 machine) hangs off one watch, so several dialogs from one watcher share one XMPP
subscription, and presence addressed to one watcher never reaches another's dialog
(RFC 8048 §8.2).

* SUBSCRIBE -> `subscribe` from the watcher's JID (R8048-09); 200 (never 202) and at once a
  NOTIFY `pending` (RFC 6665 §4.2.1.2). `subscribed` -> NOTIFY `active` (R8048-10);
  `unsubscribed` (or a presence error while pending) -> `terminated;reason=rejected`
  (`noresource` for an error) (R8048-11).
* Presence of every resource -> one PIDF, one tuple per resource (`xmpp_to_pidf`: id
  ID-<resource>, basic, notes with xml:lang, RPID activities, jabber:client show, contact
  with priority). NOTIFYs for one watch are coalesced: at most one per `notify_interval`
  (RFC 3856 §6.2.2: 5 s); the newest state is sent when the interval ends.
* Refresh -> NOTIFY with the current state (R8048-12). Expires: 0 -> final NOTIFY
  `terminated;reason=timeout` with a closed PIDF, and `unavailable` to the XMPP contact once
  the watch has no dialog left (R8048-13). A fetch is answered from the last known state;
  with none, a probe goes out and the answer is awaited up to `probe_wait` (R8048-20).
* A NOTIFY that times out or gets 404/405/410/416/480-485/489/501/604 removes the dialog
  (RFC 6665 §4.2.2); the notifier machine decides.

An available presence the XMPP server routes from the contact to the watcher counts as
authorization: the server sends it only to subscribers or as directed presence, both the
XMPP user's own choice. An unavailable one does not (Prosody sends one when it holds a
`subscribe` pending).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.bridge.presence.notifying import (
    Authorize,
    NotifyThrottle,
    check_initial,
    handle_subscribe,
    identify,
)
from gateway.bridge.presence.records import notifier_record, write
from gateway.bridge.presence.scheduler import BurstFreezer
from gateway.logs import event
from gateway.memo import Memo
from gateway.sip.dialog import Dialog, DialogId
from gateway.sip.headers import NameAddr, parse_event, parse_name_addr
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.notifier import Notifier, NState, SubscribeDecision
from gateway.sip.subscription import (
    NotifierAction,
    Removed,
    SendNotify,
    SendResponse,
    StateDocument,
)
from gateway.sip.uri import SipUri, parse_uri
from gateway.store.api import SubscriptionRecord
from gateway.xmpp.presence_convert import build_presence, build_subscription
from mappings.addresses import (
    AddressError,
    DomainMap,
    jid_to_sip_uri,
    sip_target_to_jid,
    sip_uri_to_jid,
)
from mappings.jid import Jid
from mappings.pidf import MEDIA_TYPE, build_pidf, parse_pidf
from mappings.presence import XmppPresence, pidf_to_xmpp, xmpp_to_pidf
from mappings.xmlsafe import FormatError

__all__ = ["S2x", "Watch", "WatchListener"]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.presence_s2x")

WatchKey = tuple[str, str]  # (watcher bare JID, contact bare JID)
# listener(watch, ended): a change of the watch; `ended` the reason when the XMPP
# authorization ended (rejected, noresource), else None.
WatchListener = Callable[["Watch", str | None], None]
DIRECTION = "sip_to_xmpp"  # metrics label: the subscription goes from SIP to XMPP
# Dialog changes after NOTIFYs are written at most this late (a crash loses at most this
# much CSeq progress; SUBSCRIBE-driven changes and removals are written at once).
FLUSH_DELAY = 1.0
# A burst of at least FREEZE_MIN subscriptions is frozen (gc.freeze) once none came for
# FREEZE_SETTLE seconds: full collections then stop walking the dialogs (BurstFreezer).
FREEZE_MIN = 1000
FREEZE_SETTLE = 2.0
DOC_REUSE = 5.0  # seconds a contact's PIDF is reused for an unchanged state
_MAX_DOCS = 4096
_RESTORE_MEMO_LIMIT = 65536  # distinct strings parsed once per restore


@dataclass(eq=False, slots=True)
class Watch:
    watcher: Jid  # the SIP watcher's component JID (bare)
    contact: Jid  # the XMPP user (bare)
    domain: str
    entity: str  # pres: URI of the contact (PIDF entity, RFC 3856 §5)
    authorized: bool = False
    asked: bool = False  # `subscribe` sent, no answer yet
    resources: dict[str | None, XmppPresence] = field(default_factory=dict)
    known: bool = False  # some presence information is held
    dialogs: dict[DialogId, Notifier] = field(default_factory=dict)
    last_notify: float = float("-inf")
    dirty: bool = False
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    # Others following the watch without a dialog of their own (the resource list
    # server's back-end subscriptions, gateway/bridge/lists): told of every change,
    # with the reason when the authorization ended.
    listeners: list[WatchListener] = field(default_factory=list)

    @property
    def key(self) -> WatchKey:
        return str(self.watcher), str(self.contact)


class S2x:
    def __init__(
        self,
        ctx: PresenceContext,
        *,
        authorize: Authorize | None = None,
        on_watch: Callable[[Jid, Jid], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.authorize = authorize
        self.on_watch = on_watch  # (SIP watcher's JID, XMPP contact) after a SUBSCRIBE
        self.watches: dict[WatchKey, Watch] = {}
        self.by_dialog: dict[DialogId, Watch] = {}
        # NOTIFYs of one dialog leave in CSeq order, one transaction at a time: a dialog
        # with a NOTIFY in flight has an entry here, holding the ones waiting their turn.
        self._sending: dict[DialogId, deque[tuple[Watch, SipRequest]]] = {}
        self._stopped = False
        self._tasks = Tasks("presence")
        self._fetches: set[DialogId] = set()  # Expires: 0 dialogs: never stored
        self._unsaved: dict[DialogId, Watch] = {}  # changed dialogs, written by `flush`
        self._docs: Memo[str, tuple[object, float, StateDocument]] = Memo(_MAX_DOCS)  # by entity
        self.freezer = BurstFreezer(settle=FREEZE_SETTLE, min_count=FREEZE_MIN)
        self.throttle = NotifyThrottle(ctx)

    @property
    def dialog_count(self) -> int:
        return len(self.by_dialog)

    # ------------------------------------------------------------ SIP input

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None:
        return handle_subscribe(incoming, self.by_dialog, self._in_dialog, self._initial)

    def _in_dialog(self, incoming: Any, did: DialogId, watch: Watch) -> None:
        notifier = watch.dialogs[did]
        now = self.ctx.clock()
        actions = notifier.receive_subscribe(
            incoming.request, now, final_document=self._closed(watch)
        )
        if any(isinstance(a, SendNotify) for a in actions):
            watch.last_notify = now
        self._run(watch, did, actions, incoming)

    async def _initial(self, incoming: Any) -> None:
        req: SipRequest = incoming.request
        package = self.ctx.config.package
        decision = check_initial(incoming, {package.event: package})
        if decision is None:
            return
        if await identify(incoming, self.authorize) is None:
            return  # answered by the registrar (challenge, 403, 503)
        watch = self._watch_for(req)
        now = self.ctx.clock()
        if decision.expires == 0 and not watch.known:
            await self._probe_and_wait(watch)  # R8048-20: fetch with nothing known
            now = self.ctx.clock()
        self._accept(incoming, watch, decision, now)
        if decision.expires > 0 and self.on_watch is not None:
            self.on_watch(watch.watcher, watch.contact)  # a hosted user approving (winfo)

    def _watch_for(self, req: SipRequest) -> Watch:
        from_ = req.from_
        if from_ is None or not isinstance(from_.uri, SipUri):
            raise AddressError("SUBSCRIBE without a SIP From", 400)
        dm = self.ctx.map_for_sip_user(from_.uri)
        watcher = sip_uri_to_jid(str(from_.uri), domain_map=dm).bare
        contact = sip_target_to_jid(str(req.uri), domain_map=dm).bare
        key = (str(watcher), str(contact))
        watch = self.watches.get(key)
        if watch is None:
            entity = str(jid_to_sip_uri(contact, domain_map=dm, scheme="pres"))
            watch = Watch(watcher, contact, dm.component_domain, entity)
            self.watches[key] = watch
        return watch

    def _accept(self, incoming: Any, watch: Watch, decision: SubscribeDecision, now: float) -> None:
        req: SipRequest = incoming.request
        fetch = decision.expires == 0
        document = self._document(watch, now) if watch.authorized and watch.known else None
        notifier, actions = Notifier.accept(
            req,
            decision,
            local_tag=incoming.to_tag,
            contact=self.ctx.config.contact_addr,
            now=now,
            authorized=watch.authorized,
            document=document,
            tls=incoming.transport == "tls",
        )
        did = notifier.dialog.id
        watch.dialogs[did] = notifier
        self.by_dialog[did] = watch
        event(
            log,
            logging.INFO,
            "watcher fetch" if fetch else "watcher subscribed",
            watcher=str(watch.watcher),
            contact=str(watch.contact),
            state="active" if watch.authorized else "pending",
            expires=decision.expires,
            call_id=did.call_id,
        )
        if fetch:
            self._fetches.add(did)
        else:
            watch.last_notify = now
            self.freezer.added()
            if not watch.authorized and not watch.asked:
                watch.asked = True
                self._stanza(watch, "subscribe")  # R8048-09
            elif watch.authorized and not watch.known:
                self._stanza(watch, "probe")
        self._run(watch, did, actions, incoming)
        self._count()

    async def _probe_and_wait(self, watch: Watch) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watch.waiters.append(waiter)
        self._stanza(watch, "probe")
        try:
            await asyncio.wait_for(waiter, self.ctx.config.probe_wait)
        except TimeoutError:
            pass
        finally:
            if waiter in watch.waiters:
                watch.waiters.remove(waiter)

    # ------------------------------------------------------------ followers

    def follow(self, watcher: Jid, contact: Jid, dm: DomainMap, listener: WatchListener) -> Watch:
        """Follow `contact`'s presence on behalf of the SIP user `watcher` (its bare
        component JID) without a SIP dialog: the resource list server's back-end
        subscription (RFC 4662 §4). The XMPP side is the one a SUBSCRIBE gets (R8048-09:
        `subscribe` from the watcher's JID; a probe when already authorized), and, as a
        SUBSCRIBE does, it approves the contact's pending request to watch a hosted
        user (`on_watch`, docs/presence.md)."""
        key = (str(watcher), str(contact))
        watch = self.watches.get(key)
        if watch is None:
            entity = str(jid_to_sip_uri(contact, domain_map=dm, scheme="pres"))
            watch = Watch(watcher, contact, dm.component_domain, entity)
            self.watches[key] = watch
        watch.listeners.append(listener)
        if not watch.authorized and not watch.asked:
            watch.asked = True
            self._stanza(watch, "subscribe")
        elif watch.authorized and not watch.known:
            self._stanza(watch, "probe")
        if self.on_watch is not None:
            self.on_watch(watch.watcher, watch.contact)
        return watch

    def unfollow(self, watch: Watch, listener: WatchListener) -> None:
        if listener in watch.listeners:
            watch.listeners.remove(listener)
        if not watch.dialogs and not watch.listeners and watch.key in self.watches:
            self._forget(watch)

    def document(self, watch: Watch, now: float) -> StateDocument:
        """The contact's PIDF as this watch holds it (shared with the dialogs' NOTIFYs)."""
        return self._document(watch, now)

    def _tell(self, watch: Watch, ended: str | None = None) -> None:
        for listener in list(watch.listeners):
            listener(watch, ended)

    # ------------------------------------------------------------ XMPP input

    def on_presence(self, sender: Jid, recipient: Jid, presence: XmppPresence) -> None:
        watch = self.watches.get((str(recipient.bare), str(sender.bare)))
        if watch is None:
            return  # nobody on SIP asked for it: never forwarded (RFC 8048 §8.2)
        resources = watch.resources
        if presence.available:
            resources.pop(None, None)
            for r in [r for r, p in resources.items() if not p.available]:
                del resources[r]  # closed tuples: keep only the newest
            resources[presence.resource] = presence
        else:
            if presence.resource is None:
                resources.clear()
            else:
                for r in [r for r, p in resources.items() if not p.available]:
                    del resources[r]
            resources[presence.resource] = presence
        watch.known = True
        self._wake(watch)
        if not watch.authorized:
            if presence.available:  # an unavailable proves nothing (Prosody sends one
                self._authorized(watch)  # in answer to a subscribe it holds pending)
            return
        self._changed(watch)
        self._tell(watch)

    def on_subscribed(self, sender: Jid, recipient: Jid) -> None:
        watch = self.watches.get((str(recipient.bare), str(sender.bare)))
        if watch is not None and not watch.authorized:
            self._authorized(watch)

    def on_unsubscribed(self, sender: Jid, recipient: Jid, reason: str = "rejected") -> None:
        watch = self.watches.get((str(recipient.bare), str(sender.bare)))
        if watch is None:
            return
        event(
            log,
            logging.INFO,
            "watcher rejected",
            watcher=str(watch.watcher),
            contact=str(watch.contact),
            reason=reason,
            dialogs=len(watch.dialogs),
        )
        watch.authorized = watch.asked = False
        watch.resources.clear()
        watch.known = False
        self._wake(watch)
        now = self.ctx.clock()
        for did, notifier in list(watch.dialogs.items()):
            self._run(watch, did, notifier.reject(now, reason))  # R8048-11
        self._tell(watch, reason)

    def on_error(self, sender: Jid, recipient: Jid) -> None:
        watch = self.watches.get((str(recipient.bare), str(sender.bare)))
        if watch is not None and not watch.authorized:
            self.on_unsubscribed(sender, recipient, "noresource")

    def _authorized(self, watch: Watch) -> None:
        event(
            log,
            logging.INFO,
            "watcher authorized",
            watcher=str(watch.watcher),
            contact=str(watch.contact),
            dialogs=len(watch.dialogs),
        )
        watch.authorized = True
        watch.asked = False
        now = self.ctx.clock()
        document = self._document(watch, now) if watch.known else None
        for did, notifier in list(watch.dialogs.items()):
            actions = notifier.authorize(now, document)  # R8048-10
            self._run(watch, did, actions)
        watch.last_notify = now
        watch.dirty = False
        if not watch.known:
            self._stanza(watch, "probe")
        self._tell(watch)

    def _wake(self, watch: Watch) -> None:
        for waiter in watch.waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ------------------------------------------------------------ throttled NOTIFYs

    def _changed(self, watch: Watch) -> None:
        if not any(n.state is NState.ACTIVE for n in watch.dialogs.values()):
            return
        now = self.ctx.clock()
        if self.throttle.ready(watch.last_notify, now, ("s2x-throttle", watch.key)):
            self._notify_all(watch, now)
        else:
            watch.dirty = True  # RFC 3856 §6.2.2: coalesce until the interval ends

    def handle_throttle(self, key: WatchKey, now: float) -> None:
        watch = self.watches.get(key)
        if watch is not None and watch.dirty:
            self._notify_all(watch, now)

    def _notify_all(self, watch: Watch, now: float) -> None:
        watch.dirty = False
        watch.last_notify = now
        document = self._document(watch, now)
        for did, notifier in list(watch.dialogs.items()):
            self._run(watch, did, notifier.update(now, document))

    def _document(self, watch: Watch, now: float) -> StateDocument:
        """The PIDF of the contact's state. Every watcher of one contact gets its own copy
        of each presence stanza, so one change means the same document for all of them:
        it is built once and reused for `DOC_REUSE` seconds (its timestamp is when the
        state was first seen)."""
        state = (watch.entity, tuple(watch.resources.items()))
        cached = self._docs.peek(watch.entity)
        if cached is not None and cached[0] == state and now - cached[1] <= DOC_REUSE:
            return cached[2]
        stamp = datetime.fromtimestamp(now, UTC)
        doc = xmpp_to_pidf(watch.entity, watch.resources.values(), now=stamp)
        document = StateDocument(build_pidf(doc), MEDIA_TYPE)
        self._docs.put(watch.entity, (state, now, document))
        return document

    def _closed(self, watch: Watch) -> StateDocument | None:
        """R8048-13: the final NOTIFY of an unsubscribe carries basic closed (only to an
        authorized watcher: nothing leaks to a pending one)."""
        if not watch.authorized:
            return None
        return StateDocument(build_pidf(xmpp_to_pidf(watch.entity, ())), MEDIA_TYPE)

    # ------------------------------------------------------------ the engine

    def _run(
        self,
        watch: Watch,
        did: DialogId,
        actions: Iterable[NotifierAction],
        incoming: Any = None,
    ) -> None:
        removed = False
        for action in actions:
            if isinstance(action, SendResponse):
                if incoming is not None:
                    incoming.respond(action.response)
            elif isinstance(action, SendNotify):
                if action.request.body:
                    self.ctx.count_notification("xmpp_to_sip")
                self._send_notify(watch, did, action.request)
            elif isinstance(action, Removed):
                removed = True
                event(
                    log,
                    logging.INFO,
                    "watcher dialog removed",
                    watcher=str(watch.watcher),
                    contact=str(watch.contact),
                    reason=action.reason,
                    status=action.status,
                )
        if removed:
            self._remove(watch, did)
            return
        notifier = watch.dialogs.get(did)
        if notifier is None:
            return
        self.ctx.scheduler.set(("s2x", did), notifier.next_deadline())
        if did not in self._fetches:
            if notifier.state not in (NState.PENDING, NState.ACTIVE):
                self._unsaved.pop(did, None)
                write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)
            elif incoming is not None:  # a SUBSCRIBE answered: what a restart must know
                self._unsaved.pop(did, None)
                write(
                    log,
                    self.ctx.store.put_subscription,
                    notifier_record(notifier, authorized=watch.authorized),
                )
            else:  # NOTIFY CSeq, document, authorization: written in batches
                self._save_later(did, watch)

    def _send_notify(self, watch: Watch, did: DialogId, request: SipRequest) -> None:
        waiting = self._sending.get(did)
        if waiting is not None:  # one in flight: this one goes after it (CSeq order)
            waiting.append((watch, request))
            return
        self._sending[did] = deque()
        self._start_notify(watch, did, request)

    def _start_notify(self, watch: Watch, did: DialogId, request: SipRequest) -> None:
        """Without a task where the target is known (`PresenceContext.send_nowait`: a
        fan-out to N watchers is then N client transactions started in one pass)."""
        done = partial(self._notify_done, watch, did)
        if not self.ctx.send_nowait(request, done):
            self._tasks.spawn(self._notify_task(request, done))

    async def _notify_task(
        self, request: SipRequest, done: Callable[[SipResponse | None, SendFailed | None], None]
    ) -> None:
        try:
            response = await self.ctx.send(request)
        except SendFailed as exc:
            done(None, exc)
        else:
            done(response, None)

    def _notify_done(
        self,
        watch: Watch,
        did: DialogId,
        response: SipResponse | None,
        error: SendFailed | None,
    ) -> None:
        """The NOTIFY's outcome (both None: it failed on a bug, already logged); then the
        next NOTIFY of the dialog, if one is waiting."""
        if self._stopped:
            return
        try:
            if error is not None:
                event(log, logging.INFO, "NOTIFY failed", call_id=did.call_id, error=str(error))
            if error is not None and error.response is not None:
                response = error.response  # the location service's 480: an answer, not a timeout
            notifier = watch.dialogs.get(did)
            if notifier is not None and (response is not None or error is not None):
                now = self.ctx.clock()
                if response is None:
                    self._run(watch, did, notifier.notify_timeout(now))  # RFC 6665 §4.2.2
                else:
                    self._run(watch, did, notifier.receive_notify_response(response, now))
        except Exception as exc:  # a bug: logged as a failed task was, the queue goes on
            log.error("%s task failed", self._tasks.what, exc_info=exc)
        waiting = self._sending.get(did)
        if waiting:
            next_watch, request = waiting.popleft()
            self._start_notify(next_watch, did, request)
        else:
            self._sending.pop(did, None)

    def stop(self) -> None:
        """No NOTIFY outcome is handled from now on (the service is stopping: outcomes
        would arrive as the endpoint fails what is in flight) and none waiting is sent."""
        self._stopped = True
        self._sending.clear()
        self.freezer.stop()

    def handle_timer(self, did: DialogId, now: float) -> None:
        watch = self.by_dialog.get(did)
        if watch is None:
            return
        notifier = watch.dialogs[did]
        self._run(watch, did, notifier.handle_timer(now, final_document=self._closed(watch)))

    def _remove(self, watch: Watch, did: DialogId) -> None:
        watch.dialogs.pop(did, None)
        self.by_dialog.pop(did, None)
        self._unsaved.pop(did, None)
        self.ctx.scheduler.cancel(("s2x", did))
        if did in self._fetches:
            self._fetches.discard(did)
        else:
            write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)
        if not watch.dialogs and not watch.listeners:
            self._forget(watch)
        self._count()

    def _forget(self, watch: Watch) -> None:
        """Nobody follows the watch any more: unavailable to the contact (R8048-13)."""
        if watch.authorized:
            self._send_unavailable(watch)  # R8048-13
        self.ctx.scheduler.cancel(("s2x-throttle", watch.key))
        self.watches.pop(watch.key, None)

    # ------------------------------------------------------------ output

    def _stanza(self, watch: Watch, kind: Any) -> None:
        comp = self.ctx.xmpp.component(watch.domain)
        stanza = build_subscription(comp, kind, sender=watch.watcher, recipient=watch.contact)
        self.ctx.send_stanza(watch.domain, stanza)

    def _send_unavailable(self, watch: Watch) -> None:
        comp = self.ctx.xmpp.component(watch.domain)
        stanza = build_presence(
            comp,
            sender=watch.watcher,
            recipient=watch.contact,
            presence=XmppPresence(available=False),
        )
        self.ctx.send_stanza(watch.domain, stanza)

    def _save_later(self, did: DialogId, watch: Watch) -> None:
        if not self._unsaved:
            self.ctx.scheduler.set(("s2x-flush", ""), self.ctx.clock() + FLUSH_DELAY)
        self._unsaved[did] = watch

    def handle_flush(self, _key: object, _now: float) -> None:
        self.flush()

    def flush(self) -> None:
        """Write the dialogs changed since the last flush in one transaction (a fan-out of
        one presence change to 10,000 watchers is then one commit, not 20,000)."""
        unsaved, self._unsaved = self._unsaved, {}
        self.ctx.scheduler.cancel(("s2x-flush", ""))
        records = [
            notifier_record(notifier, authorized=watch.authorized)
            for did, watch in unsaved.items()
            if (notifier := watch.dialogs.get(did)) is not None
        ]
        if records:
            write(log, self.ctx.store.put_subscriptions, records)

    def _count(self) -> None:
        self.ctx.set_subscriptions(DIRECTION, len(self.by_dialog) - len(self._fetches))

    # ------------------------------------------------------------ restart

    def restore(self, records: Iterable[SubscriptionRecord], now: float) -> int:
        """Rebuild dialogs and watches; each authorized watch then probes its contact so
        that presence changed while we were down reaches the watcher."""
        n = 0
        memo: Memo[tuple[str, ...], Any] = Memo(_RESTORE_MEMO_LIMIT)
        for rec in records:
            try:
                watch, notifier = self._from_record(rec, memo)
            except (ValueError, KeyError, FormatError, AddressError) as exc:
                event(log, logging.WARNING, "unusable subscription record", error=str(exc))
                write(log, self.ctx.store.delete_subscription, *rec.key)
                continue
            did = notifier.dialog.id
            watch.dialogs[did] = notifier
            self.by_dialog[did] = watch
            self.ctx.scheduler.set(("s2x", did), notifier.next_deadline())
            n += 1
        for watch in self.watches.values():
            if watch.authorized:
                self._stanza(watch, "probe")
        self._count()
        return n

    def _from_record(
        self, rec: SubscriptionRecord, memo: Memo[tuple[str, ...], Any]
    ) -> tuple[Watch, Notifier]:
        """`memo` (restore-time): records repeat contacts, routes, the event and our Contact,
        so each distinct string is parsed and mapped once and the (immutable) results are
        shared by every dialog that names it: restore time and memory per subscription."""
        watcher_uri = parse_uri(rec.watcher)
        if not isinstance(watcher_uri, SipUri) or rec.remote_target is None:
            raise ValueError(f"bad S2X record {rec.call_id}")
        dm = self.ctx.map_for_sip_user(watcher_uri)
        domain = dm.component_domain
        watcher = sip_uri_to_jid(rec.watcher, domain_map=dm).bare  # one per watcher: not memoized
        contact, contact_key, entity, local = memo.get(
            ("contact", domain, rec.target), lambda _: _contact_of(rec.target, dm)
        )
        key = (str(watcher), contact_key)
        watch = self.watches.get(key)
        if watch is None:
            watch = Watch(watcher, contact, domain, entity)
            self.watches[key] = watch
        if rec.xmpp_authorization in ("from", "both"):
            watch.authorized = True
        else:
            watch.asked = True
        document = None
        if rec.last_document is not None:
            document = StateDocument(rec.last_document, rec.content_type or MEDIA_TYPE)
            if watch.authorized and not watch.known:
                presences = pidf_to_xmpp(parse_pidf(rec.last_document))
                watch.resources = {p.resource: p for p in presences}
                watch.known = True
        routes, ctype = rec.route_set, rec.content_type or MEDIA_TYPE
        dialog = Dialog(
            id=DialogId(rec.call_id, rec.local_tag, rec.remote_tag or ""),
            local=local,
            remote=rec.watcher,  # parsed when first used
            remote_target=rec.remote_target,
            route_set=tuple(
                memo.get(("route", r), lambda key: parse_name_addr(key[1])) for r in routes
            ),
            local_cseq=rec.local_cseq or None,
            remote_cseq=rec.remote_cseq,
            local_target=memo.get(("our contact",), lambda _: self.ctx.config.contact_addr),
        )
        notifier = Notifier(
            dialog=dialog,
            event=memo.get(("event", rec.event), lambda key: parse_event(key[1])),
            content_type=memo.get(("type", ctype), lambda key: key[1]),
            package=self.ctx.config.package,
            state=NState(rec.state),
            expires_at=rec.expires_at,
            document=document,
        )
        return watch, notifier


def _contact_of(target: str, dm: DomainMap) -> tuple[Jid, str, str, NameAddr]:
    contact = sip_target_to_jid(target, domain_map=dm).bare
    entity = str(jid_to_sip_uri(contact, domain_map=dm, scheme="pres"))
    return contact, str(contact), entity, NameAddr(parse_uri(target))

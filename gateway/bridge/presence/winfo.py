"""`presence.winfo` (RFC 3857) for SIP users hosted by our registrar: they see who asked
to watch them (gateway/bridge/presence/hosted.py) in RFC 3858 documents.

* Only the presentity may watch its own watchers (RFC 3857 §4.6): the SUBSCRIBE must be
  authorized by the registrar (Digest, registered flow, trusted peer) for the AOR in the
  Request-URI, which must be hosted; otherwise 403 (404 for an AOR not hosted here).
* 200, then at once a NOTIFY `active` with the full state (every pending and active
  watcher). A refresh or a fetch gets the full state too (RFC 3857 §4.7.2).
* Changes go as `state="partial"` documents with only the watchers that changed
  (RFC 3857 §4.7.2), at most one NOTIFY per `notify_interval` per subscription
  (RFC 3857 §4.10: 5 s); changes inside the interval are merged (newest per watcher id).
* `version` starts at 0 and grows by one with each document of a subscription
  (RFC 3858 §3). It is read back from the last document after a restart.
* The dialogs are `Notifier`s (the pure RFC 6665 machine), stored as S2X records with
  event `presence.winfo` and restored at start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.bridge.presence.hosted import Hosted
from gateway.bridge.presence.notifying import (
    UNCHECKED,
    Authorize,
    NotifyThrottle,
    check_initial,
    handle_subscribe,
    identify,
)
from gateway.bridge.presence.records import (
    WINFO_EVENT,
    is_winfo_record,
    notifier_record,
    restore_notifier,
    write,
)
from gateway.logs import event
from gateway.registrar.bindings import canonical_aor
from gateway.sip.dialog import DialogId
from gateway.sip.headers import NameAddr
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.notifier import Notifier, NState, PackageConfig
from gateway.sip.subscription import (
    NotifierAction,
    Removed,
    SendNotify,
    SendResponse,
    StateDocument,
)
from gateway.sip.uri import SipUri, parse_uri
from gateway.store.api import SubscriptionRecord
from mappings.winfo import (
    MEDIA_TYPE,
    Watcher,
    WatcherInfo,
    WatcherList,
    WinfoError,
    build_watcherinfo,
    parse_watcherinfo,
)
from mappings.xmlsafe import FormatError

__all__ = ["EVENT", "Winfo", "WinfoSub", "is_winfo_record", "winfo_package"]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.winfo")

EVENT = WINFO_EVENT
PARENT = "presence"


def winfo_package(presence: PackageConfig) -> PackageConfig:
    """presence.winfo with the presence package's Expires limits (RFC 3857 §4.4)."""
    return PackageConfig(
        event=EVENT,
        content_types=(MEDIA_TYPE,),
        default_expires=presence.default_expires,
        min_expires=presence.min_expires,
        max_expires=presence.max_expires,
    )


@dataclass(eq=False)
class WinfoSub:
    aor: str
    notifier: Notifier
    version: int = -1  # of the last document built
    changes: dict[str, Watcher] = field(default_factory=dict)  # throttled, by watcher id
    last_notify: float = float("-inf")
    fetch: bool = False

    @property
    def did(self) -> DialogId:
        return self.notifier.dialog.id


class Winfo:
    def __init__(
        self, ctx: PresenceContext, hosted: Hosted, *, authorize: Authorize | None = None
    ) -> None:
        self.ctx = ctx
        self.hosted = hosted
        self.authorize = authorize
        self.package = winfo_package(ctx.config.package)
        self.subs: dict[DialogId, WinfoSub] = {}
        self._locks: dict[DialogId, asyncio.Lock] = {}
        self._tasks = Tasks("winfo")
        self.throttle = NotifyThrottle(ctx)
        hosted.listeners.append(self.on_watcher)

    def owns(self, req: SipRequest) -> bool:
        """Is this SUBSCRIBE ours: an in-dialog one of our dialogs, or Event presence.winfo."""
        did = DialogId.of_incoming(req) if req.to_tag is not None else None
        if did is not None and did in self.subs:
            return True
        ev = req.event
        return req.to_tag is None and ev is not None and ev.package == EVENT

    # ------------------------------------------------------------ SIP input

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None:
        return handle_subscribe(incoming, self.subs, self._in_dialog, self._initial)

    def _in_dialog(self, incoming: Any, _did: DialogId, sub: WinfoSub) -> None:
        now = self.ctx.clock()
        sub.notifier.document = self._full(sub)  # R6665-15: a refresh gets the full state
        sub.changes.clear()
        sub.last_notify = now
        self._run(sub, sub.notifier.receive_subscribe(incoming.request, now), incoming)

    async def _initial(self, incoming: Any) -> None:
        req: SipRequest = incoming.request
        decision = check_initial(incoming, {EVENT: self.package})
        if decision is None:
            return
        aor = canonical_aor(req.uri)
        if aor is None or not self.hosted.registrar.is_hosted(aor.rpartition("@")[2]):
            incoming.reply(404)  # only watchers of users hosted here are known
            return
        identity = await identify(incoming, self.authorize)
        if identity is None:
            return  # answered by the registrar (challenge, 403, 503)
        if identity is not UNCHECKED and getattr(identity, "aor", None) != aor:
            incoming.reply(403, "Forbidden (only the presentity sees its watchers)")
            return
        now = self.ctx.clock()
        watchers = tuple(w.winfo() for w in self.hosted.watchers(aor))
        document = _document(aor, 0, "full", watchers)
        notifier, actions = Notifier.accept(
            req,
            decision,
            local_tag=incoming.to_tag,
            contact=self.ctx.config.contact_addr,
            now=now,
            authorized=True,
            document=document,
            tls=incoming.transport == "tls",
        )
        sub = WinfoSub(aor, notifier, version=0, last_notify=now, fetch=decision.expires == 0)
        self.subs[sub.did] = sub
        event(log, logging.INFO, "winfo subscription", aor=aor, fetch=sub.fetch)
        self._run(sub, actions, incoming)

    # ------------------------------------------------------------ watcher changes

    def on_watcher(self, aor: str, change: Watcher) -> None:
        now = self.ctx.clock()
        for sub in [s for s in self.subs.values() if s.aor == aor and not s.fetch]:
            if sub.notifier.state is not NState.ACTIVE:
                continue
            sub.changes[change.id] = change  # RFC 3857 §4.10: no faster than once every 5 s
            if self.throttle.ready(sub.last_notify, now, ("winfo-throttle", sub.did)):
                self._flush(sub, now)

    def handle_throttle(self, did: DialogId, now: float) -> None:
        sub = self.subs.get(did)
        if sub is not None and sub.changes:
            self._flush(sub, now)

    def _flush(self, sub: WinfoSub, now: float) -> None:
        changed = tuple(sub.changes.values())
        sub.changes.clear()
        sub.last_notify = now
        self._run(sub, sub.notifier.update(now, self._document(sub, "partial", changed)))

    def _full(self, sub: WinfoSub) -> StateDocument:
        watchers = tuple(w.winfo() for w in self.hosted.watchers(sub.aor))
        return self._document(sub, "full", watchers)

    def _document(self, sub: WinfoSub, state: str, watchers: tuple[Watcher, ...]) -> StateDocument:
        sub.version += 1  # RFC 3858 §3: one more for each document of the subscription
        return _document(sub.aor, sub.version, state, watchers)

    # ------------------------------------------------------------ the engine

    def _run(self, sub: WinfoSub, actions: Iterable[NotifierAction], incoming: Any = None) -> None:
        removed = False
        for action in actions:
            if isinstance(action, SendResponse):
                if incoming is not None:
                    incoming.respond(action.response)
            elif isinstance(action, SendNotify):
                self._tasks.spawn(self._notify_task(sub, action.request))
            elif isinstance(action, Removed):
                removed = True
        if removed:
            self._remove(sub)
            return
        did = sub.did
        self.ctx.scheduler.set(("winfo", did), sub.notifier.next_deadline())
        if sub.fetch:
            return
        if sub.notifier.state in (NState.PENDING, NState.ACTIVE):
            write(
                log, self.ctx.store.put_subscription, notifier_record(sub.notifier, target=sub.aor)
            )
        else:
            write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)

    async def _notify_task(self, sub: WinfoSub, request: SipRequest) -> None:
        lock = self._locks.setdefault(sub.did, asyncio.Lock())
        async with lock:  # NOTIFYs of one dialog leave in CSeq order
            try:
                response: SipResponse | None = await self.ctx.send(request)
            except SendFailed as exc:
                event(log, logging.INFO, "winfo NOTIFY failed", aor=sub.aor, error=str(exc))
                response = exc.response  # the location service's 480 (RFC 6665 §4.2.2), or None
        if self.subs.get(sub.did) is not sub:
            return
        now = self.ctx.clock()
        if response is None:
            self._run(sub, sub.notifier.notify_timeout(now))
        else:
            self._run(sub, sub.notifier.receive_notify_response(response, now))

    def handle_timer(self, did: DialogId, now: float) -> None:
        sub = self.subs.get(did)
        if sub is not None:
            self._run(sub, sub.notifier.handle_timer(now))

    def _remove(self, sub: WinfoSub) -> None:
        did = sub.did
        self.subs.pop(did, None)
        self._locks.pop(did, None)
        self.ctx.scheduler.cancel(("winfo", did))
        self.ctx.scheduler.cancel(("winfo-throttle", did))
        if not sub.fetch:
            write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)

    # ------------------------------------------------------------ restart

    def restore(self, records: Iterable[SubscriptionRecord]) -> int:
        n = 0
        for rec in records:
            try:
                sub = self._from_record(rec)
            except (ValueError, KeyError, FormatError) as exc:
                event(log, logging.WARNING, "unusable winfo record", error=str(exc))
                write(log, self.ctx.store.delete_subscription, *rec.key)
                continue
            self.subs[sub.did] = sub
            self.ctx.scheduler.set(("winfo", sub.did), sub.notifier.next_deadline())
            n += 1
        return n

    def _from_record(self, rec: SubscriptionRecord) -> WinfoSub:
        watcher_uri = parse_uri(rec.watcher)
        aor = canonical_aor(parse_uri(rec.target))
        if not isinstance(watcher_uri, SipUri) or rec.remote_target is None or aor is None:
            raise ValueError(f"bad winfo record {rec.call_id}")
        document = None
        version = -1
        if rec.last_document is not None:
            document = StateDocument(rec.last_document, MEDIA_TYPE)
            try:
                version = parse_watcherinfo(rec.last_document).version
            except WinfoError:
                version = -1
        notifier = restore_notifier(
            rec,
            local=NameAddr(parse_uri(rec.target)),
            content_type=MEDIA_TYPE,
            package=self.package,
            local_target=self.ctx.config.contact_addr,
            document=document,
        )
        return WinfoSub(aor, notifier, version=version)


def _document(aor: str, version: int, state: str, watchers: tuple[Watcher, ...]) -> StateDocument:
    doc = WatcherInfo(
        version, "full" if state == "full" else "partial", (WatcherList(aor, PARENT, watchers),)
    )
    return StateDocument(build_watcherinfo(doc), MEDIA_TYPE)

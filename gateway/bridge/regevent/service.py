"""`RegEventService`: the reg event notifier (RFC 3680) for AORs hosted by our registrar.

* SUBSCRIBE Event: reg to a hosted AOR (404 for any other; a body, i.e. a filter, which
  §4.3 leaves undefined: 415). The registrar checks who sends it (`Registrar.authorize`:
  Digest, registered flow, trusted peer); `regevent.may_subscribe` admits the AOR's own
  user or a trusted peer, anyone else gets 403 and a "reg subscription refused" line.
* 200, then at once a NOTIFY `active` with the full state, version 0 (§5.1); a refresh
  or a fetch (Expires: 0) gets the full state again (§4.7.2).
* Binding changes (`Registrar.on_bindings_change`: REGISTER, expiry, removed user) go as
  partial documents with only the changed contacts (`regevent.changed_contacts`), at most
  one NOTIFY per `notify_interval` per subscription (§4.10); version +1 per document.
* The dialogs are `Notifier`s (the pure RFC 6665 machine), stored as notifier records
  (direction s2x, event `reg`) and restored at start; one `Scheduler` holds their
  deadlines. NOTIFYs leave through the presence context's sender (`PresenceContext.send`:
  the location service for a GRUU Contact, else RFC 3263), one at a time per dialog.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.bridge.presence.notifying import (
    UNCHECKED,
    Authorize,
    check_initial,
    handle_subscribe,
    identify,
)
from gateway.bridge.presence.records import notifier_record, restore_notifier, write
from gateway.bridge.presence.scheduler import Scheduler
from gateway.config import RegEventSection
from gateway.logs import event
from gateway.registrar import regevent
from gateway.registrar.bindings import BindingsChange, canonical_aor
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
from gateway.store.api import Binding, SubscriptionRecord
from mappings.reginfo import (
    MEDIA_TYPE,
    Contact,
    RegInfo,
    ReginfoError,
    build_reginfo,
    parse_reginfo,
)
from mappings.xmlsafe import FormatError

__all__ = ["RegEventRegistrar", "RegEventService", "RegSub", "is_reg_record"]

log = logging.getLogger(__name__)

TimerKey = tuple[str, Hashable]


class RegEventRegistrar(Protocol):
    """The slice of gateway.registrar.service.Registrar used here."""

    def is_hosted(self, domain: str) -> bool: ...

    def bindings(self, aor: str) -> list[Binding]: ...

    def on_bindings_change(self, callback: Callable[[BindingsChange], None]) -> None: ...


def is_reg_record(rec: SubscriptionRecord) -> bool:
    return rec.direction == "s2x" and rec.event.split(";")[0].strip().lower() == regevent.EVENT


def reg_package(cfg: RegEventSection) -> PackageConfig:
    return PackageConfig(
        event=regevent.EVENT,
        content_types=(MEDIA_TYPE,),
        default_expires=cfg.default_expires,
        min_expires=cfg.min_expires,
        max_expires=cfg.max_expires,
    )


@dataclass(eq=False)
class RegSub:
    aor: str
    notifier: Notifier
    version: int = -1  # of the last document built
    pending: dict[str, Contact] = field(default_factory=dict)  # throttled, by contact id
    last_notify: float = float("-inf")
    fetch: bool = False

    @property
    def did(self) -> DialogId:
        return self.notifier.dialog.id


class RegEventService:
    """Serves `Event: reg` for hosted AORs; a service of the application (start/stop)."""

    def __init__(
        self,
        cfg: RegEventSection,
        ctx: PresenceContext,
        registrar: RegEventRegistrar,
        *,
        authorize: Authorize | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.registrar = registrar
        self.authorize = authorize
        self.clock = clock
        self.package = reg_package(cfg)
        self.subs: dict[DialogId, RegSub] = {}
        self._locks: dict[DialogId, asyncio.Lock] = {}
        self._tasks = Tasks("reg event")
        self.scheduler: Scheduler[TimerKey] = Scheduler(self._fire, clock=clock)
        registrar.on_bindings_change(self.on_bindings)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.restore(r for r in self.ctx.store.all_subscriptions() if is_reg_record(r))
        self.scheduler.start()

    async def stop(self) -> None:
        self.scheduler.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ SIP input

    def owns(self, req: SipRequest) -> bool:
        """An in-dialog SUBSCRIBE of one of our dialogs, or an initial one for Event: reg."""
        if req.to_tag is not None:
            did = DialogId.of_incoming(req)
            return did is not None and did in self.subs
        ev = req.event
        return ev is not None and ev.package == regevent.EVENT

    def route(
        self, other: Callable[[Any], Awaitable[None] | None]
    ) -> Callable[[Any], Awaitable[None] | None]:
        """The SUBSCRIBE handler: ours for the reg event, `other` (presence) for the rest."""

        def handle(incoming: Any) -> Awaitable[None] | None:
            if self.owns(incoming.request):
                return self.handle_subscribe(incoming)
            return other(incoming)

        return handle

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None:
        return handle_subscribe(incoming, self.subs, self._in_dialog, self._initial)

    def _in_dialog(self, incoming: Any, _did: DialogId, sub: RegSub) -> None:
        now = self.clock()
        document = self._full(sub, now)  # §4.7.2: a refresh gets the full state
        sub.notifier.document = document
        sub.pending.clear()
        sub.last_notify = now
        actions = sub.notifier.receive_subscribe(incoming.request, now, final_document=document)
        self._run(sub, actions, incoming)

    async def _initial(self, incoming: Any) -> None:
        req: SipRequest = incoming.request
        decision = check_initial(incoming, {regevent.EVENT: self.package})
        if decision is None:
            return
        aor = canonical_aor(req.uri)
        if aor is None or not self.registrar.is_hosted(aor.rpartition("@")[2]):
            incoming.reply(404)  # registration state exists only for AORs hosted here
            return
        if req.body:
            incoming.reply(415, headers=[("Accept", MEDIA_TYPE)])  # §4.3: no filters known
            return
        identity = await identify(incoming, self.authorize)
        if identity is None:
            return  # answered by the registrar (challenge, 403, 503)
        who = getattr(identity, "aor", None)
        via = "trusted-peer" if identity is UNCHECKED else str(getattr(identity, "via", ""))
        if not regevent.may_subscribe(aor, who, via):
            event(
                log,
                logging.WARNING,
                "reg subscription refused",
                aor=aor,
                subscriber=who or "-",
                via=via,
                call_id=req.call_id,
            )
            incoming.reply(403, "Forbidden (only the AOR's user or a trusted peer)")
            return
        now = self.clock()
        fetch = decision.expires == 0
        document = _document(regevent.full_state(aor, self.registrar.bindings(aor), 0, now))
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
        sub = RegSub(aor, notifier, version=0, last_notify=now, fetch=fetch)
        self.subs[sub.did] = sub
        event(log, logging.INFO, "reg subscription", aor=aor, subscriber=who or "-", via=via,
              fetch=fetch)  # fmt: skip
        self._run(sub, actions, incoming)

    # ------------------------------------------------------------ binding changes

    def on_bindings(self, change: BindingsChange) -> None:
        subs = [s for s in self.subs.values() if s.aor == change.aor and not s.fetch]
        if not subs:
            return
        contacts = regevent.changed_contacts(change)
        if not contacts:
            return
        now = self.clock()
        for sub in subs:
            if sub.notifier.state is not NState.ACTIVE:
                continue
            regevent.merge_pending(sub.pending, contacts)
            due = sub.last_notify + self.cfg.notify_interval  # §4.10
            if now >= due:
                self._flush(sub, now)
            else:
                self.scheduler.set(("reg-throttle", sub.did), due)

    def _flush(self, sub: RegSub, now: float) -> None:
        contacts = tuple(sub.pending.values())
        sub.pending.clear()
        sub.last_notify = now
        live = bool(self.registrar.bindings(sub.aor))
        sub.version += 1
        doc = _document(regevent.partial_state(sub.aor, contacts, live, sub.version))
        self._run(sub, sub.notifier.update(now, doc))

    def _full(self, sub: RegSub, now: float) -> StateDocument:
        sub.version += 1
        return _document(
            regevent.full_state(sub.aor, self.registrar.bindings(sub.aor), sub.version, now)
        )

    # ------------------------------------------------------------ the engine

    def _run(self, sub: RegSub, actions: Iterable[NotifierAction], incoming: Any = None) -> None:
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
        self.scheduler.set(("reg", sub.did), sub.notifier.next_deadline())
        if sub.fetch:
            return
        did = sub.did
        if sub.notifier.state in (NState.PENDING, NState.ACTIVE):
            write(
                log, self.ctx.store.put_subscription, notifier_record(sub.notifier, target=sub.aor)
            )
        else:
            write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)

    async def _notify_task(self, sub: RegSub, request: SipRequest) -> None:
        lock = self._locks.setdefault(sub.did, asyncio.Lock())
        async with lock:  # NOTIFYs of one dialog leave in CSeq order
            try:
                response: SipResponse | None = await self.ctx.send(request)
            except SendFailed as exc:
                event(log, logging.INFO, "reg NOTIFY failed", aor=sub.aor, error=str(exc))
                response = exc.response
        if self.subs.get(sub.did) is not sub:
            return
        now = self.clock()
        if response is None:
            self._run(sub, sub.notifier.notify_timeout(now))
        else:
            self._run(sub, sub.notifier.receive_notify_response(response, now))

    def _fire(self, keys: list[TimerKey], now: float) -> None:
        for kind, did in keys:
            sub = self.subs.get(did)  # type: ignore[call-overload]
            if sub is None:
                continue
            try:
                if kind == "reg-throttle":
                    if sub.pending:
                        self._flush(sub, now)
                else:
                    final = self._full(sub, now)
                    self._run(sub, sub.notifier.handle_timer(now, final_document=final))
            except Exception:  # one subscription's failure must not stop the others
                log.exception("reg event timer failed")

    def _remove(self, sub: RegSub) -> None:
        did = sub.did
        self.subs.pop(did, None)
        self._locks.pop(did, None)
        self.scheduler.cancel(("reg", did))
        self.scheduler.cancel(("reg-throttle", did))
        if not sub.fetch:
            write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)
        event(log, logging.INFO, "reg subscription ended", aor=sub.aor)

    # ------------------------------------------------------------ restart

    def restore(self, records: Iterable[SubscriptionRecord]) -> int:
        n = 0
        for rec in records:
            try:
                sub = self._from_record(rec)
            except (ValueError, KeyError, FormatError) as exc:
                event(log, logging.WARNING, "unusable reg subscription record", error=str(exc))
                write(log, self.ctx.store.delete_subscription, *rec.key)
                continue
            self.subs[sub.did] = sub
            self.scheduler.set(("reg", sub.did), sub.notifier.next_deadline())
            n += 1
        if n:
            event(log, logging.INFO, "reg subscriptions restored", count=n)
        return n

    def _from_record(self, rec: SubscriptionRecord) -> RegSub:
        watcher_uri = parse_uri(rec.watcher)
        aor = canonical_aor(parse_uri(rec.target))
        if not isinstance(watcher_uri, SipUri) or rec.remote_target is None or aor is None:
            raise ValueError(f"bad reg record {rec.call_id}")
        document = None
        version = -1
        if rec.last_document is not None:
            document = StateDocument(rec.last_document, MEDIA_TYPE)
            try:
                version = parse_reginfo(rec.last_document).version
            except ReginfoError:
                version = -1
        notifier = restore_notifier(
            rec,
            local=NameAddr(parse_uri(rec.target)),
            content_type=MEDIA_TYPE,
            package=self.package,
            local_target=self.ctx.config.contact_addr,
            document=document,
        )
        # Changes while we were down are not replayed: the next refresh gets the full state.
        return RegSub(aor, notifier, version=version)


def _document(doc: RegInfo) -> StateDocument:
    return StateDocument(build_reginfo(doc), MEDIA_TYPE)

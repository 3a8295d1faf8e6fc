"""The presence bridge (RFC 8048 over RFC 6665): one service for both directions.

* `handle_subscribe` / `handle_notify` are the SIP dispatcher's handlers for SUBSCRIBE and
  NOTIFY (gateway/bridge/dispatch.py); `on_presence` is registered on every component
  for presence stanzas (`links.add_stanza_handler("presence", ...)`).
* XMPP stanzas are routed by what they ask: `subscribe` / `unsubscribe` / `probe` address
  a SIP user the XMPP user wants to watch (X2S, x2s.py); `subscribed` /
  `unsubscribed` / available / unavailable / error answer a SIP watcher (S2X,
  s2x.py). An error to the bare component domain answers our refresh probe.
* With the registrar (`registrar=`), contacts that are SIP users hosted here are served by
  the gateway itself (hosted.py: no SUBSCRIBE goes out) and those users may
  SUBSCRIBE to `presence.winfo` to see and decide who watches them (winfo.py).
* Out-of-dialog SUBSCRIBEs go through the `router` (gateway/bridge/routing.py) when given.
* One `Scheduler` (one heap, one `loop.call_at`) holds every deadline of both directions:
  refreshes, expiries, Timer N, retries, throttled NOTIFYs.
* `start()` restores every subscription from the store before the timer runs, so dialogs
  continue across a restart: nothing is sent to anyone at restore except probes that
  refresh what S2X watchers see (no spurious unsubscribe, no spurious NOTIFY).

Decisions are in docs/presence.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from typing import Any, Protocol, cast

from gateway.bridge.presence.activity import ActivityRegistrar, CallActivity
from gateway.bridge.presence.context import (
    PresenceConfig,
    PresenceContext,
    Router,
    SipSender,
    TargetResolver,
    XmppOut,
)
from gateway.bridge.presence.hosted import (
    AUTO_APPROVE_HOSTED,
    Hosted,
    HostedRegistrar,
    is_hosted_record,
)
from gateway.bridge.presence.notifying import Authorize
from gateway.bridge.presence.records import is_presence_record, is_winfo_record
from gateway.bridge.presence.s2x import S2x
from gateway.bridge.presence.scheduler import Scheduler
from gateway.bridge.presence.winfo import Winfo
from gateway.bridge.presence.x2s import X2s
from gateway.config import CallActivitySection
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.store.api import Store, SubscriptionRecord
from gateway.xmpp.links import LinkDown, StanzaRefused
from gateway.xmpp.presence_convert import (
    build_presence,
    disable_roster_automation,
    read_presence,
)
from mappings.addresses import DomainMap
from mappings.callactivity import CallDisplay, CallShow
from mappings.jid import Jid
from mappings.presence import XmppPresence

__all__ = ["PresenceExtension", "PresenceService"]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.presence")

TimerKey = tuple[str, Hashable]
# How long a stop waits for the server to confirm the departures (app.py passes half of
# [gateway] drain_timeout, so that the rest of the drain keeps its time).
DEPARTURE_GRACE = 2.0


class PresenceExtension(Protocol):
    """A part built on the presence service (the resource list server,
    gateway/bridge/lists): it takes the SUBSCRIBEs it `owns` and its own store records,
    and runs its timers on the presence scheduler."""

    def owns(self, request: Any) -> bool: ...

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None: ...

    def handle_notify(self, incoming: Any) -> bool: ...

    def is_record(self, record: SubscriptionRecord) -> bool: ...

    def restore(self, records: list[SubscriptionRecord], now: float) -> int: ...

    def stop(self) -> None: ...


class PresenceService:
    """Both presence directions over one scheduler and one store."""

    def __init__(
        self,
        config: PresenceConfig,
        *,
        endpoint: SipSender,
        resolver: TargetResolver,
        links: XmppOut,
        store: Store,
        maps: Mapping[str, DomainMap],
        metrics: Metrics | None = None,
        authorize: Authorize | None = None,
        clock: Callable[[], float] = time.time,
        router: Router | None = None,
        registrar: HostedRegistrar | None = None,
        auto_approve_hosted: bool = AUTO_APPROVE_HOSTED,
        departure_grace: float = DEPARTURE_GRACE,
        call_activity: CallActivitySection | None = None,
    ) -> None:
        self.links = links
        self.departure_grace = departure_grace
        self.scheduler: Scheduler[TimerKey] = Scheduler(self._fire, clock=clock)
        self.ctx = PresenceContext(
            config=config,
            endpoint=endpoint,
            resolver=resolver,
            xmpp=links,
            store=store,
            maps=dict(maps),
            scheduler=self.scheduler,
            metrics=metrics,
            clock=clock,
            router=router,
        )
        self.x2s = X2s(self.ctx)
        # Users hosted by our registrar: the gateway is their presence agent, and they
        # see and decide who watches them through presence.winfo (hosted.py).
        self.hosted: Hosted | None = None
        self.winfo: Winfo | None = None
        self.activity: CallActivity | None = None
        if registrar is not None:
            if call_activity is not None and call_activity.enabled:  # docs/call-activity.md
                self.activity = CallActivity(
                    CallDisplay(cast(CallShow, call_activity.show), call_activity.status),
                    self.ctx,
                    cast(ActivityRegistrar, registrar),
                    subscribe_dialog=call_activity.subscribe_dialog,
                    changed=self._call_changed,
                )
            self.hosted = Hosted(
                self.ctx,
                registrar,
                auto_approve=auto_approve_hosted,
                watching=self._watching,
                activity=None if self.activity is None else self.activity.presences,
            )
            self.winfo = Winfo(self.ctx, self.hosted, authorize=authorize)
        on_watch = None if self.hosted is None else self.hosted.on_sip_watch
        self.s2x = S2x(self.ctx, authorize=authorize, on_watch=on_watch)
        self._timers: dict[str, Callable[[Any, float], None]] = {
            "x2s": self.x2s.handle_timer,
            "x2s-fetch": self.x2s.handle_fetch_timer,
            "s2x": self.s2x.handle_timer,
            "s2x-throttle": self.s2x.handle_throttle,
            "s2x-flush": self.s2x.handle_flush,
        }
        if self.activity is not None:
            self._timers["activity"] = self.activity.handle_timer
        if self.winfo is not None:
            self._timers["winfo"] = self.winfo.handle_timer
            self._timers["winfo-throttle"] = self.winfo.handle_throttle
        self.extensions: list[PresenceExtension] = []
        self.restored = 0

    def extend(
        self, part: PresenceExtension, timers: Mapping[str, Callable[[Any, float], None]]
    ) -> None:
        """Add `part` (before `start`: its records are restored there); `timers` are its
        scheduler key kinds and handlers."""
        self.extensions.append(part)
        self._timers.update(timers)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        for domain in self.ctx.maps:
            disable_roster_automation(self.links.component(domain))
        add = getattr(self.links, "add_stanza_handler", None)
        if add is not None:
            add("presence", self.on_presence)
        self.restore()
        self.scheduler.start()

    async def stop(self) -> None:
        self.scheduler.stop()
        for part in self.extensions:
            part.stop()
        self.s2x.stop()  # NOTIFYs in flight: their outcomes are no longer handled
        tasks = [*self.x2s._tasks, *self.s2x._tasks]
        if self.winfo is not None:
            tasks += self.winfo._tasks
        if self.activity is not None:
            tasks += self.activity.stop()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.s2x.flush()  # dialog changes not yet written (CSeq after NOTIFYs)
        await self.depart()

    async def depart(self) -> int:
        """Clean departure (docs/presence.md, "Restart and drain"): every contact resource
        shown available to an XMPP watcher (a subscriber, or a prober that only got a
        fetch's answer) gets `unavailable` (RFC 6121 §4.5.2 is what a
        client's server does for its user; the gateway does it for its contacts) before
        the links close. Per domain the stanzas are written at once and the last one is
        confirmed (the stream is ordered: its ping answers for all), within
        `departure_grace`. Returns how many were confirmed."""
        by_domain: dict[str, list[Any]] = {}
        sources = [self.x2s.departures()]
        if self.hosted is not None:
            sources.append(self.hosted.departures())
        seen: set[tuple[str, str, str]] = set()  # a prober may also hold a subscription
        for source in sources:
            for domain, sender, watcher in source:
                key = (domain, str(sender), str(watcher))
                if key in seen:
                    continue
                seen.add(key)
                comp = self.links.component(domain)
                stanza = build_presence(
                    comp,
                    sender=sender,
                    recipient=watcher,
                    presence=XmppPresence(resource=sender.resource, available=False),
                )
                by_domain.setdefault(domain, []).append(stanza)
        if not by_domain:
            return 0
        results = await asyncio.gather(
            *(self._depart_domain(d, stanzas) for d, stanzas in by_domain.items())
        )
        return sum(results)

    async def _depart_domain(self, domain: str, stanzas: list[Any]) -> int:
        if not self.links.is_up(domain):
            event(log, logging.WARNING, "departures not sent, link down", domain=domain,
                  count=len(stanzas))  # fmt: skip
            return 0
        *rest, last = stanzas
        for stanza in rest:
            self.links.send(domain, stanza)
        try:
            await self.links.send_confirmed(domain, last, self.departure_grace)
        except (LinkDown, StanzaRefused) as exc:
            event(log, logging.WARNING, "departures not confirmed", domain=domain,
                  count=len(stanzas), error=str(exc))  # fmt: skip
            return 0
        event(log, logging.INFO, "departures sent", domain=domain, count=len(stanzas))
        return len(stanzas)

    def on_link_up(self, domain: str) -> None:
        """A component link came up (first start, restart, reconnection): re-announce the
        contacts known available, after the stanzas queued while it was down."""
        asyncio.get_running_loop().call_soon(self.reannounce, domain)

    def reannounce(self, domain: str) -> None:
        self.x2s.reannounce(domain)
        if self.hosted is not None:
            self.hosted.reannounce(domain)

    def restore(self) -> int:
        now = self.ctx.clock()
        hosted: list[SubscriptionRecord] = []
        winfo: list[SubscriptionRecord] = []
        x2s: list[SubscriptionRecord] = []
        extra: list[list[SubscriptionRecord]] = [[] for _ in self.extensions]
        seen = 0

        def s2x() -> Iterator[SubscriptionRecord]:
            # One pass over the store, S2X records streamed (100,000 records are never held
            # at once: docs/performance.md); the other kinds are few and kept for later.
            nonlocal seen
            for r in self.ctx.store.all_subscriptions():
                seen += 1
                owner = next((i for i, p in enumerate(self.extensions) if p.is_record(r)), None)
                if owner is not None:
                    extra[owner].append(r)
                elif not is_presence_record(r):
                    continue  # another event package's (the reg event's)
                elif is_hosted_record(r):
                    hosted.append(r)
                elif is_winfo_record(r):
                    winfo.append(r)
                elif r.direction == "x2s":
                    x2s.append(r)
                else:
                    yield r

        with bulk_load():
            self.restored = self.s2x.restore(s2x(), now)
            self.restored += self.x2s.restore(x2s, now)
            if self.hosted is not None and self.winfo is not None:
                self.restored += self.hosted.restore(hosted) + self.winfo.restore(winfo)
            for part, records in zip(self.extensions, extra, strict=True):
                self.restored += part.restore(records, now)
        if seen:
            event(log, logging.INFO, "presence subscriptions restored", count=self.restored)
        return self.restored

    # ------------------------------------------------------------ SIP

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None:
        for part in self.extensions:
            if part.owns(incoming.request):
                return part.handle_subscribe(incoming)
        if self.winfo is not None and self.winfo.owns(incoming.request):
            return self.winfo.handle_subscribe(incoming)
        return self.s2x.handle_subscribe(incoming)

    def _watching(self, sip_user: Jid, xmpp_user: Jid) -> bool:
        """Does the SIP user (as its component JID) watch the XMPP user?"""
        return (str(sip_user.bare), str(xmpp_user.bare)) in self.s2x.watches

    def _call_changed(self, aor: str) -> None:
        if self.hosted is not None:
            self.hosted.on_change(aor)

    def handle_notify(self, incoming: Any) -> None:
        if self.activity is not None and self.activity.handle_notify(incoming):
            return
        if self.x2s.handle_notify(incoming):
            return
        if not any(part.handle_notify(incoming) for part in self.extensions):
            incoming.reply(481)  # RFC 6665 §4.1.3: no such subscription

    # ------------------------------------------------------------ XMPP

    def on_presence(self, stanza: Any) -> None:
        inbound = read_presence(stanza)
        if inbound is None:
            return
        sender, recipient, kind = inbound.sender, inbound.recipient, inbound.kind
        if recipient.local is None:  # to the component domain: answers to refresh probes
            if kind == "error":
                self.x2s.on_probe_error(sender.bare)
            return
        aor = None
        if self.hosted is not None and kind in ("subscribe", "unsubscribe", "probe"):
            aor = self.hosted.aor_of(recipient)
        if aor is not None and self.hosted is not None:  # the gateway is the presence agent
            {
                "subscribe": self.hosted.on_subscribe,
                "unsubscribe": self.hosted.on_unsubscribe,
                "probe": self.hosted.on_probe,
            }[kind](sender, recipient, aor)
        elif kind == "subscribe":
            self.x2s.on_subscribe(sender, recipient)
        elif kind == "unsubscribe":
            self.x2s.on_unsubscribe(sender, recipient)
        elif kind == "probe":
            self.x2s.on_probe(sender, recipient)
        elif kind == "subscribed":
            self.s2x.on_subscribed(sender, recipient)
        elif kind == "unsubscribed":
            self.s2x.on_unsubscribed(sender, recipient)
        elif kind == "error":
            self.s2x.on_error(sender, recipient)
        elif inbound.presence is not None:
            self.s2x.on_presence(sender, recipient, inbound.presence)

    # ------------------------------------------------------------ timers

    def _fire(self, keys: list[TimerKey], now: float) -> None:
        for kind, key in keys:
            try:
                self._timers[kind](key, now)
            except Exception:  # one subscription's failure must not stop the others
                log.exception("presence timer failed for %s", kind)


@contextlib.contextmanager
def bulk_load() -> Iterator[None]:
    """Build many long-lived objects (a restore) with the cyclic GC paused, then freeze them.

    Restoring 100,000 subscriptions allocates a few million containers; with the collector
    on, each generation-2 pass walks all of them again, which tripled the restore time
    (docs/performance.md). `gc.freeze()` then moves what exists into the permanent
    generation, so later full collections do not walk the subscriptions either (no
    second-long pauses under load). Objects freed by reference counting are still freed.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()

"""The presence bridge (RFC 8048 over RFC 6665): one service for both directions.

* `handle_subscribe` / `handle_notify` are the SIP dispatcher's handlers for SUBSCRIBE and
  NOTIFY (gateway/bridge/dispatch.py); `on_presence` is registered on every component
  for presence stanzas (`links.add_stanza_handler("presence", ...)`).
* XMPP stanzas are routed by what they ask: `subscribe` / `unsubscribe` / `probe` address
  a SIP user the XMPP user wants to watch (X2S, presence_x2s.py); `subscribed` /
  `unsubscribed` / available / unavailable / error answer a SIP watcher (S2X,
  presence_s2x.py). An error to the bare component domain answers our refresh probe.
* One `Scheduler` (one heap, one `loop.call_at`) holds every deadline of both directions:
  refreshes, expiries, Timer N, retries, throttled NOTIFYs.
* `start()` restores every subscription from the store before the timer runs, so dialogs
  continue across a restart: nothing is sent to anyone at restore except probes that
  refresh what S2X watchers see (no spurious unsubscribe, no spurious NOTIFY).

Decisions are in docs/presence.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Any

from gateway.bridge.presence_context import (
    PresenceConfig,
    PresenceContext,
    Router,
    SipSender,
    TargetResolver,
    XmppOut,
)
from gateway.bridge.presence_s2x import Authorize, S2x
from gateway.bridge.presence_x2s import X2s
from gateway.bridge.scheduler import Scheduler
from gateway.logs import event
from gateway.metrics import Metrics
from gateway.store.api import Store
from gateway.xmpp.presence_convert import disable_roster_automation, read_presence
from mappings.addresses import DomainMap

__all__ = ["PresenceService"]

log = logging.getLogger(__name__)

TimerKey = tuple[str, Hashable]


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
    ) -> None:
        self.links = links
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
        self.s2x = S2x(self.ctx, authorize=authorize)
        self._timers: dict[str, Callable[[Any, float], None]] = {
            "x2s": self.x2s.handle_timer,
            "x2s-fetch": self.x2s.handle_fetch_timer,
            "s2x": self.s2x.handle_timer,
            "s2x-throttle": self.s2x.handle_throttle,
        }
        self.restored = 0

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
        tasks = [*self.x2s._tasks, *self.s2x._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def restore(self) -> int:
        now = self.ctx.clock()
        records = list(self.ctx.store.all_subscriptions())
        self.restored = self.x2s.restore((r for r in records if r.direction == "x2s"), now)
        self.restored += self.s2x.restore((r for r in records if r.direction == "s2x"), now)
        if records:
            event(log, logging.INFO, "presence subscriptions restored", count=self.restored)
        return self.restored

    # ------------------------------------------------------------ SIP

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None:
        return self.s2x.handle_subscribe(incoming)

    def handle_notify(self, incoming: Any) -> None:
        if not self.x2s.handle_notify(incoming):
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
        if kind == "subscribe":
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

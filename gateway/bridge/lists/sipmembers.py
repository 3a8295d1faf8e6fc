"""Back-end SUBSCRIBEs to list members that are foreign SIP users (RFC 4662 §4, RFC 3856).

One `SipFollow` per (list owner's AOR, member URI), shared by the owner's lists: the
pure RFC 6665 `Subscriber` (From the owner, To the member, our Contact), its state as an
RLMI instance, and who follows it. Its NOTIFYs reach `handle_notify` through the presence
service (after X2S, before the 481); one scheduler key per follow, ("rls-sip", key), for
refresh, Timer N, expiry and retries.

* `Pending` -> `pending`; `Authorized` -> `active` (a closed PIDF until a document
  comes); a PIDF NOTIFY body -> `active` with it.
* The end of the subscription follows `mappings.errors.subscription_end`, the X2S policy:
  permanent (403, 489, 603, `rejected`, `noresource`, ...) -> `terminated` with the
  reason, no retry; anything else -> `terminated;reason=probation` (RFC 4662 §4.5: the
  RLS will try again) and a new SUBSCRIBE after the X2S backoff.
* The last follower gone: SUBSCRIBE Expires: 0 (RFC 6665 §4.1.2.3); the follow is
  forgotten at once, its dialog when the final NOTIFY (or a failure) ends it.

Not stored: after a restart the lists follow their members again with new SUBSCRIBEs (the
old dialogs' NOTIFYs get 481, which ends them at the member's notifier).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.bridge.lists.view import UNKNOWN, MemberState
from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.bridge.presence.x2s import backoff
from gateway.logs import event
from gateway.sip.headers import NameAddr
from gateway.sip.message import SipRequest, make_response
from gateway.sip.subscriber import Subscriber, SubscriberConfig, SubState
from gateway.sip.subscription import (
    Action,
    AnswerNotify,
    Authorized,
    Pending,
    SendSubscribe,
    StateDocument,
    Terminated,
)
from gateway.sip.uri import parse_uri
from mappings.errors import subscription_end
from mappings.pidf import MEDIA_TYPE as PIDF
from mappings.pidf import build_pidf
from mappings.presence import xmpp_to_pidf

__all__ = ["SipFollow", "SipMembers"]

log = logging.getLogger("gateway.bridge.lists")

FollowKey = tuple[str, str]  # (owner AOR, member URI)
Listener = Callable[["SipFollow"], None]


@dataclass(eq=False)
class SipFollow:
    owner: str
    uri: str
    sub: Subscriber
    listeners: list[Listener] = field(default_factory=list)
    state: MemberState = UNKNOWN
    failures: int = 0
    retry_at: float | None = None
    ending: bool = False

    @property
    def key(self) -> FollowKey:
        return self.owner, self.uri


class SipMembers:
    """Back-end SIP subscriptions of the list server."""

    def __init__(self, ctx: PresenceContext, *, rng: random.Random | None = None) -> None:
        self.ctx = ctx
        self.follows: dict[FollowKey, SipFollow] = {}
        self.by_dialog: dict[tuple[str, str], SipFollow] = {}  # (Call-ID, our tag)
        self._tasks = Tasks("lists-sip")
        self._rng = rng or random.Random()

    def timers(self) -> dict[str, Callable[[Any, float], None]]:
        return {"rls-sip": self.handle_timer}

    def follow(self, owner: str, uri: str, listener: Listener) -> SipFollow:
        f = self.follows.get((owner, uri))
        if f is None:
            config = SubscriberConfig(
                expires=self.ctx.config.expires, timers=self.ctx.config.timers
            )
            sub = Subscriber(
                parse_uri(uri),
                local=NameAddr(parse_uri(owner)),
                remote=NameAddr(parse_uri(uri)),
                contact=self.ctx.config.contact_addr,
                config=config,
            )
            f = SipFollow(owner, uri, sub)
            self.follows[f.key] = f
            now = self.ctx.clock()
            self._run(f, sub.subscribe(now), now)
        f.listeners.append(listener)
        return f

    def unfollow(self, f: SipFollow, listener: Listener) -> None:
        if listener in f.listeners:
            f.listeners.remove(listener)
        if f.listeners or f.ending:
            return
        f.ending = True
        if self.follows.get(f.key) is f:
            del self.follows[f.key]
        now = self.ctx.clock()
        self._run(f, f.sub.unsubscribe(now), now)

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------ input

    def handle_notify(self, incoming: Any) -> bool:
        req: SipRequest = incoming.request
        call_id, tag = req.call_id, req.to_tag
        f = None if call_id is None or tag is None else self.by_dialog.get((call_id, tag))
        if f is None:
            return False
        now = self.ctx.clock()
        self._run(f, f.sub.receive_notify(req, now), now, incoming)
        return True

    def handle_timer(self, key: FollowKey, now: float) -> None:
        f = self.follows.get(key)
        if f is None:
            return
        if f.retry_at is not None and now >= f.retry_at:
            f.retry_at = None
            self._run(f, f.sub.subscribe(now), now)
        else:
            self._run(f, f.sub.handle_timer(now), now)

    # ------------------------------------------------------------ the engine

    def _run(
        self, f: SipFollow, actions: Iterable[Action], now: float, incoming: Any = None
    ) -> None:
        before = f.state
        for action in actions:
            if isinstance(action, SendSubscribe):
                self._tasks.spawn(self._send(f, action.request))
            elif isinstance(action, AnswerNotify):
                if incoming is not None:
                    incoming.respond(action.response)
            elif isinstance(action, Pending):
                f.failures = 0
                f.state = MemberState("pending")
            elif isinstance(action, Authorized):
                f.failures = 0
                if f.state.state != "active":
                    f.state = MemberState("active", document=self._closed(f))
            elif isinstance(action, StateDocument):
                if action.content_type is None or action.content_type.lower() == PIDF:
                    f.state = MemberState("active", document=action.body)
            elif isinstance(action, Terminated):
                self._terminated(f, action, now)
        self._index(f)
        deadline = f.sub.next_deadline()
        if f.retry_at is not None:
            deadline = f.retry_at if deadline is None else min(deadline, f.retry_at)
        live = self.follows.get(f.key) is f
        self.ctx.scheduler.set(("rls-sip", f.key), deadline if live else None)
        if f.state != before and not f.ending:
            for listener in list(f.listeners):
                listener(f)

    def _index(self, f: SipFollow) -> None:
        """NOTIFYs are routed by (Call-ID, our tag) of the live SUBSCRIBE only: a new
        dialog (a retry) replaces the old key, an ended subscription has none."""
        for key in [k for k, v in self.by_dialog.items() if v is f and k != f.sub.key]:
            del self.by_dialog[key]
        if f.sub.state is SubState.TERMINATED:
            self.by_dialog.pop(f.sub.key, None)
        else:
            self.by_dialog[f.sub.key] = f

    def _terminated(self, f: SipFollow, ended: Terminated, now: float) -> None:
        event(log, logging.INFO, "list member subscription ended", owner=f.owner,
              member=f.uri, cause=ended.cause.value, reason=ended.reason,
              status=ended.status)  # fmt: skip
        if f.ending:
            return
        end = subscription_end(ended)
        if end.permanent:
            f.state = MemberState("terminated", reason=ended.reason or "rejected")
            if self.follows.get(f.key) is f:
                self.ctx.scheduler.cancel(("rls-sip", f.key))
            return
        f.state = MemberState("terminated", reason="probation")  # RFC 4662 §4.5
        f.failures += 1
        cfg = self.ctx.config
        delay = backoff(f.failures, cfg.retry_min, cfg.retry_max, self._rng.random())
        f.retry_at = now + max(delay, float(end.retry_after or 0))

    async def _send(self, f: SipFollow, request: SipRequest) -> None:
        try:
            response = await self.ctx.send(request)
        except SendFailed as exc:
            event(log, logging.INFO, "list member SUBSCRIBE failed", member=f.uri,
                  error=str(exc))  # fmt: skip
            response = make_response(request, exc.status)  # RFC 3261 §8.1.3.1
        now = self.ctx.clock()
        self._run(f, f.sub.receive_response(response, now), now)

    @staticmethod
    def _closed(f: SipFollow) -> bytes:
        return build_pidf(xmpp_to_pidf("pres:" + f.uri.split(":", 1)[1], ()))

"""What our notifier dialogs share (RFC 6665 §4.2): S2X (`s2x.S2x`) and winfo (`winfo.Winfo`).

* `handle_subscribe`: a SUBSCRIBE outside a dialog starts one (the part's `initial`
  coroutine); one inside a dialog the part holds refreshes or ends it (`in_dialog`); one
  inside a dialog nobody holds gets 481 (RFC 6665 §4.2.1.2, RFC 3261 §12.2.2).
* `check_initial`: the package checks of an initial SUBSCRIBE (`notifier.check_subscribe`),
  answering the refused ones (489, 400, 423 with Min-Expires, ...).
* `identify`: the registrar's verdict on the subscriber (Digest, registered flow, trusted
  peer) when a registrar is configured.
* `NotifyThrottle`: at most one NOTIFY per interval per subscription (RFC 3856 §6.2.2,
  RFC 3857 §4.10); a change inside the interval waits for a scheduler timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Final, TypeVar

from gateway.bridge.presence.context import PresenceContext
from gateway.sip.dialog import DialogId
from gateway.sip.message import SipResponse
from gateway.sip.notifier import PackageConfig, SubscribeDecision, check_subscribe
from gateway.sip.useragent import IncomingRequest

__all__ = [
    "UNCHECKED",
    "Authorize",
    "NotifyThrottle",
    "check_initial",
    "handle_subscribe",
    "identify",
]

E = TypeVar("E")
# The registrar's check of a request (`Registrar.authorize`): the identity, an awaitable
# of it, or None once it has answered the request itself (challenge, 403, 503).
Authorize = Callable[[IncomingRequest, str], object]
UNCHECKED: Final = object()  # `identify` without a registrar: nobody checked
# Headers of a refusal by `check_subscribe` that go into the answer.
_KEEP = ("Allow-Events", "Min-Expires")


def handle_subscribe(
    incoming: IncomingRequest,
    dialogs: Mapping[DialogId, E],
    in_dialog: Callable[[IncomingRequest, DialogId, E], None],
    initial: Callable[[IncomingRequest], Awaitable[None]],
) -> Awaitable[None] | None:
    """Send an incoming SUBSCRIBE where it belongs: `initial(incoming)` (returned, for the
    dispatcher to await) without a To tag; `in_dialog(incoming, id, entry)` for the entry
    of one of `dialogs`; 481 for any other dialog."""
    req = incoming.request
    if req.to_tag is None:
        return initial(incoming)
    did = DialogId.of_incoming(req)
    entry = None if did is None else dialogs.get(did)
    if did is None or entry is None:
        incoming.reply(481)
    else:
        in_dialog(incoming, did, entry)
    return None


def check_initial(
    incoming: IncomingRequest, packages: Mapping[str, PackageConfig]
) -> SubscribeDecision | None:
    """The decision on an initial SUBSCRIBE, or None once it has been refused."""
    decision = check_subscribe(incoming.request, packages)
    if isinstance(decision, SipResponse):
        incoming.reply(decision.status, headers=[h for h in decision.headers if h[0] in _KEEP])
        return None
    return decision


async def identify(incoming: IncomingRequest, authorize: Authorize | None) -> object | None:
    """Who subscribes, as the registrar says (None: it has answered the request: challenge,
    403, 503); `UNCHECKED` without a registrar."""
    if authorize is None:
        return UNCHECKED
    identity = authorize(incoming, "subscribe")
    if asyncio.iscoroutine(identity):
        identity = await identity
    return identity


class NotifyThrottle:
    """At most one NOTIFY per `notify_interval` per subscription (RFC 3856 §6.2.2,
    RFC 3857 §4.10), on the presence scheduler.

    `ready(last, now, timer)`: True when a NOTIFY may go now (its last went at `last`);
    else the scheduler's `timer` is set for the end of the interval and False: the caller
    keeps the change pending and sends the newest state when `timer` fires."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: PresenceContext) -> None:
        self.ctx = ctx  # the interval is read at each call: the config may be replaced

    def ready(self, last: float, now: float, timer: tuple[str, Hashable]) -> bool:
        due = last + self.ctx.config.notify_interval
        if now >= due:
            return True
        self.ctx.scheduler.set(timer, due)
        return False

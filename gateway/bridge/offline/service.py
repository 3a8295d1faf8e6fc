"""Store-and-forward for offline hosted SIP users: the asyncio glue (docs/offline.md).

`OfflineService.offer` stores an XMPP -> SIP message for a known hosted user with no
binding (the pager calls it on `NoBinding`): the policy's quota check first (over quota:
`OverQuota` -> 480 / recipient-unavailable with its text), then one committed row in the
store before the pager's handler returns. Registrations (`Registrar.on_presence_change`)
start one delivery task per user; it sends the queue's head through
`Registrar.send_to_user` (the location service) and acts on `policy.after_attempt`. A
message leaves the store only after a device's 2xx (at-least-once; a crash between the
2xx and the delete sends it again, with the same IMDN Message-ID when it is CPIM).
Expiry is one `loop.call_at` timer over a `DeadlineQueue` of users; an expired message
sends its XMPP sender recipient-unavailable "expired undelivered after ...".

In a cluster (docs/cluster.md) deliveries, retries and expiry run only on the instance
holding the OFFLINE_QUEUE lease; any instance stores. The owner re-reads the store's
queues every `resync_every` seconds and when it takes the lease over, so messages stored
and registrations made through other instances are delivered from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from email.utils import formatdate
from typing import Any, Protocol

from gateway.bridge.offline.policy import (
    Delivered,
    OverQuota,
    QueuePolicy,
    Rejected,
    Retry,
    Usage,
    admit,
    after_attempt,
    split_expired,
)
from gateway.bridge.pager import sip_message as sm
from gateway.cluster.keeper import OFFLINE_QUEUE, Leases, SoloLeases
from gateway.config import OfflineSection
from gateway.logs import event
from gateway.registrar.delivery import NoBinding
from gateway.sip.deadlines import DeadlineQueue
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.useragent import MessageTooLarge, TransactionTimeout, TransportFailure
from gateway.store.api import Store, StoredMessage, StoreError
from gateway.xmpp.convert import error_reply
from mappings.errors import MappingError, XmppErrorInfo, sip_to_xmpp

__all__ = ["OfflineService", "QuotaExceeded", "policy_of"]

log = logging.getLogger("gateway.bridge.offline")


class QuotaExceeded(MappingError):
    """Known but unreachable and not storable: 480 / recipient-unavailable (RFC 7247)."""

    def __init__(self, aor: str, text: str) -> None:
        super().__init__(
            f"{aor} is offline and {text}",
            sip_status=480,
            xmpp_condition="recipient-unavailable",
        )


class Registrar(Protocol):
    """What the offline queue needs of gateway.registrar.service.Registrar."""

    def bindings(self, aor: str) -> list[Any]: ...

    def on_presence_change(self, callback: Callable[[str], None]) -> None: ...

    def send_to_user(
        self, aor: str, build: Callable[[str], SipRequest], *, resource: str | None = None
    ) -> Awaitable[SipResponse]: ...


class Links(Protocol):
    def component(self, domain: str) -> Any: ...

    def send(self, domain: str, stanza: Any) -> bool: ...


def policy_of(cfg: OfflineSection) -> QueuePolicy:
    return QueuePolicy(cfg.max_messages, cfg.max_bytes, cfg.max_age, cfg.retry_min, cfg.retry_max)


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:g} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    return f"{seconds:g} seconds"


class OfflineService:
    """The offline queues of every hosted user, over the store."""

    def __init__(
        self,
        cfg: OfflineSection,
        store: Store,
        registrar: Registrar,
        links: Links,
        *,
        clock: Callable[[], float] = time.time,
        leases: Leases | None = None,
        resync_every: float | None = None,
    ) -> None:
        self.cfg = cfg
        self._leases: Leases = leases or SoloLeases()
        self._resync_every = resync_every
        self._resyncer: asyncio.Task[None] | None = None
        self.policy = policy_of(cfg)
        self._store = store
        self._registrar = registrar
        self._links = links
        self._clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._expiry: DeadlineQueue[str] = DeadlineQueue()
        self._usage: dict[str, Usage] = {}  # users with stored messages: what they hold
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cseq = itertools.count(1)
        # A stored message was taken by a device (2xx): the pager re-arms its IMDN
        # correlation so that the device's IMDN becomes the XEP-0184 receipt.
        self.on_delivered: Callable[[StoredMessage], None] = lambda _m: None
        registrar.on_presence_change(self._changed)
        self._leases.on_gain(OFFLINE_QUEUE, self._resync_soon)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Index the stored messages (expiry per user) and deliver to users registered."""
        self._loop = asyncio.get_running_loop()
        users = self._index()
        event(log, logging.INFO, "offline queues restored", users=users)
        if self._resync_every is not None:
            self._resyncer = self._loop.create_task(self._resync_loop(self._resync_every))

    def _index(self) -> int:
        """(Re)build the expiry and usage indexes from the store; deliver where possible."""
        users: dict[str, float] = {}
        usage: dict[str, Usage] = {}
        for m in self._store.all_messages():
            users[m.aor] = min(users.get(m.aor, m.expires_at), m.expires_at)
            usage[m.aor] = usage.get(m.aor, Usage()).add(m.size)
        for aor in self._usage.keys() - users.keys():  # delivered or expired elsewhere
            self._expiry.cancel(aor)
        self._usage = usage
        for aor, at in users.items():
            self._expiry.set(aor, at)
        self._rearm()
        for aor in users:
            self._changed(aor)
        return len(users)

    def _resync_soon(self) -> None:
        """This instance took the OFFLINE_QUEUE lease: pick up what the store holds."""
        if self._loop is not None:
            self._loop.call_soon(self.resync)

    def resync(self) -> None:
        if self._loop is None or not self._leases.holds(OFFLINE_QUEUE):
            return
        try:
            self._index()
        except StoreError as exc:  # error boundary: the next resync tries again
            event(log, logging.ERROR, "offline resync failed", error=str(exc))

    async def _resync_loop(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.resync()

    async def stop(self) -> None:
        if self._resyncer is not None:
            self._resyncer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resyncer
            self._resyncer = None
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._loop = None, None
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # ------------------------------------------------------------------ storing

    def offer(self, message: StoredMessage) -> None:
        """Store `message` (its `expires_at` is set here); QuotaExceeded when it may not.
        Returns once the row is committed; a duplicate id stores nothing."""
        now = self._clock()
        usage = self._usage.get(message.aor, Usage())
        verdict = admit(self.policy, usage, message.size, now)
        if isinstance(verdict, OverQuota):
            event(log, logging.INFO, "offline quota", aor=message.aor, reason=verdict.text)
            raise QuotaExceeded(message.aor, verdict.text)
        stored = replace(message, stored_at=now, expires_at=verdict.expires_at)
        try:
            fresh = self._store.put_message(stored)
        except StoreError as exc:
            raise MappingError(
                f"message not stored: {exc}",
                sip_status=500,
                xmpp_condition="internal-server-error",
            ) from None
        if fresh:
            self._usage[message.aor] = usage.add(message.size)
        event(
            log,
            logging.INFO,
            "message stored",
            aor=message.aor,
            message_id=message.message_id,
            sender=message.sender,
            duplicate=not fresh,
        )
        if (earliest := self._expiry.get(message.aor)) is None or earliest > stored.expires_at:
            self._expiry.set(message.aor, stored.expires_at)
            self._rearm()
        if fresh and self.cfg.notice and not self._registrar.bindings(message.aor):
            self._notice(stored)  # not when it only waits behind others for a device
        self._changed(message.aor)  # registered meanwhile (a race with REGISTER)

    def _notice(self, m: StoredMessage) -> None:
        """Informational, not a receipt (docs/offline.md): a headline from the SIP user."""
        comp = self._links.component(m.component)
        user = m.aor.removeprefix("sip:")
        text = f"{user} is offline: message stored, delivered when they come online"
        self._links.send(
            m.component,
            comp.make_message(mto=m.sender, mfrom=m.recipient, mbody=text, mtype="headline"),
        )

    # ------------------------------------------------------------------ delivery

    def _changed(self, aor: str) -> None:
        """A registration changed: deliver if the user has a device and messages."""
        if self._loop is None or aor in self._tasks or not self._registrar.bindings(aor):
            return
        if not self._leases.holds(OFFLINE_QUEUE):
            return  # the owner delivers (docs/cluster.md)
        if aor not in self._expiry:
            return  # nothing stored for this user
        task = self._loop.create_task(self._deliver(aor))
        self._tasks[aor] = task
        task.add_done_callback(lambda _t: self._tasks.pop(aor, None))

    def pending(self, aor: str) -> bool:
        """Are messages stored for `aor`? A new message then joins the queue behind them
        instead of overtaking them (delivery in order)."""
        return aor in self._expiry

    async def _deliver(self, aor: str) -> None:
        try:
            await self._deliver_queue(aor)
        except StoreError as exc:  # error boundary: the next registration tries again
            event(log, logging.ERROR, "offline delivery stopped", aor=aor, error=str(exc))

    async def _deliver_queue(self, aor: str) -> None:
        """The queue in store order; read again when done, for what came meanwhile."""
        while True:
            now = self._clock()
            live, gone = split_expired(self._store.messages(aor), now)
            for m in gone:
                self._expire(m, now)
            if not live:
                self._expiry.cancel(aor)
                self._usage.pop(aor, None)
                return
            for head in live:
                if head.expires_at <= self._clock():
                    continue  # the expiry timer (due now) removes it and tells the sender
                if not await self._deliver_one(aor, head):
                    return  # no device left: the next registration starts again

    async def _deliver_one(self, aor: str, head: StoredMessage) -> bool:
        """Attempts until the head is settled (True) or nothing is registered (False)."""
        attempt = 0
        while True:
            status, no_binding = None, False
            try:
                response = await self._registrar.send_to_user(aor, self._builder(head))
                status = response.status
            except NoBinding:
                no_binding = True
            except (TransactionTimeout, TransportFailure):
                status = None
            except MessageTooLarge:
                status = 513
            except MappingError as exc:
                status = exc.sip_status
            attempt += 1
            outcome = after_attempt(
                self.policy, status, no_binding=no_binding, attempt=attempt, now=self._clock()
            )
            fields = {"aor": aor, "message_id": head.message_id, "status": status}
            if isinstance(outcome, Delivered):
                self._remove(head)  # only after the 2xx
                event(log, logging.INFO, "stored message delivered", attempts=attempt, **fields)
                self.on_delivered(head)
                return True
            if isinstance(outcome, Rejected):
                self._remove(head)
                event(log, logging.INFO, "stored message rejected", **fields)
                self._error(head, sip_to_xmpp(outcome.status))
                return True
            if not isinstance(outcome, Retry):  # Wait: the device went away
                return False
            event(log, logging.INFO, "stored message retry", attempts=attempt, **fields)
            await asyncio.sleep(max(0.0, outcome.at - self._clock()))
            if not self._registrar.bindings(aor) or not self._leases.holds(OFFLINE_QUEUE):
                return False

    def _remove(self, m: StoredMessage) -> None:
        self._store.delete_message(m.message_id)
        usage = self._usage.get(m.aor)
        if usage is not None:
            self._usage[m.aor] = usage.remove(m.size)

    def _builder(self, m: StoredMessage) -> Callable[[str], SipRequest]:
        out = sm.OutboundMessage(
            request_uri=m.aor,
            from_uri=m.from_uri,
            to_uri=m.aor,
            call_id=m.call_id,
            cseq=next(self._cseq) % 2**31,
            from_tag=secrets.token_hex(6),
            content=(m.content_type, m.body),
            subject=m.subject,
            lang=m.lang,
            call_info=m.call_info,
        )
        date = formatdate(m.stored_at, usegmt=True)  # RFC 3261 §20.17: the original time

        def build(request_uri: str) -> SipRequest:
            request = sm.build_message(
                out if request_uri == out.request_uri else replace(out, request_uri=request_uri)
            )
            return request.with_headers(request.headers.add("Date", date))

        return build

    # ------------------------------------------------------------------ expiry

    def _rearm(self) -> None:
        if self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self._expiry.peek_time()
        if at is not None:
            delay = max(0.0, at - self._clock())
            self._timer = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._leases.holds(OFFLINE_QUEUE):
            return  # the owner expires; a takeover re-indexes (resync)
        now = self._clock()
        while (top := self._expiry.peek()) is not None and top[0] <= now:
            aor = top[1]
            try:
                live, gone = split_expired(self._store.messages(aor), now)
                for m in gone:
                    self._expire(m, now)
            except StoreError as exc:
                event(log, logging.ERROR, "offline expiry failed", aor=aor, error=str(exc))
                self._expiry.set(aor, now + 30.0)
                continue
            self._expiry.set(aor, min((m.expires_at for m in live), default=None))
            if not live:
                self._usage.pop(aor, None)
        self._rearm()

    def _expire(self, m: StoredMessage, now: float) -> None:
        self._remove(m)
        age = _age(max(0.0, now - m.stored_at))
        event(log, logging.INFO, "stored message expired", aor=m.aor, message_id=m.message_id)
        self._error(
            m, XmppErrorInfo.of("recipient-unavailable", text=f"expired undelivered after {age}")
        )

    def _error(self, m: StoredMessage, info: XmppErrorInfo) -> None:
        """The error stanza answering the original message (RFC 6120 §8.3.1)."""
        comp = self._links.component(m.component)
        original = comp.make_message(mto=m.recipient, mfrom=m.sender)
        original.xml.set("id", m.stanza_id)
        self._links.send(m.component, error_reply(original, info))

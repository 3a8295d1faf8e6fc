"""X2S: an XMPP user watches a SIP user (RFC 8048 §5.2, RFC 6665 §4.1, RFC 3856).

One `Subscriber` (the pure RFC 6665 machine) per (XMPP watcher, SIP presentity); this
module turns XMPP stanzas into its inputs and its actions into SIP requests, XMPP stanzas,
store writes and one scheduler entry per subscription.

* `subscribe` -> SUBSCRIBE; nothing goes to XMPP until a NOTIFY `active` (R8048-02/03);
  then `subscribed`, then one presence per tuple (R8048-04, Table 2); an empty first
  NOTIFY means unknown/closed.
* Refresh before expiry (`subscription.refresh_delay`) while the authorization holds,
  each preceded by a probe from the component domain to the watcher's bare JID (R8048-08,
  RFC 8048 §8.1). An error answer to that probe (the account is gone) ends the watcher's
  subscriptions; other answers carry no decision (the probe comes from the gateway, which
  is never in the user's roster, so the user's server answers `unsubscribed` to it).
* 403/489/603 -> `unsubscribed` (R8048-06); 423, 481 handled by the machine. Timeouts,
  5xx, DNS failures: the subscription is retried on a new dialog after an exponential,
  jittered backoff (`retry_min` doubling up to `retry_max`, at least Retry-After).
* `unsubscribe` -> SUBSCRIBE Expires: 0 in the dialog, `unavailable` + `unsubscribed` at
  once (R8048-07). `probe` with a live, authorized subscription is answered from the last
  NOTIFY; otherwise it becomes a fetch: SUBSCRIBE Expires: 0 in a new dialog (R8048-19).
  What a fetch showed available is remembered per (prober, contact) in a bounded `Memo`
  (`PROBED_LIMIT`), so that the stop tells a watcher who only got a probe answer (its
  server probed at login, the gateway holds no subscription for it) `unavailable` too.
* Every SUBSCRIBE carries the watcher's bare JID as ``Call-Info: <xmpp:...>;purpose=impp``
  (RFC 6993, RFC 7081 §4), through `SubscriberConfig.headers`: the SIP core knows no XMPP.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.bridge.presence.records import subscriber_record, write
from gateway.logs import event
from gateway.memo import Memo
from gateway.sip.dialog import MAX_FORWARDS
from gateway.sip.headers import NameAddr
from gateway.sip.message import Headers, SipRequest, make_response
from gateway.sip.subscriber import Subscriber, SubscriberConfig, SubState
from gateway.sip.subscription import (
    Action,
    AnswerNotify,
    Authorized,
    Pending,
    SendSubscribe,
    StateDocument,
    Terminated,
    new_id,
    refresh_delay,
)
from gateway.sip.uri import SipUri, parse_uri
from gateway.store.api import SubscriptionRecord
from gateway.xmpp.presence_convert import build_presence, build_subscription
from mappings.addresses import impp_call_info, jid_to_sip_target, jid_to_sip_uri, sip_uri_to_jid
from mappings.errors import Resubscribe, XmppNotice, subscription_end
from mappings.jid import Jid, parse_jid
from mappings.pidf import MEDIA_TYPE, parse_pidf
from mappings.presence import XmppPresence, pidf_to_xmpp, unknown_presence
from mappings.xmlsafe import FormatError

__all__ = ["X2s", "X2sSub", "backoff"]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.presence_x2s")

X2sKey = tuple[str, str]  # (watcher bare JID, contact bare JID)
DIRECTION = "xmpp_to_sip"  # metrics label: the subscription goes from XMPP to SIP
# Probe answers remembered for the departures (about 200 bytes each): past this many
# (prober, contact) pairs the table is emptied (Memo), and those probers miss the stop's
# `unavailable` (their roster is corrected at the next probe or re-login).
PROBED_LIMIT = 10_000
ProbeKey = tuple[str, str]  # (prober JID as it probed, contact bare JID)


def backoff(failures: int, retry_min: float, retry_max: float, rand: float) -> float:
    """Delay before retry number `failures` (>= 1): doubling from `retry_min`, capped at
    `retry_max`, with jitter in [50 %, 100 %] so that many subscriptions spread out."""
    base = min(retry_max, retry_min * 2.0 ** min(max(failures - 1, 0), 32))
    return base * (0.5 + rand / 2)


@dataclass(eq=False)
class X2sSub:
    """One XMPP user's long-lived authorization to a SIP user, and its SIP subscription."""

    watcher: Jid  # bare
    contact: Jid  # bare component JID of the SIP user
    domain: str
    sub: Subscriber
    document: bytes | None = None  # last NOTIFY body (PIDF)
    announced: set[str | None] = field(default_factory=set)  # resources shown available
    failures: int = 0
    retry_at: float | None = None
    ending: bool = False  # the XMPP user unsubscribed; gone once the SIP side ends
    indexed: tuple[str, str] | None = None
    stored: tuple[str, str] | None = None

    @property
    def key(self) -> X2sKey:
        return str(self.watcher), str(self.contact)

    def next_deadline(self) -> float | None:
        times = [t for t in (self.sub.next_deadline(), self.retry_at) if t is not None]
        return min(times, default=None)


@dataclass(eq=False)
class Fetch:
    """A one-shot SUBSCRIBE Expires: 0 answering an XMPP probe (R8048-19)."""

    prober: Jid
    contact: Jid
    domain: str
    key: tuple[str, str]  # (Call-ID, From tag)


class X2s:
    def __init__(self, ctx: PresenceContext, *, rng: random.Random | None = None) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self.sub_config = SubscriberConfig(expires=cfg.expires, timers=cfg.timers)
        self.subs: dict[X2sKey, X2sSub] = {}
        self.by_dialog: dict[tuple[str, str], X2sSub] = {}
        self.fetches: dict[tuple[str, str], Fetch] = {}
        # (prober, contact) -> (domain, resources a fetch showed available): departures
        self.probed: Memo[ProbeKey, tuple[str, frozenset[str | None]]] = Memo(PROBED_LIMIT)
        self._tasks = Tasks("presence")
        self._rng = rng or random.Random()

    # ------------------------------------------------------------ XMPP inputs

    def on_subscribe(self, watcher: Jid, contact: Jid) -> None:
        now = self.ctx.clock()
        entry = self.subs.get((str(watcher.bare), str(contact.bare)))
        if entry is not None:
            if entry.sub.authorized and entry.sub.state is SubState.ACTIVE:
                # Already granted: confirm again and repeat the state (RFC 6121 §3.1.3).
                self._stanza(entry, "subscribed")
                self._announce(entry, self._known(entry))
            elif entry.sub.state is SubState.TERMINATED:
                entry.retry_at = now
                self._reschedule(entry)
            return
        entry = self._new(watcher.bare, contact.bare)
        self.subs[entry.key] = entry
        event(log, logging.INFO, "subscription requested", watcher=str(watcher.bare),
              contact=str(contact.bare))  # fmt: skip
        self._run(entry, entry.sub.subscribe(now), now)
        self._count()

    def on_unsubscribe(self, watcher: Jid, contact: Jid) -> None:
        now = self.ctx.clock()
        entry = self.subs.get((str(watcher.bare), str(contact.bare)))
        if entry is None:
            dm = self.ctx.map_for_component(contact)
            self.ctx.send_stanza(
                dm.component_domain,
                build_subscription(
                    self.ctx.xmpp.component(dm.component_domain),
                    "unsubscribed",
                    sender=contact.bare,
                    recipient=watcher.bare,
                ),
            )
            return
        event(log, logging.INFO, "subscription cancelled", watcher=str(watcher.bare),
              contact=str(contact.bare))  # fmt: skip
        self._withdraw(entry)
        self._stanza(entry, "unsubscribed")
        entry.ending = True
        entry.retry_at = None
        actions = entry.sub.unsubscribe(now)
        if entry.sub.state is SubState.TERMINATED and not actions:
            self._drop(entry)
            return
        self._run(entry, actions, now)

    def on_probe(self, prober: Jid, contact: Jid) -> None:
        """Answer from a live authorized subscription, else fetch (R8048-19)."""
        entry = self.subs.get((str(prober.bare), str(contact.bare)))
        if entry is None or entry.sub.state is SubState.TERMINATED:
            self._fetch(prober, contact.bare)
        elif entry.sub.authorized and entry.sub.state is SubState.ACTIVE:
            for p in self._known(entry):
                self._send_presence(entry.domain, contact.with_resource(p.resource), prober, p)
        # else: being set up or pending authorization: its own NOTIFYs will answer

    def on_probe_error(self, watcher: Jid) -> None:
        """The refresh probe bounced (RFC 8048 §8.1): the account is gone; stop refreshing."""
        now = self.ctx.clock()
        for entry in [e for e in self.subs.values() if e.watcher == watcher.bare]:
            event(log, logging.INFO, "probe bounced, ending subscription", watcher=str(watcher))
            entry.ending = True
            entry.retry_at = None
            actions = entry.sub.unsubscribe(now)
            if entry.sub.state is SubState.TERMINATED and not actions:
                self._drop(entry)
            else:
                self._run(entry, actions, now)

    # ------------------------------------------------------------ SIP input

    def handle_notify(self, incoming: Any) -> bool:
        """A NOTIFY for one of our subscriptions or fetches: answered here (True); False
        when it is not ours (the caller answers 481)."""
        req: SipRequest = incoming.request
        key = (req.call_id or "", req.to_tag or "")
        now = self.ctx.clock()
        entry = self.by_dialog.get(key)
        if entry is not None:
            self._run(entry, entry.sub.receive_notify(req, now), now, incoming)
            return True
        fetch = self.fetches.get(key)
        if fetch is not None:
            self._fetch_notify(fetch, incoming)
            return True
        return False

    # ------------------------------------------------------------ timers

    def handle_fetch_timer(self, key: tuple[str, str], now: float) -> None:
        fetch = self.fetches.get(key)
        if fetch is not None:
            self._end_fetch(fetch)  # Timer N: no NOTIFY came for the fetch

    def handle_timer(self, key: X2sKey, now: float) -> None:
        entry = self.subs.get(key)
        if entry is None:
            return
        if entry.retry_at is not None and now >= entry.retry_at:
            entry.retry_at = None
            self._run(entry, entry.sub.subscribe(now), now)
            return
        self._run(entry, entry.sub.handle_timer(now), now)

    # ------------------------------------------------------------ the engine

    def _new(self, watcher: Jid, contact: Jid) -> X2sSub:
        dm = self.ctx.map_for_component(contact)
        target = parse_uri(str(jid_to_sip_target(contact, domain_map=dm)))
        local = parse_uri(str(jid_to_sip_uri(watcher, domain_map=dm)))
        sub = Subscriber(
            target,
            local=NameAddr(local),
            remote=NameAddr(target),
            contact=self.ctx.config.contact_addr,
            config=self._config_for(watcher),
        )
        return X2sSub(watcher, contact, dm.component_domain, sub)

    def _config_for(self, watcher: Jid) -> SubscriberConfig:
        """The watcher's XMPP address rides on every SUBSCRIBE (RFC 6993, RFC 7081 §4)."""
        return replace(self.sub_config, headers=(("Call-Info", impp_call_info(watcher)),))

    def _run(
        self, entry: X2sSub, actions: Iterable[Action], now: float, incoming: Any = None
    ) -> None:
        actions = list(actions)
        has_document = any(isinstance(a, StateDocument) for a in actions)
        for action in actions:
            if isinstance(action, SendSubscribe):
                self._send_subscribe(entry, action)
            elif isinstance(action, AnswerNotify):
                if incoming is not None:
                    incoming.respond(action.response)
            elif isinstance(action, Authorized):
                entry.failures = 0
                self._log_state(entry, "active")
                self._stanza(entry, "subscribed")
                if not has_document:  # R8048-04: no body means unknown or closed
                    entry.document = None
                    self._announce(entry, [unknown_presence()])
            elif isinstance(action, Pending):
                entry.failures = 0
                self._log_state(entry, "pending")
            elif isinstance(action, StateDocument):
                entry.failures = 0
                self._deliver(entry, action)
            elif isinstance(action, Terminated):
                self._terminated(entry, action, now)
        if self.subs.get(entry.key) is entry:
            self._index(entry)
            self._save(entry)
            self._reschedule(entry)

    def _send_subscribe(self, entry: X2sSub, action: SendSubscribe) -> None:
        if entry.sub.dialog is not None and action.expires > 0:
            # R8048-08 / RFC 8048 §8.1: probe the watcher before each refresh.
            self._send_probe(entry)
        self._tasks.spawn(self._subscribe_task(entry, action.request))

    async def _subscribe_task(self, entry: X2sSub, request: SipRequest) -> None:
        try:
            response = await self.ctx.send(request)
        except SendFailed as exc:
            event(log, logging.INFO, "SUBSCRIBE failed", target=str(request.uri), error=str(exc))
            response = make_response(request, exc.status)  # RFC 3261 §8.1.3.1: 408/503
        if self.subs.get(entry.key) is not entry:
            return
        now = self.ctx.clock()
        self._run(entry, entry.sub.receive_response(response, now), now)

    @staticmethod
    def _log_state(entry: X2sSub, state: str) -> None:
        dialog = entry.sub.dialog
        event(
            log,
            logging.INFO,
            "subscription " + state,
            watcher=str(entry.watcher),
            contact=str(entry.contact),
            call_id=None if dialog is None else dialog.id.call_id,
        )

    def _terminated(self, entry: X2sSub, ended: Terminated, now: float) -> None:
        event(
            log,
            logging.INFO,
            "subscription terminated",
            watcher=str(entry.watcher),
            contact=str(entry.contact),
            cause=ended.cause.value,
            reason=ended.reason,
            status=ended.status,
        )
        if entry.ending:
            self._drop(entry)
            return
        end = subscription_end(ended)  # the gateway's policy for these facts (DIGEST §7.3)
        if end.notice is XmppNotice.UNSUBSCRIBED or end.permanent:
            self._withdraw(entry)
            self._stanza(entry, "unsubscribed")  # R8048-06
            self._drop(entry)
            return
        if end.notice is XmppNotice.UNAVAILABLE:
            self._withdraw(entry)
        entry.failures += 1
        immediate = end.resubscribe in (Resubscribe.NOW, Resubscribe.IF_STILL_WANTED)
        if immediate and entry.failures == 1:
            delay = 0.0
        else:
            cfg = self.ctx.config
            delay = backoff(entry.failures, cfg.retry_min, cfg.retry_max, self._rng.random())
            delay = max(delay, float(end.retry_after or 0))
        entry.retry_at = now + delay

    # ------------------------------------------------------------ XMPP output

    def _stanza(self, entry: X2sSub, kind: Any) -> None:
        comp = self.ctx.xmpp.component(entry.domain)
        stanza = build_subscription(comp, kind, sender=entry.contact, recipient=entry.watcher)
        self.ctx.send_stanza(entry.domain, stanza)

    def _send_probe(self, entry: X2sSub) -> None:
        comp = self.ctx.xmpp.component(entry.domain)
        domain = Jid(None, entry.domain)
        stanza = build_subscription(comp, "probe", sender=domain, recipient=entry.watcher)
        self.ctx.send_stanza(entry.domain, stanza)

    def _send_presence(self, domain: str, sender: Jid, recipient: Jid, p: XmppPresence) -> None:
        comp = self.ctx.xmpp.component(domain)
        stanza = build_presence(comp, sender=sender, recipient=recipient, presence=p)
        self.ctx.send_stanza(domain, stanza)

    def _known(self, entry: X2sSub) -> list[XmppPresence]:
        if entry.document is None:
            return [unknown_presence()]
        try:
            return pidf_to_xmpp(parse_pidf(entry.document))
        except FormatError:
            return [unknown_presence()]

    def _deliver(self, entry: X2sSub, doc: StateDocument) -> None:
        if doc.content_type is not None and doc.content_type.lower() != MEDIA_TYPE:
            return  # we asked for PIDF only (RFC 3856 §6.3)
        try:
            presences = pidf_to_xmpp(parse_pidf(doc.body))
        except FormatError as exc:
            event(log, logging.INFO, "NOTIFY body is not PIDF", error=str(exc))
            return
        entry.document = doc.body
        self._announce(entry, presences)
        self.ctx.count_notification("sip_to_xmpp")

    def _announce(self, entry: X2sSub, presences: list[XmppPresence]) -> None:
        """One stanza per tuple (RFC 8048 §6.3); a resource that left the document (always
        complete state, RFC 3856 §6.6) is made unavailable."""
        listed = {p.resource for p in presences}
        for gone in sorted(entry.announced - listed, key=str):
            self._send_presence(
                entry.domain,
                entry.contact.with_resource(gone),
                entry.watcher,
                XmppPresence(resource=gone, available=False),
            )
        for p in presences:
            sender = entry.contact.with_resource(p.resource)
            self._send_presence(entry.domain, sender, entry.watcher, p)
        entry.announced = {p.resource for p in presences if p.available}

    def _withdraw(self, entry: X2sSub) -> None:
        gone = entry.announced or {None}
        for resource in sorted(gone, key=str):
            self._send_presence(
                entry.domain,
                entry.contact.with_resource(resource),
                entry.watcher,
                XmppPresence(resource=resource, available=False),
            )
        entry.announced = set()

    # ------------------------------------------------------------ departures and returns

    def departures(self) -> Iterator[tuple[str, Jid, Jid]]:
        """(domain, contact/resource, watcher) for every resource shown available: what
        gets `unavailable` when the gateway stops (docs/presence.md, "Restart and drain")."""
        for entry in self.subs.values():
            for resource in sorted(entry.announced, key=str):
                yield entry.domain, entry.contact.with_resource(resource), entry.watcher
        for (prober, contact), (domain, shown) in self.probed.items():
            for resource in sorted(shown, key=str):
                yield domain, parse_jid(contact).with_resource(resource), parse_jid(prober)

    def reannounce(self, domain: str) -> None:
        """The link of `domain` came up: show again what live, authorized subscriptions
        know to be available (the stop sent `unavailable` for it)."""
        for entry in list(self.subs.values()):
            if entry.domain != domain or not entry.sub.authorized:
                continue
            if entry.sub.state is not SubState.ACTIVE:
                continue  # being set up again: its NOTIFY will tell
            known = self._known(entry)
            if any(p.available for p in known):
                self._announce(entry, known)

    # ------------------------------------------------------------ fetch (R8048-19)

    def _fetch(self, prober: Jid, contact: Jid) -> None:
        if any(f.prober == prober and f.contact == contact for f in self.fetches.values()):
            return  # one in flight already
        dm = self.ctx.map_for_component(contact)
        target = parse_uri(str(jid_to_sip_target(contact, domain_map=dm)))
        local = NameAddr(parse_uri(str(jid_to_sip_uri(prober.bare, domain_map=dm))))
        call_id, tag = new_id(), new_id()
        headers = [
            ("Max-Forwards", str(MAX_FORWARDS)),
            ("From", str(local.with_tag(tag))),
            ("To", str(NameAddr(target))),
            ("Call-ID", call_id),
            ("CSeq", "1 SUBSCRIBE"),
            ("Contact", str(self.ctx.config.contact_addr)),
            ("Event", "presence"),
            ("Accept", MEDIA_TYPE),
            ("Expires", "0"),
            ("Call-Info", impp_call_info(prober)),
        ]
        request = SipRequest("SUBSCRIBE", target, Headers(headers))
        fetch = Fetch(prober, contact, dm.component_domain, (call_id, tag))
        self.fetches[fetch.key] = fetch
        deadline = self.ctx.clock() + self.ctx.config.timer_n
        self.ctx.scheduler.set(("x2s-fetch", fetch.key), deadline)
        self._tasks.spawn(self._fetch_task(fetch, request))

    async def _fetch_task(self, fetch: Fetch, request: SipRequest) -> None:
        try:
            response = await self.ctx.send(request)
        except SendFailed:
            response = None
        if response is None or not response.is_success:
            self._end_fetch(fetch)

    def _fetch_notify(self, fetch: Fetch, incoming: Any) -> None:
        req: SipRequest = incoming.request
        state = req.subscription_state
        if req.event is None or state is None:
            incoming.respond(make_response(req, 400))
            return
        incoming.respond(make_response(req, 200))
        ctype = req.content_type
        if req.body and (ctype is None or ctype.mime == MEDIA_TYPE) and state.state != "pending":
            try:
                presences = pidf_to_xmpp(parse_pidf(req.body))
            except FormatError:
                presences = []
            for p in presences:
                sender = fetch.contact.with_resource(p.resource)
                self._send_presence(fetch.domain, sender, fetch.prober, p)
            self._remember_probe(fetch, presences)
            self.ctx.count_notification("sip_to_xmpp")
        if state.state == "terminated":
            self._end_fetch(fetch)

    def _remember_probe(self, fetch: Fetch, presences: list[XmppPresence]) -> None:
        """Track what this answer showed available (complete state, RFC 3856 §6.6)."""
        key = (str(fetch.prober), str(fetch.contact.bare))
        shown = frozenset(p.resource for p in presences if p.available)
        if shown or key in self.probed:
            self.probed.put(key, (fetch.domain, shown))

    def _end_fetch(self, fetch: Fetch) -> None:
        self.fetches.pop(fetch.key, None)
        self.ctx.scheduler.cancel(("x2s-fetch", fetch.key))

    # ------------------------------------------------------------ tables and store

    def _index(self, entry: X2sSub) -> None:
        key = entry.sub.key
        if entry.indexed != key:
            if entry.indexed is not None:
                self.by_dialog.pop(entry.indexed, None)
            self.by_dialog[key] = entry
            entry.indexed = key

    def _reschedule(self, entry: X2sSub) -> None:
        self.ctx.scheduler.set(("x2s", entry.key), entry.next_deadline())

    def _drop(self, entry: X2sSub) -> None:
        if self.subs.get(entry.key) is entry:
            del self.subs[entry.key]
        if entry.indexed is not None:
            self.by_dialog.pop(entry.indexed, None)
        self.ctx.scheduler.cancel(("x2s", entry.key))
        if entry.stored is not None:
            write(log, self.ctx.store.delete_subscription, *entry.stored)
            entry.stored = None
        self._count()

    def _save(self, entry: X2sSub) -> None:
        record = subscriber_record(entry.sub, watcher=entry.watcher, document=entry.document)
        if entry.stored is not None and entry.stored != record.key:
            write(log, self.ctx.store.delete_subscription, *entry.stored)
        write(log, self.ctx.store.put_subscription, record)
        entry.stored = record.key

    def _count(self) -> None:
        self.ctx.set_subscriptions(DIRECTION, len(self.subs))

    # ------------------------------------------------------------ restart

    def restore(self, records: Iterable[SubscriptionRecord], now: float) -> int:
        """Rebuild subscriptions from the store: live dialogs continue (refreshes keep
        working in the same dialog); the others are re-subscribed on a new dialog."""
        n = 0
        for rec in records:
            try:
                entry = self._from_record(rec, now)
            except (ValueError, KeyError, FormatError) as exc:
                event(log, logging.WARNING, "unusable subscription record", error=str(exc))
                write(log, self.ctx.store.delete_subscription, *rec.key)
                continue
            entry.stored = rec.key
            self.subs[entry.key] = entry
            self._index(entry)
            self._reschedule(entry)
            n += 1
        self._count()
        return n

    def _from_record(self, rec: SubscriptionRecord, now: float) -> X2sSub:
        watcher = parse_jid(rec.watcher).bare
        dm = self.ctx.map_for_sip_user(_sip_uri(rec.target))
        contact = sip_uri_to_jid(rec.target, domain_map=dm).bare
        local = NameAddr(parse_uri(str(jid_to_sip_uri(watcher, domain_map=dm))))
        remote = NameAddr(parse_uri(rec.target))
        contact_addr = self.ctx.config.contact_addr
        live = rec.state in ("pending", "active") and rec.remote_tag and rec.remote_target
        dialog = None
        if live:
            dialog = {
                "call_id": rec.call_id,
                "local_tag": rec.local_tag,
                "remote_tag": rec.remote_tag,
                "local": str(local),
                "remote": str(remote),
                "remote_target": rec.remote_target,
                "route_set": list(rec.route_set),
                "local_cseq": rec.local_cseq or None,
                "remote_cseq": rec.remote_cseq,
                "secure": False,
                "local_target": str(contact_addr),
            }
        expires_at = rec.expires_at if live else None
        refresh_at = None
        if expires_at is not None and expires_at > now:
            refresh_at = now + refresh_delay(expires_at - now, self.ctx.config.timer_n)
        sub = Subscriber.from_record(
            {
                "state": rec.state if live else SubState.TERMINATED.value,
                "target": rec.target,
                "local": str(local),
                "remote": str(remote),
                "contact": str(contact_addr),
                "call_id": rec.call_id,
                "local_tag": rec.local_tag,
                "cseq": 1 if live else rec.local_cseq,
                "dialog": dialog,
                "requested": self.ctx.config.expires,
                "expires_at": expires_at,
                "refresh_at": refresh_at,
                "timer_n_at": None,
                "authorized": rec.xmpp_authorization in ("to", "both"),
                "unsubscribing": False,
            },
            config=self._config_for(watcher),
        )
        entry = X2sSub(watcher, contact, dm.component_domain, sub, document=rec.last_document)
        if rec.last_document is not None:
            entry.announced = {p.resource for p in self._known(entry) if p.available}
        if not live:
            entry.retry_at = now  # re-subscribe on a new dialog
        return entry


def _sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise ValueError(f"not a SIP URI: {text}")
    return uri

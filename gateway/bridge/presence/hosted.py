"""XMPP users watching SIP users hosted by our registrar: the gateway is the presence agent.

No SUBSCRIBE goes out. The registrar knows the state (`Registrar.presence_of`: composed
PUBLISH state, or registered devices as available with
`registrar.available_without_publish`) and says when it changes
(`Registrar.on_presence_change`). What the gateway keeps here is the authorization:
one `HostedWatcher` per (hosted AOR, XMPP watcher), with the RFC 3857 §4.7.1 state
(pending / active; terminated ones are forgotten once reported).

Authorization is the hosted SIP user's (docs/presence.md, "Hosted users"):

* the request is held `pending` and shown in `presence.winfo` NOTIFYs (RFC 3857/3858,
  gateway/bridge/presence/winfo.py), with the watcher's mapped SIP URI;
* the hosted user approves by subscribing to that URI (RFC 3856 SUBSCRIBE, what a SIP
  client does when it adds the contact), or with a MESSAGE `/allow` to it; it rejects
  with a MESSAGE `/deny` (both only while the request is pending or active);
* a request from someone the hosted user already watches is approved at once (the SIP
  side of RFC 6121 §3.4 pre-approval);
* with `AUTO_APPROVE_HOSTED` (module default False) every request is approved;
* first of all, when the hosted user has a pres-rules document (RFC 5025, served over
  XCAP, docs/xcap.md), the injected `rules(aor, watcher_sip_uri)` decides: `allow`
  approves, `block` answers `unsubscribed`, `polite-block` drops the request without an
  answer (the watcher's request stays pending, as if unanswered), `confirm` (and None:
  no document) goes on as above.

Approved: `subscribed`, then one presence per tuple (RFC 8048 Table 2) now and at every
change. Rejected or withdrawn by the hosted user: `unavailable` for what was shown, then
`unsubscribed` (R8048-06). A probe from an approved watcher is answered from
`presence_of`; a pending one gets nothing yet; anyone else `unsubscribed` (RFC 6121
§4.3.2). The watcher's `unsubscribe` ends it (`unsubscribed`, as X2S does).

Each watcher is one `SubscriptionRecord` (direction x2s, Call-ID `hosted:<watcher>`,
local tag the AOR, no dialog, expiry `FOREVER`), so approvals survive a restart.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.bridge.presence.context import PresenceContext
from gateway.bridge.presence.records import (
    FOREVER,
    hosted_key,
    hosted_record,
    is_hosted_record,
    write,
)
from gateway.logs import event
from gateway.registrar.bindings import canonical_aor
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.uri import SipUri, parse_uri
from gateway.store.api import SubscriptionRecord
from gateway.xmpp.presence_convert import build_presence, build_subscription
from mappings.addresses import AddressError, jid_to_sip_target, jid_to_sip_uri, sip_uri_to_jid
from mappings.jid import Jid, parse_jid
from mappings.pidf import PresenceDocument
from mappings.presence import XmppPresence, pidf_to_xmpp
from mappings.winfo import Watcher, WatcherEvent

__all__ = [
    "AUTO_APPROVE_HOSTED",
    "FOREVER",
    "Hosted",
    "HostedRegistrar",
    "HostedWatcher",
    "is_hosted_record",
    "parse_command",
]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.presence_hosted")

# The default of [presence] auto_approve_hosted (gateway/config.py): approve every XMPP
# request to watch a hosted SIP user without asking them. Off: the hosted user decides
# (winfo + SUBSCRIBE back, or /allow and /deny).
AUTO_APPROVE_HOSTED = False
# A MESSAGE from the hosted user to a pending watcher whose whole text is one of these.
_COMMAND = re.compile(r"\s*/(allow|deny)\s*", re.IGNORECASE)

Status = Literal["pending", "active"]


class HostedRegistrar(Protocol):
    """The slice of gateway.registrar.service.Registrar used here."""

    def is_hosted(self, domain: str) -> bool: ...

    def presence_of(self, aor: str) -> PresenceDocument | None: ...

    def on_presence_change(self, callback: Callable[[str], None]) -> None: ...


@dataclass(eq=False)
class HostedWatcher:
    watcher: Jid  # bare XMPP JID of the watcher
    contact: Jid  # the hosted user's component JID (bare)
    aor: str  # canonical sip:user@host
    domain: str  # component domain
    sip_uri: str  # the watcher as the hosted user addresses it (SUBSCRIBE / MESSAGE)
    status: Status
    event: WatcherEvent
    announced: set[str | None] = field(default_factory=set)

    @property
    def id(self) -> str:
        """A token naming this watcher in winfo documents (RFC 3858 §3), stable across
        restarts."""
        digest = hashlib.sha256(f"{self.aor} {self.watcher}".encode()).hexdigest()
        return f"x{digest[:20]}"

    def winfo(self, status: str | None = None, ev: WatcherEvent | None = None) -> Watcher:
        return Watcher(
            self.id,
            self.sip_uri,
            status or self.status,  # type: ignore[arg-type]
            ev or self.event,
            display_name=str(self.watcher),
        )


def parse_command(body: bytes, content_type: str | None) -> str | None:
    """`allow` / `deny` for a text/plain MESSAGE body that is exactly `/allow` or `/deny`."""
    if content_type is not None and content_type.lower() != "text/plain":
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    match = _COMMAND.fullmatch(text)
    return None if match is None else match.group(1).lower()


class Hosted:
    """The presence agent for hosted SIP users, answering XMPP watchers."""

    def __init__(
        self,
        ctx: PresenceContext,
        registrar: HostedRegistrar,
        *,
        auto_approve: bool = AUTO_APPROVE_HOSTED,
        watching: Callable[[Jid, Jid], bool] = lambda _sip, _xmpp: False,
        activity: Callable[[str, PresenceDocument | None], list[XmppPresence]] | None = None,
        rules: Callable[[str, str], str | None] = lambda _aor, _watcher: None,
    ) -> None:
        self.ctx = ctx
        # Call activity (docs/call-activity.md): the presence shown, made from the base
        # presence and the user's calls (activity.CallActivity.presences).
        self.activity = activity
        self.registrar = registrar
        self.auto_approve = auto_approve
        self.watching = watching  # (hosted user's JID, XMPP user) -> has an S2X watch
        self.rules = rules  # (AOR, watcher's SIP URI) -> RFC 5025 sub-handling or None
        self.by_aor: dict[str, dict[str, HostedWatcher]] = {}
        self.listeners: list[Callable[[str, Watcher], None]] = []  # winfo: (aor, change)
        registrar.on_presence_change(self.on_change)

    # ------------------------------------------------------------ addresses

    def aor_of(self, contact: Jid) -> str | None:
        """The hosted AOR a component JID names, None when its SIP user is not ours."""
        try:
            dm = self.ctx.map_for_component(contact)
            uri = parse_uri(str(jid_to_sip_target(contact.bare, domain_map=dm)))
        except (AddressError, RemoteProtocolError):
            return None
        if not isinstance(uri, SipUri) or not self.registrar.is_hosted(uri.host_bare):
            return None
        return canonical_aor(uri)

    def watchers(self, aor: str) -> list[HostedWatcher]:
        return list(self.by_aor.get(aor, {}).values())

    def pending(self) -> list[HostedWatcher]:
        """Every request waiting for its hosted user's `allow` / `deny` (the console)."""
        return [e for ws in self.by_aor.values() for e in ws.values() if e.status == "pending"]

    def find(self, aor: str, sip_uri: str) -> HostedWatcher | None:
        """The watcher of `aor` that the hosted user names by its SIP URI."""
        wanted = _aor_text(sip_uri)
        if wanted is None:
            return None
        for entry in self.by_aor.get(aor, {}).values():
            if _aor_text(entry.sip_uri) == wanted:
                return entry
        return None

    # ------------------------------------------------------------ XMPP inputs

    def on_subscribe(self, watcher: Jid, contact: Jid, aor: str) -> None:
        entry = self.by_aor.get(aor, {}).get(str(watcher.bare))
        if entry is not None:
            if entry.status == "active":  # RFC 6121 §3.1.3: confirm again, repeat state
                self._stanza(entry, "subscribed")
                self._announce(entry, entry.watcher)
            return
        dm = self.ctx.map_for_component(contact)
        entry = HostedWatcher(
            watcher.bare,
            contact.bare,
            aor,
            dm.component_domain,
            str(jid_to_sip_uri(watcher.bare, domain_map=dm)),
            "pending",
            "subscribe",
        )
        verdict = self.rules(aor, entry.sip_uri)
        event(log, logging.INFO, "hosted watcher asks", aor=aor, watcher=str(entry.watcher))
        if verdict in ("block", "polite-block"):  # RFC 5025 §3.2.1; nothing is kept
            if verdict == "block":
                self._send(contact, watcher.bare, "unsubscribed")
            return
        self.by_aor.setdefault(aor, {})[str(entry.watcher)] = entry
        if verdict == "allow" or self.auto_approve or self.watching(contact.bare, watcher.bare):
            self._approve(entry)
        else:
            self._save(entry)
            self._report(entry)

    def on_unsubscribe(self, watcher: Jid, contact: Jid, aor: str) -> None:
        entry = self.by_aor.get(aor, {}).pop(str(watcher.bare), None)
        if entry is None:
            self._send(contact, watcher.bare, "unsubscribed")
            return
        if entry.status == "active":
            self._withdraw(entry)
        self._stanza(entry, "unsubscribed")
        self._forget(entry, "timeout")  # RFC 3857 §4.7.1: the subscription ended

    def on_probe(self, prober: Jid, contact: Jid, aor: str) -> None:
        entry = self.by_aor.get(aor, {}).get(str(prober.bare))
        if entry is None:
            self._send(contact, prober, "unsubscribed")  # RFC 6121 §4.3.2
        elif entry.status == "active":
            self._announce(entry, prober, remember=False)
        # pending: nothing until the hosted user decides

    # ------------------------------------------------------------ the hosted user decides

    def on_sip_watch(self, sip_user: Jid, xmpp_user: Jid) -> None:
        """The hosted user subscribed to `xmpp_user`'s presence: approval (docs)."""
        aor = self.aor_of(sip_user)
        if aor is None:
            return
        entry = self.by_aor.get(aor, {}).get(str(xmpp_user.bare))
        if entry is not None and entry.status == "pending":
            self._approve(entry)

    def decide(self, aor: str, sip_uri: str, verdict: str) -> bool:
        """`allow` / `deny` from the hosted user for the watcher it names; False when
        there is no such watcher."""
        entry = self.find(aor, sip_uri)
        if entry is None:
            return False
        if verdict == "allow":
            if entry.status == "pending":
                self._approve(entry)
            return True
        self.by_aor[aor].pop(str(entry.watcher), None)
        if entry.status == "active":
            self._withdraw(entry)
        self._stanza(entry, "unsubscribed")  # R8048-06
        self._forget(entry, "rejected")
        return True

    def message_command(
        self, deliver: Callable[[Any, str | None], Awaitable[None]]
    ) -> Callable[[Any, str | None], Awaitable[None]]:
        """Wrap the pager's MESSAGE delivery: an authorized MESSAGE from a hosted user to
        one of their watchers whose text is `/allow` or `/deny` decides that watcher's
        request (answered 200, not delivered); anything else is delivered as usual."""

        async def handle(incoming: Any, resource: str | None = None) -> None:
            req = incoming.request
            ctype = req.content_type
            verdict = parse_command(req.body, None if ctype is None else ctype.mime)
            sender = None if req.from_ is None else canonical_aor(req.from_.uri)
            known = verdict is not None and sender is not None and sender in self.by_aor
            if known and self.decide(sender or "", str(req.uri), verdict or ""):
                incoming.reply(200)
                return
            await deliver(incoming, resource)

        return handle

    # ------------------------------------------------------------ registrar input

    def on_change(self, aor: str) -> None:
        for entry in self.watchers(aor):
            if entry.status == "active":
                self._announce(entry, entry.watcher)

    # ------------------------------------------------------------ departures and returns

    def departures(self) -> Iterator[tuple[str, Jid, Jid]]:
        """(domain, contact/resource, watcher) for every resource shown available."""
        for entries in self.by_aor.values():
            for entry in entries.values():
                for resource in sorted(entry.announced, key=str):
                    yield entry.domain, entry.contact.with_resource(resource), entry.watcher

    def reannounce(self, domain: str) -> None:
        """The link of `domain` came up: approved watchers get the hosted users' state now
        (bindings and publications restored from the store), unavailable included, so that
        a roster left "online" by a crash (no departure sent) is corrected too."""
        for entries in list(self.by_aor.values()):
            for entry in list(entries.values()):
                if entry.domain == domain and entry.status == "active":
                    self._announce(entry, entry.watcher)

    # ------------------------------------------------------------ the engine

    def _approve(self, entry: HostedWatcher) -> None:
        entry.status, entry.event = "active", "approved"
        event(
            log, logging.INFO, "hosted watcher approved", aor=entry.aor, watcher=str(entry.watcher)
        )
        self._stanza(entry, "subscribed")
        self._announce(entry, entry.watcher)
        self._save(entry)
        self._report(entry)

    def _forget(self, entry: HostedWatcher, ev: WatcherEvent) -> None:
        if not self.by_aor.get(entry.aor):
            self.by_aor.pop(entry.aor, None)
        write(log, self.ctx.store.delete_subscription, *hosted_key(entry.watcher, entry.aor))
        fields = {"aor": entry.aor, "watcher": str(entry.watcher), "reason": ev}
        event(log, logging.INFO, "hosted watcher ended", **fields)
        change = entry.winfo("terminated", ev)
        for listener in self.listeners:
            listener(entry.aor, change)
        self._count()

    def _report(self, entry: HostedWatcher) -> None:
        change = entry.winfo()
        for listener in self.listeners:
            listener(entry.aor, change)
        self._count()

    def _presences(self, aor: str) -> list[XmppPresence]:
        doc = self.registrar.presence_of(aor)
        if self.activity is not None:
            return self.activity(aor, doc)
        if doc is None:
            return [XmppPresence(available=False)]
        presences = pidf_to_xmpp(doc)
        return presences or [XmppPresence(available=False)]

    def _announce(self, entry: HostedWatcher, to: Jid, *, remember: bool = True) -> None:
        """One stanza per tuple; resources no longer listed become unavailable."""
        presences = self._presences(entry.aor)
        listed = {p.resource for p in presences}
        if remember:
            for gone in sorted(entry.announced - listed, key=str):
                self._presence(entry, to, XmppPresence(resource=gone, available=False))
        for p in presences:
            self._presence(entry, to, p)
        if remember:
            entry.announced = {p.resource for p in presences if p.available}
        self.ctx.count_notification("sip_to_xmpp")

    def _withdraw(self, entry: HostedWatcher) -> None:
        for resource in sorted(entry.announced or {None}, key=str):
            self._presence(entry, entry.watcher, XmppPresence(resource=resource, available=False))
        entry.announced = set()

    def _presence(self, entry: HostedWatcher, to: Jid, p: XmppPresence) -> None:
        comp = self.ctx.xmpp.component(entry.domain)
        sender = entry.contact.with_resource(p.resource)
        stanza = build_presence(comp, sender=sender, recipient=to, presence=p)
        self.ctx.send_stanza(entry.domain, stanza)

    def _stanza(self, entry: HostedWatcher, kind: Any) -> None:
        self._send(entry.contact, entry.watcher, kind)

    def _send(self, contact: Jid, to: Jid, kind: Any) -> None:
        domain = self.ctx.map_for_component(contact).component_domain
        comp = self.ctx.xmpp.component(domain)
        stanza = build_subscription(comp, kind, sender=contact.bare, recipient=to)
        self.ctx.send_stanza(domain, stanza)

    # ------------------------------------------------------------ store

    def _save(self, entry: HostedWatcher) -> None:
        write(
            log,
            self.ctx.store.put_subscription,
            hosted_record(entry.watcher, entry.aor, entry.status),
        )

    def _count(self) -> None:
        n = sum(len(w) for w in self.by_aor.values())
        self.ctx.set_subscriptions("xmpp_to_hosted", n)

    def restore(self, records: Iterable[SubscriptionRecord]) -> int:
        """Rebuild the watchers; nothing is sent (approved watchers get presence at the
        next change, or when their server probes)."""
        n = 0
        for rec in records:
            try:
                entry = self._from_record(rec)
            except (ValueError, AddressError) as exc:
                event(log, logging.WARNING, "unusable hosted watcher record", error=str(exc))
                write(log, self.ctx.store.delete_subscription, *rec.key)
                continue
            self.by_aor.setdefault(entry.aor, {})[str(entry.watcher)] = entry
            n += 1
        self._count()
        return n

    def _from_record(self, rec: SubscriptionRecord) -> HostedWatcher:
        watcher = parse_jid(rec.watcher).bare
        uri = parse_uri(rec.target)
        aor = canonical_aor(uri)
        if aor is None or not isinstance(uri, SipUri):
            raise ValueError(f"bad hosted AOR {rec.target!r}")
        dm = self.ctx.map_for_sip_user(uri)
        contact = sip_uri_to_jid(aor, domain_map=dm).bare
        active = rec.state == "active"
        return HostedWatcher(
            watcher,
            contact,
            aor,
            dm.component_domain,
            str(jid_to_sip_uri(watcher, domain_map=dm)),
            "active" if active else "pending",
            "approved" if active else "subscribe",
        )


def _aor_text(uri: str) -> str | None:
    try:
        return canonical_aor(parse_uri(uri))
    except RemoteProtocolError:
        return None

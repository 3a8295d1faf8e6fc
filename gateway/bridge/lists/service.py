"""The resource list server (RFC 4662, RFC 5367): glue between list subscriptions, the
members' back-end subscriptions and the presence service.

`ListServer` is a `PresenceExtension` (gateway/bridge/presence/service.py): the presence
service hands it the SUBSCRIBEs it `owns` (a `Require: recipient-list-subscribe` request,
one to a URI its `ListSource` knows, one inside a list dialog), its store records at
restore, and runs its timers (`rls`, `rls-throttle`, `rls-flush`) on the one scheduler.

One `ListSub` per list dialog: the pure RFC 6665 `Notifier`, the RLMI `ListView` and one
back-end per member, chosen by what the member URI is (docs/lists.md):

* an XMPP user: the presence service's S2X watch for (owner's JID, contact), followed
  without a dialog (`S2x.follow`): `subscribe` from the owner's JID, approvals as for a
  single SUBSCRIBE (docs/presence.md); `pending` until the contact approves,
  `terminated;reason=rejected` when it refuses;
* a user hosted by our registrar: its state (`Registrar.presence_of`), followed through
  `Registrar.on_presence_change`; always `active`;
* anything else: listed without an instance (RFC 4662 §4.5: state not known).

NOTIFYs: full state answering each SUBSCRIBE, partial state (the changed members) for
changes, at most one per `notify_interval` (rate.py); `Require: eventlist` on the 200 and
every NOTIFY (RFC 4662 §4.1). Expiry, unsubscribe and removal tear the back-ends down.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gateway.bridge.lists.policy import (
    ListRequestError,
    check_in_dialog,
    is_request_contained,
    linphone_dialect,
    read_request_list,
    require_eventlist,
)
from gateway.bridge.lists.rate import due as rate_due
from gateway.bridge.lists.rate import max_rate_of, notify_interval, reflected_max_rate
from gateway.bridge.lists.records import (
    LIST_RECORD_TYPE,
    ListData,
    is_list_record,
    list_record,
    read_list_data,
)
from gateway.bridge.lists.sipmembers import SipFollow, SipMembers
from gateway.bridge.lists.source import ListSource, RequestLists, SourceChain
from gateway.bridge.lists.view import UNKNOWN, ListView, MemberState
from gateway.bridge.presence.context import PresenceContext, SendFailed, Tasks
from gateway.bridge.presence.hosted import HostedRegistrar
from gateway.bridge.presence.notifying import Authorize, check_initial, identify
from gateway.bridge.presence.records import restore_notifier, write
from gateway.bridge.presence.s2x import S2x, Watch
from gateway.config import ListsSection
from gateway.logs import event
from gateway.registrar.bindings import canonical_aor
from gateway.sip.dialog import Dialog, DialogId
from gateway.sip.headers import parse_name_addr
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
from mappings.addresses import AddressError, DomainMap, sip_target_to_jid, sip_uri_to_jid
from mappings.errors import MappingError
from mappings.jid import Jid
from mappings.pidf import build_pidf
from mappings.presence import xmpp_to_pidf
from mappings.resourcelists import Entry, ListLimits
from mappings.rlmi import MULTIPART_RELATED

__all__ = [
    "LIST_RECORD_TYPE",
    "ListServer",
    "ListSub",
    "ListsPolicy",
    "is_list_record",
    "lists_policy",
]

log = logging.getLogger("gateway.bridge.lists")

FLUSH_DELAY = 1.0  # NOTIFY CSeq and RLMI version are written at most this late


@dataclass(frozen=True)
class ListsPolicy:
    """[lists] (docs/configuration.md)."""

    max_entries: int = 1000  # members of one list, after expansion (413)
    max_depth: int = 8  # nested lists plus references (403)
    max_bytes: int = 256 * 1024  # a request-contained list body (413)
    max_per_user: int = 8  # concurrent list subscriptions of one user (403)
    min_interval: float = 5.0  # least seconds between two NOTIFYs of a list (RFC 4662 §4.8)
    linphone_quirks: bool = True  # liblinphone's reading of list NOTIFYs (policy.py)
    package: PackageConfig = field(
        default_factory=lambda: PackageConfig(content_types=(MULTIPART_RELATED,))
    )

    @property
    def limits(self) -> ListLimits:
        return ListLimits(self.max_bytes, self.max_entries, self.max_depth)


def lists_policy(section: ListsSection) -> ListsPolicy:
    """The policy from [lists] (gateway/config.py)."""
    return ListsPolicy(
        max_entries=section.max_entries,
        max_depth=section.max_depth,
        max_bytes=section.max_bytes,
        max_per_user=section.max_per_user,
        min_interval=section.min_interval,
        linphone_quirks=section.linphone_quirks,
    )


@dataclass(eq=False)
class Member:
    uri: str
    kind: str  # "xmpp", "hosted", "sip", "other"
    watch: Watch | None = None
    follow: SipFollow | None = None  # sip
    on_sip: Callable[[SipFollow], None] | None = None
    listener: Callable[[Watch, str | None], None] | None = None
    aor: str | None = None  # hosted
    ended: str | None = None  # xmpp: the reason the authorization ended


@dataclass(eq=False)
class ListSub:
    owner: str  # canonical AOR of the subscriber
    uri: str  # the list URI (created for a request-contained list)
    contained: bool
    view: ListView
    notifier: Notifier
    watcher: Jid | None
    dm: DomainMap | None
    members: dict[str, Member] = field(default_factory=dict)
    hosted: dict[str, str] = field(default_factory=dict)  # AOR -> member URI
    ended: bool = False  # the final NOTIFY went out: back-ends torn down
    linphone: bool = False  # liblinphone's dialect (policy.linphone_dialect)
    interval: float = 5.0
    max_rate: str | None = None  # reflected in Subscription-State (RFC 6446 §5.2)
    last_notify: float = float("-inf")

    @property
    def did(self) -> DialogId:
        return self.notifier.dialog.id


def _list_key(uri: str) -> str:
    """Lists are named by AOR-like URIs: parameters and case of the host do not count."""
    try:
        parsed = parse_uri(uri)
    except ValueError:
        return uri
    return canonical_aor(parsed) or uri


class ListServer:
    """The RLS: list dialogs on the presence service's context, scheduler and S2X watches."""

    def __init__(
        self,
        ctx: PresenceContext,
        s2x: S2x,
        *,
        policy: ListsPolicy | None = None,
        source: ListSource | None = None,
        list_owner: Callable[[str], str | None] = lambda _uri: None,
        registrar: HostedRegistrar | None = None,
        authorize: Authorize | None = None,
    ) -> None:
        self.ctx = ctx
        # Whose list a source's list URI is: only its owner may subscribe to it (RFC 4662
        # §4.4 leaves the policy to the RLS; a list reveals its members' presence).
        self.list_owner = list_owner
        self.s2x = s2x
        self.policy = policy or ListsPolicy()
        self.contained = RequestLists()
        self.source = SourceChain(self.contained, *(() if source is None else (source,)))
        self.source.on_change(self.list_changed)
        self.registrar = registrar
        self.authorize = authorize
        self.by_dialog: dict[DialogId, ListSub] = {}
        self.by_owner: dict[str, set[DialogId]] = {}
        self.by_list: dict[str, set[DialogId]] = {}
        self.by_hosted: dict[str, set[DialogId]] = {}
        self._sending: dict[DialogId, deque[SipRequest]] = {}
        self._unsaved: set[DialogId] = set()
        self._tasks = Tasks("lists")
        self._stopped = False
        self.sip = SipMembers(ctx)
        host = parse_uri(ctx.config.contact)
        self.domain = host.host if isinstance(host, SipUri) else "rls.invalid"
        if registrar is not None:
            registrar.on_presence_change(self.hosted_changed)

    def timers(self) -> dict[str, Callable[[Any, float], None]]:
        return {"rls": self.handle_timer, "rls-throttle": self.handle_throttle,
                "rls-flush": self.handle_flush, **self.sip.timers()}  # fmt: skip

    # ------------------------------------------------------------ PresenceExtension

    def owns(self, request: SipRequest) -> bool:
        ev = request.event
        if ev is None or ev.package != "presence":
            return False
        if request.to_tag is not None:
            did = DialogId.of_incoming(request)
            return did is not None and did in self.by_dialog
        if is_request_contained(request):
            return True
        return self.source.list_of(canonical_aor(request.uri) or str(request.uri)) is not None

    def handle_subscribe(self, incoming: Any) -> Awaitable[None] | None:
        req: SipRequest = incoming.request
        if req.to_tag is None:
            return self._initial(incoming)
        did = DialogId.of_incoming(req)
        sub = None if did is None else self.by_dialog.get(did)
        if sub is None:
            incoming.reply(481)
            return None
        try:
            check_in_dialog(req)
        except ListRequestError as exc:
            self._refuse(incoming, exc)
            return None
        self._refresh(incoming, sub)
        return None

    def handle_notify(self, incoming: Any) -> bool:
        """NOTIFYs of the back-end SIP subscriptions (sipmembers.py)."""
        return self.sip.handle_notify(incoming)

    def is_record(self, record: SubscriptionRecord) -> bool:
        return is_list_record(record)

    def stop(self) -> None:
        self.sip.stop()
        self._stopped = True
        self._sending.clear()
        for task in self._tasks:
            task.cancel()
        self.flush()

    # ------------------------------------------------------------ new subscriptions

    def _refuse(self, incoming: Any, exc: MappingError) -> None:
        req: SipRequest = incoming.request
        headers = list(getattr(exc, "headers", ()))
        event(log, logging.INFO, "list subscription refused", status=exc.sip_status,
              reason=exc.reason, call_id=req.call_id)  # fmt: skip
        incoming.reply(exc.sip_status, headers=headers)

    async def _initial(self, incoming: Any) -> None:
        req: SipRequest = incoming.request
        try:
            require_eventlist(req)  # RFC 4662 §4.1: 421
            owner_uri = req.from_.uri if req.from_ is not None else None
            owner = None if owner_uri is None else canonical_aor(owner_uri)
            if owner is None or not isinstance(owner_uri, SipUri):
                raise ListRequestError("list SUBSCRIBE without a SIP From", 400)
            contained = is_request_contained(req)
            entries: Sequence[Entry] | None
            if contained:
                xui = owner.removeprefix("sip:")
                entries = read_request_list(req, self.policy.limits, xui)
                list_uri = f"sip:rls-{secrets.token_hex(8)}@{self.domain}"
            else:
                list_uri = canonical_aor(req.uri) or str(req.uri)
                entries = self.source.list_of(list_uri)
                if entries is None:
                    raise ListRequestError("not a list", 404)
                if len(entries) > self.policy.max_entries:
                    raise ListRequestError("list has too many members", 413)
        except MappingError as exc:  # ListRequestError, FormatError (400/403/413)
            self._refuse(incoming, exc)
            return
        decision = check_initial(incoming, {"presence": self.policy.package})
        if decision is None:
            return
        if await identify(incoming, self.authorize) is None:
            return  # answered by the registrar (challenge, 403, 503)
        if not contained and self.list_owner(list_uri) != owner:
            self._refuse(incoming, ListRequestError("the list of another user", 403))
            return
        if decision.expires > 0 and len(self.by_owner.get(owner, ())) >= self.policy.max_per_user:
            self._refuse(incoming, ListRequestError("too many list subscriptions", 403))
            return
        try:
            dm = self.ctx.map_for_sip_user(owner_uri)
            watcher: Jid | None = sip_uri_to_jid(owner, domain_map=dm).bare
        except AddressError:
            dm, watcher = None, None  # XMPP members stay unknown
        now = self.ctx.clock()
        linphone = self.policy.linphone_quirks and linphone_dialect(req)
        view = ListView(list_uri, entries, cid_domain=self.domain, bare_content_ids=linphone)
        notifier_probe = _placeholder(req, decision, incoming, self.ctx)
        sub = ListSub(owner, list_uri, contained, view, notifier_probe, watcher, dm)
        sub.linphone = linphone
        self._pacing(sub, req, decision.expires)
        fetch = decision.expires == 0
        if contained and not fetch:
            try:
                self.contained.add(list_uri, entries)
            except OverflowError:  # the bounded table of request-contained lists is full
                self._refuse(incoming, ListRequestError("too many request lists", 503))
                return
        for entry in entries:
            self._attach(sub, entry.uri, fetch=fetch)
        self._read_states(sub, now)
        body = view.full(self._boundary())
        document = StateDocument(body.body, body.content_type)
        notifier, actions = Notifier.accept(
            req,
            decision,
            local_tag=incoming.to_tag,
            contact=self.ctx.config.contact_addr,
            now=now,
            authorized=True,  # RFC 4662 §4.4: the subscriber is the list's user
            document=document,
            tls=incoming.transport == "tls",
        )
        sub.notifier = notifier
        did = notifier.dialog.id
        self.by_dialog[did] = sub
        sub.last_notify = now
        if not fetch:
            self.by_owner.setdefault(owner, set()).add(did)
            self.by_list.setdefault(list_uri, set()).add(did)
        event(log, logging.INFO, "list fetch" if fetch else "list subscribed", owner=owner,
              list=list_uri, members=len(entries), contained=contained,
              expires=decision.expires, call_id=did.call_id)  # fmt: skip
        self._run(sub, actions, incoming, stored=not fetch)

    def _pacing(self, sub: ListSub, req: SipRequest, expires: float) -> None:
        event_hdr = req.event
        rate = None if event_hdr is None else max_rate_of(event_hdr)
        sub.interval = notify_interval(self.policy.min_interval, rate, float(expires))
        sub.max_rate = None if rate is None else reflected_max_rate(sub.interval)

    # ------------------------------------------------------------ members

    def _attach(self, sub: ListSub, uri: str, *, fetch: bool = False) -> None:
        member = Member(uri, "other")
        sub.members[uri] = member
        try:
            if sub.dm is None or sub.watcher is None:
                raise AddressError("no component for the list's owner", 403)
            contact = sip_target_to_jid(uri, domain_map=sub.dm).bare
        except (AddressError, ValueError):
            contact = None
        if contact is not None and sub.dm is not None and sub.watcher is not None:
            member.kind = "xmpp"
            if fetch:  # a fetch reads what is known, it subscribes to nothing
                member.watch = self.s2x.watches.get((str(sub.watcher), str(contact)))
                return
            listener = partial(self._xmpp_changed, sub, uri)
            member.listener = listener
            member.watch = self.s2x.follow(sub.watcher, contact, sub.dm, listener)
            return
        aor = _hosted_aor(uri, self.registrar)
        if aor is not None:
            member.kind, member.aor = "hosted", aor
            sub.hosted[aor] = uri
            if not fetch:
                self.by_hosted.setdefault(aor, set()).add(sub.did)
            return
        if _is_sip(uri) and not fetch:  # a foreign SIP user: SUBSCRIBE on the owner's behalf
            member.kind = "sip"
            member.on_sip = partial(self._sip_changed, sub, uri)
            member.follow = self.sip.follow(sub.owner, uri, member.on_sip)

    def _detach(self, sub: ListSub) -> None:
        for member in sub.members.values():
            if member.watch is not None and member.listener is not None:
                self.s2x.unfollow(member.watch, member.listener)
            if member.follow is not None and member.on_sip is not None:
                self.sip.unfollow(member.follow, member.on_sip)
            if member.aor is not None:
                dids = self.by_hosted.get(member.aor)
                if dids is not None:
                    dids.discard(sub.did)
                    if not dids:
                        del self.by_hosted[member.aor]
        sub.members.clear()
        sub.hosted.clear()

    def _state(self, member: Member, now: float) -> MemberState:
        if member.kind == "xmpp":
            watch = member.watch
            if watch is None:
                return UNKNOWN
            if watch.authorized:
                if watch.known:
                    doc = self.s2x.document(watch, now)
                    return MemberState("active", document=doc.body)
                closed = build_pidf(xmpp_to_pidf(watch.entity, ()))
                return MemberState("active", document=closed)
            if watch.asked:
                return MemberState("pending")  # RFC 4662 §4.5, issue 24: pending authorization
            if member.ended is not None:
                return MemberState("terminated", reason=member.ended)
            return UNKNOWN
        if member.kind == "sip" and member.follow is not None:
            return member.follow.state
        if member.kind == "hosted" and member.aor is not None and self.registrar is not None:
            pres = self.registrar.presence_of(member.aor)
            if pres is None:
                entity = "pres:" + member.aor.removeprefix("sip:")
                return MemberState("active", document=build_pidf(xmpp_to_pidf(entity, ())))
            return MemberState("active", document=build_pidf(pres))
        return UNKNOWN

    def _read_states(self, sub: ListSub, now: float) -> None:
        for uri, member in sub.members.items():
            sub.view.update(uri, self._state(member, now))

    def _xmpp_changed(self, sub: ListSub, uri: str, _watch: Watch, ended: str | None) -> None:
        member = sub.members.get(uri)
        if member is None or sub.did not in self.by_dialog:
            return
        if ended is not None:
            member.ended = ended
        self._member_changed(sub, uri, member)

    def _sip_changed(self, sub: ListSub, uri: str, _follow: SipFollow) -> None:
        member = sub.members.get(uri)
        if member is not None and sub.did in self.by_dialog:
            self._member_changed(sub, uri, member)

    def hosted_changed(self, aor: str) -> None:
        """`Registrar.on_presence_change`: every list holding `aor` learns its state."""
        for did in list(self.by_hosted.get(aor, ())):
            sub = self.by_dialog.get(did)
            uri = None if sub is None else sub.hosted.get(aor)
            member = None if sub is None or uri is None else sub.members.get(uri)
            if sub is not None and member is not None:
                self._member_changed(sub, member.uri, member)

    def _member_changed(self, sub: ListSub, uri: str, member: Member) -> None:
        now = self.ctx.clock()
        if not sub.view.update(uri, self._state(member, now)):
            return
        if sub.notifier.state is not NState.ACTIVE:
            return
        at = rate_due(sub.last_notify, sub.interval, now)
        if at is None:
            self._send_partial(sub, now)
        else:  # RFC 6446 §5.2 / RFC 4662 §4.8: held until the interval ends, then merged
            self.ctx.scheduler.set(("rls-throttle", sub.did), at)

    def handle_throttle(self, did: DialogId, now: float) -> None:
        sub = self.by_dialog.get(did)
        if sub is not None and sub.view.dirty:
            self._send_partial(sub, now)

    def _send_partial(self, sub: ListSub, now: float) -> None:
        body = sub.view.partial(self._boundary())
        if body is None:
            return
        sub.last_notify = now
        self._run(sub, sub.notifier.update(now, StateDocument(body.body, body.content_type)))

    def list_changed(self, list_uri: str) -> None:
        """The source changed a list: re-expand it and send full state to its dialogs."""
        key = _list_key(list_uri)
        entries = self.source.list_of(key)
        for did in list(self.by_list.get(key, ())):
            sub = self.by_dialog.get(did)
            if sub is None or sub.contained:
                continue
            if entries is None:  # the list is gone (RFC 6665 §4.2.2: noresource)
                now = self.ctx.clock()
                self._run(sub, sub.notifier.reject(now, "noresource",
                                                   document=self._full(sub, now)))  # fmt: skip
                continue
            self._detach(sub)
            sub.view.replace_members(entries[: self.policy.max_entries])
            for entry in sub.view.members:
                self._attach(sub, entry.uri)
            now = self.ctx.clock()
            self._read_states(sub, now)
            document = self._full(sub, now)
            sub.last_notify = now
            self._run(sub, sub.notifier.update(now, document))

    # ------------------------------------------------------------ in-dialog

    def _full(self, sub: ListSub, now: float) -> StateDocument:
        self._read_states(sub, now)
        body = sub.view.full(self._boundary())
        return StateDocument(body.body, body.content_type)

    def _refresh(self, incoming: Any, sub: ListSub) -> None:
        """RFC 4662 §4.5: a refresh gets full state; so does the final NOTIFY (RFC 4662
        §4.5: every NOTIFY of a list subscription carries RLMI)."""
        now = self.ctx.clock()
        self._read_states(sub, now)
        body = sub.view.full(self._boundary(), commit=False)
        document = StateDocument(body.body, body.content_type)
        sub.notifier.document = document
        actions = sub.notifier.receive_subscribe(incoming.request, now, final_document=document)
        if any(isinstance(a, SendNotify) for a in actions):
            sub.view.commit()
            sub.last_notify = now
            self._pacing(sub, incoming.request, sub.notifier.expires_at - now)
        self._run(sub, actions, incoming, stored=True)

    def handle_timer(self, did: DialogId, now: float) -> None:
        sub = self.by_dialog.get(did)
        if sub is None:
            return
        body = sub.view.full(self._boundary(), commit=False)
        document = StateDocument(body.body, body.content_type)
        actions = sub.notifier.handle_timer(now, final_document=document)
        if actions:
            sub.view.commit()
        self._run(sub, actions)

    # ------------------------------------------------------------ the engine

    def _run(
        self,
        sub: ListSub,
        actions: Iterable[NotifierAction],
        incoming: Any = None,
        *,
        stored: bool = False,
    ) -> None:
        did = sub.did
        removed = False
        # Every NOTIFY's body is built when it is due (full state for a SUBSCRIBE or the
        # end, partial for changes), so the machine need not hold the last one: 500 lists
        # of 200 members would keep 40 MB of old bodies (bench/lists_bench.py).
        sub.notifier.document = None
        for action in actions:
            if isinstance(action, SendResponse):
                if incoming is not None:
                    response = action.response
                    if response.status < 300:  # RFC 4662 §4.1
                        response = response.with_headers(
                            response.headers.add("Require", "eventlist")
                        )
                    incoming.respond(response)
            elif isinstance(action, SendNotify):
                self.ctx.count_notification("lists")
                self._send_notify(did, self._decorate(sub, action.request))
            elif isinstance(action, Removed):
                removed = True
                event(log, logging.INFO, "list dialog removed", owner=sub.owner, list=sub.uri,
                      reason=action.reason, status=action.status)  # fmt: skip
        if removed or sub.notifier.state not in (NState.PENDING, NState.ACTIVE):
            if removed:
                self._remove(sub)
            else:
                self._teardown(sub)  # final NOTIFY out: the back-ends end now
            return
        self.ctx.scheduler.set(("rls", did), sub.notifier.next_deadline())
        if stored:
            self._unsaved.discard(did)
            write(log, self.ctx.store.put_subscription, self.record(sub))
        else:
            self._save_later(did)

    def _decorate(self, sub: ListSub, request: SipRequest) -> SipRequest:
        """RFC 4662 §4.1 `Require: eventlist`; RFC 6446 §5.2 the reflected max-rate;
        liblinphone's `Event: Presence` (policy.linphone_dialect)."""
        headers = request.headers.add("Require", "eventlist")
        ev = headers.get("Event")
        if sub.linphone and ev is not None and ev.startswith("presence"):
            headers = headers.set("Event", "P" + ev[1:])
        state = headers.get("Subscription-State")
        if sub.max_rate is not None and state is not None and not state.startswith("term"):
            headers = headers.set("Subscription-State", f"{state};max-rate={sub.max_rate}")
        return request.with_headers(headers)

    def _teardown(self, sub: ListSub) -> None:
        did = sub.did
        if not sub.ended:
            sub.ended = True
            self._detach(sub)
            self._forget_indexes(sub)
            write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)
            self._unsaved.discard(did)
            self.ctx.scheduler.cancel(("rls", did))
            self.ctx.scheduler.cancel(("rls-throttle", did))

    def _forget_indexes(self, sub: ListSub) -> None:
        did = sub.did
        for index, key in ((self.by_owner, sub.owner), (self.by_list, sub.uri)):
            ids = index.get(key)
            if ids is not None:
                ids.discard(did)
                if not ids:
                    del index[key]
        if sub.contained:
            self.contained.remove(sub.uri)

    def _remove(self, sub: ListSub) -> None:
        did = sub.did
        self._detach(sub)
        self._forget_indexes(sub)
        self.by_dialog.pop(did, None)
        self._unsaved.discard(did)
        self.ctx.scheduler.cancel(("rls", did))
        self.ctx.scheduler.cancel(("rls-throttle", did))
        write(log, self.ctx.store.delete_subscription, did.call_id, did.local_tag)

    def _send_notify(self, did: DialogId, request: SipRequest) -> None:
        waiting = self._sending.get(did)
        if waiting is not None:  # one in flight: CSeq order (RFC 6665 §4.2.2)
            waiting.append(request)
            return
        self._sending[did] = deque()
        self._start_notify(did, request)

    def _start_notify(self, did: DialogId, request: SipRequest) -> None:
        done = partial(self._notify_done, did)
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
        self, did: DialogId, response: SipResponse | None, error: SendFailed | None
    ) -> None:
        if self._stopped:
            return
        try:
            if error is not None:
                event(log, logging.INFO, "list NOTIFY failed", call_id=did.call_id,
                      error=str(error))  # fmt: skip
                if error.response is not None:
                    response = error.response
            sub = self.by_dialog.get(did)
            if sub is not None and (response is not None or error is not None):
                now = self.ctx.clock()
                if response is None:
                    self._run(sub, sub.notifier.notify_timeout(now))
                else:
                    self._run(sub, sub.notifier.receive_notify_response(response, now))
        except Exception as exc:  # a bug: logged, the queue goes on
            log.error("lists NOTIFY outcome failed", exc_info=exc)
        waiting = self._sending.get(did)
        if waiting:
            self._start_notify(did, waiting.popleft())
        else:
            self._sending.pop(did, None)

    def _boundary(self) -> str:
        return f"rls-{secrets.token_hex(12)}"

    # ------------------------------------------------------------ persistence

    def record(self, sub: ListSub) -> SubscriptionRecord:
        data = ListData(
            list_uri=sub.uri,
            local=str(sub.notifier.dialog.local),
            owner=sub.owner,
            contained=sub.contained,
            version=sub.view.version,
            interval=sub.interval,
            max_rate=sub.max_rate,
            linphone=sub.linphone,
            members=sub.view.members,
        )
        return list_record(sub.notifier, data)

    def _save_later(self, did: DialogId) -> None:
        if not self._unsaved:
            self.ctx.scheduler.set(("rls-flush", ""), self.ctx.clock() + FLUSH_DELAY)
        self._unsaved.add(did)

    def handle_flush(self, _key: object, _now: float) -> None:
        self.flush()

    def flush(self) -> None:
        unsaved, self._unsaved = self._unsaved, set()
        self.ctx.scheduler.cancel(("rls-flush", ""))
        records = [self.record(s) for d in unsaved if (s := self.by_dialog.get(d)) is not None]
        if records:
            write(log, self.ctx.store.put_subscriptions, records)

    def restore(self, records: list[SubscriptionRecord], now: float) -> int:
        """Rebuild list dialogs and their back-ends. Nothing is sent at restore: members
        report as their state arrives, in partial NOTIFYs continuing the stored version."""
        n = 0
        for rec in records:
            try:
                sub = self._from_record(rec)
            except (ValueError, KeyError, TypeError, MappingError) as exc:
                event(log, logging.WARNING, "unusable list record", error=str(exc))
                write(log, self.ctx.store.delete_subscription, *rec.key)
                continue
            did = sub.did
            self.by_dialog[did] = sub
            self.by_owner.setdefault(sub.owner, set()).add(did)
            self.by_list.setdefault(sub.uri, set()).add(did)
            if sub.contained:
                self.contained.add(sub.uri, sub.view.members)
            for entry in sub.view.members:
                self._attach(sub, entry.uri)
            self.ctx.scheduler.set(("rls", did), sub.notifier.next_deadline())
            n += 1
        if n:
            event(log, logging.INFO, "list subscriptions restored", count=n)
        return n

    def _from_record(self, rec: SubscriptionRecord) -> ListSub:
        data = read_list_data(rec)
        if rec.remote_target is None:
            raise ValueError(f"list record {rec.call_id} without a remote target")
        members: Sequence[Entry] = data.members
        if not data.contained:  # the source's list as it is now
            current = self.source.list_of(data.list_uri)
            if current is not None:
                members = current[: self.policy.max_entries]
        notifier = restore_notifier(
            rec,
            local=parse_name_addr(data.local),
            content_type=MULTIPART_RELATED,
            package=self.policy.package,
            local_target=self.ctx.config.contact_addr,
        )
        owner_uri = parse_uri(data.owner)
        watcher = dm = None
        if isinstance(owner_uri, SipUri):
            try:
                dm = self.ctx.map_for_sip_user(owner_uri)
                watcher = sip_uri_to_jid(data.owner, domain_map=dm).bare
            except AddressError:
                dm = None
        view = ListView(data.list_uri, members, version=data.version, cid_domain=self.domain,
                        bare_content_ids=data.linphone)  # fmt: skip
        return ListSub(data.owner, data.list_uri, data.contained, view, notifier, watcher, dm,
                       interval=data.interval, max_rate=data.max_rate,
                       linphone=data.linphone)  # fmt: skip


def _hosted_aor(uri: str, registrar: HostedRegistrar | None) -> str | None:
    if registrar is None:
        return None
    try:
        parsed = parse_uri(uri)
    except ValueError:
        return None
    if not isinstance(parsed, SipUri) or not registrar.is_hosted(parsed.host_bare):
        return None
    return canonical_aor(parsed)


def _is_sip(uri: str) -> bool:
    try:
        parsed = parse_uri(uri)
    except ValueError:
        return False
    return isinstance(parsed, SipUri) and bool(parsed.user)


def _placeholder(req: SipRequest, decision: Any, incoming: Any, ctx: PresenceContext) -> Notifier:
    """A notifier for the time members attach (before `Notifier.accept` makes the real
    one): INIT, so no change is sent before the first NOTIFY."""
    dialog = Dialog.as_uas(req, incoming.to_tag, contact=ctx.config.contact_addr)
    return Notifier(dialog, decision.event, MULTIPART_RELATED, decision.package)

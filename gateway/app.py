"""Composition root: build the services from the config, run them, stop them.

Start order: state directory (checked first, so a broken one fails at start), the store,
the bridge handlers, XMPP component links, the registrar, SIP listeners (last, so nothing is
accepted before the rest is ready), admin API. Stop order is the reverse.
SIGINT/SIGTERM drain and stop the gateway (exit 0, `Gateway.drain`); SIGHUP reloads the
log level, TLS listener certificates and the registrar's user file without dropping links.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, cast

from gateway import heap
from gateway.admin.collectors import register_collectors
from gateway.admin.server import AdminServer, AdminSources, Readiness
from gateway.admin.sources import PendingAuthorization
from gateway.bridge.dispatch import SipDispatcher, invite_handler, message_handler
from gateway.bridge.lists.service import ListServer, lists_policy
from gateway.bridge.offline.service import OfflineService
from gateway.bridge.pager.names import SeenNames
from gateway.bridge.pager.service import Pager
from gateway.bridge.presence.context import domain_maps, presence_config
from gateway.bridge.presence.presrules import settle
from gateway.bridge.presence.service import PresenceService
from gateway.bridge.regevent.service import RegEventService
from gateway.bridge.routing import SipRouter
from gateway.bridge.session.chat import SessionChat, options_prober
from gateway.bridge.session.msrp_media import MsrpMedia
from gateway.bridge.session.service import SessionService, default_contact
from gateway.cluster.keeper import OFFLINE_QUEUE, REGISTRAR_EXPIRY, LeaseKeeper
from gateway.cluster.lease import LeasePolicy
from gateway.config import Config, ConfigError, Transport, read_config
from gateway.eventloop import loop_name
from gateway.logs import WireTrace, event, set_level
from gateway.metrics import Metrics
from gateway.msrp.transport import MsrpService
from gateway.overload.monitor import LoadSources, OverloadMonitor
from gateway.overload.policy import OverloadPolicy
from gateway.registrar.delivery import device_hop
from gateway.registrar.service import Registrar
from gateway.registrar.users import UsersFileError, read_users
from gateway.resolver.resolver import Resolver
from gateway.sip.locate import Target
from gateway.sip.timers import TimerConfig
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.transport.tls import load_client_ca, server_context
from gateway.sip.uri import SipUri
from gateway.sip.useragent import IncomingRequest, RequestHandler
from gateway.sip.validate import GATEWAY_POLICY
from gateway.store.api import Binding, Store, StoreError, SubscriptionRecord
from gateway.store.configured import open_configured
from gateway.xcap.server import XcapServer
from gateway.xcap.service import XcapDocuments
from gateway.xcap.source import XcapListSource
from gateway.xcap.source import owner_of as xcap_list_owner
from gateway.xmpp.disco import Features, prompt_translator
from gateway.xmpp.links import XmppLinks
from mappings.dialoginfo import MEDIA_TYPE as DIALOG_INFO_MEDIA_TYPE
from mappings.jid import Jid
from mappings.reginfo import MEDIA_TYPE as REGINFO_MEDIA_TYPE
from mappings.vcard import first_name
from mappings.winfo import MEDIA_TYPE as WINFO_MEDIA_TYPE

log = logging.getLogger(__name__)


class Service(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


class StartupError(Exception):
    """The gateway cannot start; the message says why, in one line."""


def prepare_state_dir(path: Path) -> None:
    """Create the state directory and prove it is writable (issue: fail at start)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"state directory {str(path)!r} is not usable: {exc.strerror or exc}"
        ) from None


@dataclass
class Gateway:
    """The running gateway: its services in start order."""

    cfg: Config
    services: list[tuple[str, Service]] = field(default_factory=list)
    started: list[tuple[str, Service]] = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    endpoint: SipEndpoint | None = None
    registrar: Registrar | None = None
    inflight: InFlight | None = None
    sessions: SessionService | None = None  # INVITE sessions (docs/sessions.md)
    trace: WireTrace = field(default_factory=WireTrace)
    draining: bool = False
    # Set by `run`: what SIGTERM does (drain, then stop); the console's drain action.
    request_stop: Callable[[], None] | None = None
    # The users' XCAP documents (docs/xcap.md) and the RLS's ListSource over them.
    documents: XcapDocuments | None = None
    xcap_lists: XcapListSource | None = None

    def readiness(self) -> Readiness:
        checks = {name: bool(getattr(svc, "ready", True)) for name, svc in self.started}
        checks["started"] = len(self.started) == len(self.services)
        if self.endpoint is not None and "sip" in checks:  # every SIP listener bound
            checks["sip"] = len(self.endpoint.listeners) == len(self.cfg.sip.listeners)
        checks["accepting"] = not self.draining
        return Readiness(all(checks.values()), checks)

    async def drain(self) -> None:
        """SIGTERM: new SIP requests get 503 from now on; requests being handled finish
        within drain_timeout; then the services stop in DRAIN_ORDER, so that presence can
        still send what it sends at stop while the SIP endpoint and the links are up, and
        our own client transactions get `drain_timeout` to end. The rest stop in `stop`."""
        self.draining = True
        timeout = self.cfg.gateway.drain_timeout
        if self.endpoint is not None:
            self.endpoint.begin_drain()
        if self.inflight is not None:
            busy = self.inflight.count
            idle = await self.inflight.wait_idle(timeout)
            event(
                log,
                logging.INFO if idle else logging.WARNING,
                "sip requests drained" if idle else "drain timeout, requests still in flight",
                at_start=busy,
                left=self.inflight.count,
            )
        for name in DRAIN_ORDER:
            entry = next(((n, s) for n, s in self.started if n == name), None)
            if entry is None:
                continue
            self.started.remove(entry)
            try:
                if entry[1] is self.endpoint and self.endpoint is not None:
                    await self.endpoint.stop(grace=timeout)
                else:
                    await asyncio.wait_for(entry[1].stop(), timeout)
            except Exception:  # error boundary: one failing service must not block the rest
                log.exception("error while stopping %s", name)

    async def start(self) -> None:
        for name, svc in self.services:
            try:
                await svc.start()
            except OSError as exc:
                raise StartupError(f"{name}: {exc.strerror or exc}") from None
            except ConfigError as exc:  # e.g. a users file that became unreadable or invalid
                raise StartupError(f"{name}: {exc}") from None
            self.started.append((name, svc))

    async def stop(self) -> None:
        while self.started:
            name, svc = self.started.pop()
            try:
                await asyncio.wait_for(svc.stop(), self.cfg.gateway.drain_timeout)
            except Exception:  # error boundary: one failing service must not block the rest
                log.exception("error while stopping %s", name)


# What the gateway answers (its Allow): the dispatcher's methods plus what the endpoint and
# transaction layer handle themselves. INVITE/ACK/BYE go to the session service
# (docs/sessions.md): without a Media every INVITE gets 488 with a Warning, which RFC 7573
# peers take as "use pager mode".
GATEWAY_UAS_POLICY = replace(
    GATEWAY_POLICY,
    methods=frozenset(
        {"MESSAGE", "SUBSCRIBE", "NOTIFY", "REGISTER", "PUBLISH", "OPTIONS", "ACK", "CANCEL"}
        | {"INVITE", "BYE"}
    ),
    # SUBSCRIBE also for presence.winfo: its NOTIFYs carry RFC 3858 documents
    # (bridge/presence/winfo.py), for the reg event: RFC 3680 (bridge/regevent/), and for
    # lists: RLMI in multipart/related (bridge/lists)
    response_types=MappingProxyType(
        {
            **GATEWAY_POLICY.response_types,
            "SUBSCRIBE": GATEWAY_POLICY.response_types["SUBSCRIBE"]
            | {WINFO_MEDIA_TYPE, REGINFO_MEDIA_TYPE, "multipart/related", "application/rlmi+xml"},
        }
    ),
    # RFC 4662 §4.1 and RFC 5367 §3 (resource lists, docs/lists.md)
    extensions=GATEWAY_POLICY.extensions | {"eventlist", "recipient-list-subscribe"},
    # dialog-info in PUBLISH and NOTIFY: call activity (docs/call-activity.md); resource
    # lists in SUBSCRIBE (RFC 5367)
    content_types=GATEWAY_POLICY.content_types
    | {DIALOG_INFO_MEDIA_TYPE, "application/resource-lists+xml"},
)

# Stop order on SIGTERM: presence first (the endpoint and links still up), the SIP endpoint
# before the links (XMPP->SIP messages in flight get their answer), the store last but one.
DRAIN_ORDER = (
    "presence",
    "reg_event",
    "sessions",
    "bridge",
    "offline",
    "registrar",
    "sip",
    "xmpp",
    "store",
)


class InFlight:
    """The SIP request handler, counting the requests still being handled (for the drain)."""

    def __init__(self, inner: RequestHandler) -> None:
        self.inner = inner
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def handle(self, request: IncomingRequest) -> Awaitable[None] | None:
        work = self.inner.handle(request)
        if work is None:
            return None
        self.count += 1
        self._idle.clear()
        return self._track(work)

    async def _track(self, work: Awaitable[None]) -> None:
        try:
            await work
        finally:
            self.count -= 1
            if not self.count:
                self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


class StoreService:
    """The persistent store, opened at start (after the state directory check)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._store: Store | None = None

    def __getattr__(self, name: str) -> Any:  # the Store protocol, once open
        if self._store is None:
            raise AttributeError(name)
        return getattr(self._store, name)

    async def start(self) -> None:
        try:
            self._store = open_configured(self.cfg.store, self.cfg.gateway.state_dir)
        except StoreError as exc:
            raise StartupError(f"store: {exc}") from None

    async def stop(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


class BridgeHandlers:
    """Attaches the pager's stanza handler to the links before they connect."""

    def __init__(self, pager: Pager) -> None:
        self.pager = pager

    async def start(self) -> None:
        self.pager.attach()

    async def stop(self) -> None:
        return None


def build(cfg: Config) -> Gateway:
    gw = Gateway(cfg)
    store = StoreService(cfg)
    dispatcher = SipDispatcher()
    gw.inflight = inflight = InFlight(dispatcher)
    endpoint = SipEndpoint(cfg.sip, inflight, policy=GATEWAY_UAS_POLICY)
    keeper = _cluster(cfg, cast(Store, store))  # issue 21: None for one process
    registrar = Registrar(cfg, cast(Store, store), endpoint, gw.metrics, leases=keeper)
    reconnects = _count_reconnects(gw.metrics)

    def link_up(domain: str) -> None:  # `presence` is built below, before any link starts
        reconnects(domain)
        presence.on_link_up(domain)  # re-announce contacts (docs/presence.md)

    def contact_features(jid: Jid) -> Features:  # `pager` is built below, like `presence`
        return pager.contact_features(jid)

    seen_names = SeenNames()  # display names SIP contacts show (issue 22, docs/xmpp.md)
    links = XmppLinks(
        cfg.xmpp,
        features=Features(chat_states=True, receipts=True, xhtml_im=True, chat_markers=True),
        prompt_to_jid=partial(prompt_translator, components=cfg.xmpp.components),  # XEP-0100
        # vCard FN: the user file's name of a hosted user, else the name SIP traffic showed
        display_names=first_name(registrar.display_name, seen_names),  # docs/xmpp.md
        linked_accounts=registrar.linked_xmpp,  # vCard JABBERID (RFC 7081, docs/xmpp.md)
        contact_features=contact_features,  # disco and caps per contact (docs/xmpp.md)
        avatars=registrar.avatar,  # vCard PHOTO, presence photo hash (XEP-0153)
        on_link_up=link_up,
    )
    resolver = Resolver(cfg.dns, cfg.sip.routes, cfg.sip.outbound_proxy)
    router = SipRouter(cfg, endpoint, resolver, registrar)
    # store-and-forward for offline hosted users (issue 17, docs/offline.md)
    offline = (
        OfflineService(
            cfg.offline,
            cast(Store, store),
            registrar,
            links,
            leases=keeper,
            resync_every=cfg.cluster.sweep_interval if keeper is not None else None,
        )
        if cfg.offline.enabled and cfg.sip.hosted_domains
        else None
    )
    pager = Pager(cfg, links, router, gw.metrics, offline=offline)
    registrar.on_register(pager.saw_register)  # file links to devices that take FT-HTTP
    dispatcher.add("REGISTER", registrar.handle_register)
    dispatcher.add("PUBLISH", registrar.handle_publish)
    presence = PresenceService(
        presence_config(cfg),
        endpoint=endpoint,
        resolver=resolver,
        links=links,
        store=cast(Store, store),
        maps=domain_maps(cfg.xmpp.components, cfg.sip.served_xmpp_domains),
        metrics=gw.metrics,
        authorize=registrar.authorize,
        router=router,
        registrar=registrar,
        auto_approve_hosted=cfg.presence.auto_approve_hosted,
        departure_grace=cfg.gateway.drain_timeout / 2,  # within presence's stop timeout
        call_activity=cfg.call_activity,  # calls in XMPP presence (docs/call-activity.md)
    )
    if presence.activity is not None:  # subscribe to devices' dialogs (RFC 4235)
        registrar.on_register(presence.activity.saw_register)
    deliver: Callable[[IncomingRequest, str | None], Awaitable[None]] = pager.sip_message
    if presence.hosted is not None:  # `/allow`, `/deny` from hosted users (docs/presence.md)
        deliver = presence.hosted.message_command(pager.sip_message)
    dispatcher.add("MESSAGE", message_handler(registrar, deliver, seen_names.saw))
    # The users' XCAP documents (docs/xcap.md): their resource lists feed the RLS.
    documents = gw.documents = XcapDocuments(
        cast(Store, store), max_bytes=cfg.xcap.max_document_size
    )
    gw.xcap_lists = XcapListSource(documents)
    if cfg.lists.enabled:  # the resource list server (docs/lists.md)
        rls = ListServer(
            presence.ctx,
            presence.s2x,
            policy=lists_policy(cfg.lists),
            source=gw.xcap_lists,
            list_owner=xcap_list_owner,
            registrar=registrar,
            authorize=registrar.authorize,
        )
        presence.extend(rls, rls.timers())
    subscribe: Callable[[Any], Awaitable[None] | None] = presence.handle_subscribe
    reg_event = None
    if cfg.reg_event.enabled and cfg.sip.hosted_domains:  # RFC 3680 (docs/registrar.md)
        reg_event = RegEventService(
            cfg.reg_event, presence.ctx, registrar, authorize=registrar.authorize
        )
        subscribe = reg_event.route(subscribe)
    dispatcher.add("SUBSCRIBE", subscribe)
    dispatcher.add("NOTIFY", presence.handle_notify)
    # INVITE sessions (issue 18, docs/sessions.md): with `[msrp] enabled` the Media is SDP +
    # MSRP bridged to XMPP chat by RFC 7573 (bridge/session/chat.py); without it, 488
    t = cfg.sip.timers
    msrp = chat = media = None
    if cfg.msrp.enabled:
        msrp = MsrpService(cfg.msrp)
        chat = SessionChat(
            pager,
            links,
            receipt_wait=cfg.sessions.receipt_wait,
            preference=cfg.sessions.preference,
        )
        media = MsrpMedia(msrp, chat)
        pager.session_stanzas = chat.take
    sessions = SessionService(
        cfg.sessions,
        endpoint,
        resolver,
        media=media,
        contact=cfg.sessions.contact or default_contact(cfg.sip),
        timers=TimerConfig(t1=t.t1, t2=t.t2, t4=t.t4),
        hosted=_hosted_hop(registrar, cfg.sip.hosted_domains),
    )
    gw.metrics.sessions.set_function(lambda: len(sessions))
    sessions.on_end = lambda reason: gw.metrics.session_ends.labels(reason).inc()
    if chat is not None:
        chat.hangup = sessions.hangup
        chat.invite = sessions.invite
        chat.probe = options_prober(router)  # RFC 7573 §4: who takes MSRP sessions
        dispatcher.add("INVITE", invite_handler(registrar, sessions.handle_invite))
    else:
        dispatcher.add("INVITE", sessions.handle_invite)
    dispatcher.add("ACK", sessions.handle_ack)
    dispatcher.add("BYE", sessions.handle_bye)
    gw.sessions = sessions
    gw.endpoint = endpoint
    gw.registrar = registrar
    gw.services.append(("store", store))
    if keeper is not None:  # leases claimed before the services that act on them start
        gw.services.append(("cluster", keeper))
    gw.services.append(("bridge", BridgeHandlers(pager)))
    gw.services.append(("presence", presence))
    if msrp is not None:  # stops after the sessions (their BYEs close MSRP sessions)
        gw.services.append(("msrp", msrp))
    gw.services.append(("sessions", sessions))
    if chat is not None:  # stops first: held success REPORTs are dropped
        gw.services.append(("session_chat", chat))
    gw.services.append(("xmpp", links))
    gw.services.append(("registrar", registrar))
    if reg_event is not None:  # after the registrar: bindings restored
        gw.services.append(("reg_event", reg_event))
    if offline is not None:  # after the registrar (bindings restored), before SIP listens
        gw.services.append(("offline", offline))
    gw.services.append(("sip", endpoint))
    _add_xcap(cfg, gw, cast(Store, store), presence)
    gw.services.append(("overload", _overload(gw, endpoint, inflight, links, pager)))
    sources = _observe(gw, links, resolver, cast(Store, store))
    sources = replace(_console_sources(gw, sources, pager, presence), documents=gw.documents)
    if cfg.admin.enabled:
        gw.services.append(("admin", AdminServer(cfg.admin, gw.readiness, sources)))
    return gw


def _cluster(cfg: Config, store: Store) -> LeaseKeeper | None:
    """The lease keeper of a cluster instance (docs/cluster.md); None for one process."""
    c = cfg.cluster
    if not c.enabled:
        return None
    policy = LeasePolicy(ttl=c.lease_ttl, renew_every=c.lease_renew, margin=c.lease_margin)
    return LeaseKeeper(store, c.instance_id, (REGISTRAR_EXPIRY, OFFLINE_QUEUE), policy)


def _add_xcap(cfg: Config, gw: Gateway, store: Store, presence: PresenceService) -> None:
    """XCAP documents (issue 24, docs/xcap.md): pres-rules decide hosted users' watchers,
    resource-lists feed the RLS (`gw.xcap_lists`); `[xcap] enabled` adds the HTTP server."""
    documents = gw.documents
    assert documents is not None  # made in build(), before the RLS
    hosted, registrar = presence.hosted, gw.registrar
    if hosted is not None:
        hosted.rules = documents.watcher_decision

        def rules_changed(auid: str, aor: str, name: str) -> None:
            if auid == "pres-rules":  # existing requests too (docs/presence.md)
                settle(hosted, aor, documents.watcher_decision)

        documents.on_change(rules_changed)
    if cfg.xcap.enabled and registrar is not None:
        server = XcapServer(cfg.xcap, documents, lambda: registrar.users)
        gw.services.append(("xcap", server))


def _overload(
    gw: Gateway, endpoint: SipEndpoint, inflight: InFlight, links: XmppLinks, pager: Pager
) -> OverloadMonitor:
    """Overload control (issue 27): the policy decides for the SIP core and the pager."""
    policy = OverloadPolicy(gw.cfg.overload)
    ua = endpoint.ua
    if gw.cfg.overload.enabled:
        ua.admission = lambda: policy.admit(inflight.count)
        pager.admission = lambda: policy.admit_stanza(pager.x2s_pending)
    sources = LoadSources(
        pending=lambda: inflight.count,
        clients=lambda: len(ua.clients) + pager.x2s_pending,
        xmpp_backlog=links.backlog,
        udp_backlog=endpoint.udp_backlog,
        stream_backlog=endpoint.stream_backlog,
    )
    return OverloadMonitor(policy, sources, gw.metrics)


def _hosted_hop(
    registrar: Registrar, domains: Iterable[str]
) -> Callable[[SipUri], tuple[SipUri, Target, tuple[str, ...]] | None]:
    """Sessions to hosted users go to their registered device (docs/sessions.md)."""
    hosted = frozenset(d.lower() for d in domains)

    def hop(uri: SipUri) -> tuple[SipUri, Target, tuple[str, ...]] | None:
        if uri.host_bare.lower().rstrip(".") not in hosted:
            return None
        aor = f"sip:{uri.user_decoded}@{uri.host_bare}"
        return device_hop(aor, registrar.locate(aor))

    return hop


def _count_reconnects(metrics: Metrics) -> Callable[[str], None]:
    """on_link_up: every link-up of a domain after its first is a reconnection."""
    seen: set[str] = set()

    def up(domain: str) -> None:
        if domain in seen:
            metrics.component_reconnects.labels(domain).inc()
        seen.add(domain)

    return up


def _observe(gw: Gateway, links: XmppLinks, resolver: Resolver, store: Store) -> AdminSources:
    """Scrape-time collectors, the admin listings and the wire-trace switch."""
    endpoint = gw.endpoint
    register_collectors(
        gw.metrics.registry,
        endpoint=endpoint,
        connections=(lambda: endpoint.connections) if endpoint is not None else None,
        links=links.status,
        resolver=resolver,
    )
    if endpoint is not None:

        def sip_trace(on: bool) -> None:
            endpoint.trace = on

        gw.trace.add_hook("sip", sip_trace)

    def registrations() -> list[Binding]:
        now = time.time()
        return [b for b in store.all_bindings() if b.expires_at > now]

    def subscriptions() -> list[SubscriptionRecord]:
        return list(store.all_subscriptions())

    return AdminSources(
        registry=gw.metrics.registry,
        listings={
            "links": links.status,
            "registrations": registrations,
            "subscriptions": subscriptions,
        },
        trace=gw.trace,
    )


def _console_sources(
    gw: Gateway, sources: AdminSources, pager: Pager, presence: PresenceService
) -> AdminSources:
    """The operator console's inputs (issue 26, docs/admin-api.md "Console")."""
    endpoint, hosted = gw.endpoint, presence.hosted

    def listeners() -> list[dict[str, str]]:
        found = endpoint.listeners if endpoint is not None else []
        return [{"name": li.name, "transport": li.transport_name} for li in found]

    def pending() -> list[PendingAuthorization]:
        waiting = hosted.pending() if hosted is not None else []
        return [PendingAuthorization(e.aor, str(e.watcher), e.sip_uri) for e in waiting]

    def drain() -> None:
        if gw.request_stop is not None:
            gw.request_stop()

    return replace(
        sources,
        listings={**sources.listings, "listeners": listeners},
        fates=pager.fates,
        pending=pending if hosted is not None else None,
        decide=hosted.decide if hosted is not None else None,
        drain=drain,
    )


def _reload(cfg: Config, gw: Gateway) -> None:
    """SIGHUP: the log level, TLS listener certificates and the registrar's user file.
    Links, listeners and registrations stay; a file that no longer loads changes nothing."""
    if cfg.source is None:
        return
    try:
        fresh = read_config(cfg.source)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return
    set_level(fresh.gateway.log_level)
    event(
        log,
        logging.INFO,
        "configuration reloaded",
        log_level=fresh.gateway.log_level,
        certificates=_reload_certificates(fresh, gw.endpoint),
        users=_reload_users(fresh, gw.registrar),
    )


def _reload_certificates(fresh: Config, endpoint: SipEndpoint | None) -> int:
    """Load the configured certificate, key and client CA bundle into each running TLS
    or WSS listener's context (new handshakes use them; open connections keep theirs). A CA
    dropped from `client_ca` stays trusted until a restart. The number reloaded."""
    if endpoint is None:
        return 0
    wanted = {
        (lc.address, lc.port): lc
        for lc in fresh.sip.listeners
        if lc.transport in (Transport.TLS, Transport.WSS)
    }
    done = 0
    for listener in endpoint.listeners:
        ctx = getattr(listener, "ssl_context", None)
        lc = wanted.get((listener.config.address, listener.config.port))
        if ctx is None or lc is None or lc.certificate is None or lc.private_key is None:
            continue
        try:
            server_context(lc)  # proves the new files load before the live context is touched
            ctx.load_cert_chain(str(lc.certificate), str(lc.private_key))
            load_client_ca(ctx, lc)  # keeps asking for client certificates (adds CAs only)
        except (OSError, ssl.SSLError, ValueError) as exc:
            event(
                log,
                logging.ERROR,
                "certificate reload failed, keeping the old one",
                listener=listener.name,
                error=str(exc),
            )
            continue
        done += 1
    return done


def _reload_users(fresh: Config, registrar: Registrar | None) -> int | None:
    """Re-read the registrar's user file; the count of users, None if not reloaded."""
    path = fresh.registrar.users_file
    if registrar is None or path is None:
        return None
    try:
        users = read_users(path)
    except UsersFileError as exc:
        log.error("user file reload failed, keeping the old one: %s", exc)
        return None
    registrar.replace_users(users)  # a removed user's registrations end now
    return len(registrar.users)


async def trim_heap(interval: float) -> None:
    """Every `interval` s, hand glibc's whole free heap pages back to the kernel.

    Chunks freed after a peak stay resident inside the heap, so without this RSS climbs
    in steps to its high-water mark while the bytes in use stay flat (the soak,
    docs/reliability.md §6). malloc_trim drops the GIL and takes each arena's lock, so
    it runs in a worker thread and never stalls the loop.
    """
    while True:
        await asyncio.sleep(interval)
        before = heap.heap_stats()
        returned = await asyncio.to_thread(heap.trim)
        if before is not None:
            event(
                log,
                logging.DEBUG,
                "heap trimmed",
                returned=returned,
                heap_free=before.free,
                heap_in_use=before.in_use,
            )


async def run(cfg: Config) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 when start-up fails."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    gw = build(cfg)
    gw.request_stop = stop.set
    loop.add_signal_handler(signal.SIGHUP, _reload, cfg, gw)
    try:
        prepare_state_dir(cfg.gateway.state_dir)
        await gw.start()
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        await gw.stop()
        return 1
    # Start-up objects (modules, config, slixmpp plugins, restored state) live until exit:
    # moved out of the collector's generations, full collections only walk what the
    # traffic creates (docs/performance.md, pager round 3).
    gc.collect()
    gc.freeze()
    event(
        log,
        logging.INFO,
        "gateway ready",
        pid=os.getpid(),
        loop=loop_name(loop),
        components=",".join(c.domain for c in cfg.xmpp.components),
        sip=",".join(li.name for li in gw.endpoint.listeners) if gw.endpoint else "",
        services=",".join(name for name, _ in gw.started),
    )
    trimmer = None
    if cfg.gateway.heap_trim_interval > 0 and heap.available():
        trimmer = asyncio.create_task(trim_heap(cfg.gateway.heap_trim_interval))
    await stop.wait()
    if trimmer is not None:
        trimmer.cancel()
    event(log, logging.INFO, "shutting down")
    await gw.drain()
    await gw.stop()
    event(log, logging.INFO, "stopped")
    return 0

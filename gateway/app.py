"""Composition root: build the services from the config, run them, stop them.

Start order: state directory (checked first, so a broken one fails at start), the store,
the bridge handlers, XMPP component links, the registrar, SIP listeners (last, so nothing is
accepted before the rest is ready), admin API. Stop order is the reverse.
SIGINT/SIGTERM stop the gateway cleanly (exit 0); SIGHUP reloads the log level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from gateway.admin.server import AdminServer, Readiness
from gateway.bridge.dispatch import SipDispatcher, message_handler
from gateway.bridge.pager import Pager
from gateway.bridge.presence import PresenceService
from gateway.bridge.presence_context import domain_maps, presence_config
from gateway.bridge.routing import SipRouter
from gateway.config import Config, ConfigError, read_config
from gateway.logs import event, set_level
from gateway.metrics import Metrics
from gateway.registrar.service import Registrar
from gateway.resolver.resolver import Resolver
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.store.api import Store, StoreError
from gateway.store.sqlite import open_store
from gateway.xmpp.disco import Features, prompt_translator
from gateway.xmpp.links import XmppLinks

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

    def readiness(self) -> Readiness:
        checks = {name: bool(getattr(svc, "ready", True)) for name, svc in self.started}
        checks["started"] = len(self.started) == len(self.services)
        return Readiness(all(checks.values()), checks)

    async def start(self) -> None:
        for name, svc in self.services:
            try:
                await svc.start()
            except OSError as exc:
                raise StartupError(f"{name}: {exc.strerror or exc}") from None
            self.started.append((name, svc))

    async def stop(self) -> None:
        while self.started:
            name, svc = self.started.pop()
            try:
                await asyncio.wait_for(svc.stop(), self.cfg.gateway.drain_timeout)
            except Exception:  # error boundary: one failing service must not block the rest
                log.exception("error while stopping %s", name)


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
            self._store = open_store(self.cfg.gateway.state_dir)
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
    links = XmppLinks(
        cfg.xmpp,
        features=Features(chat_states=True, receipts=True, xhtml_im=True),
        prompt_to_jid=prompt_translator,
    )
    dispatcher = SipDispatcher()
    endpoint = SipEndpoint(cfg.sip, dispatcher)
    registrar = Registrar(cfg, cast(Store, store), endpoint, gw.metrics)
    resolver = Resolver(cfg.dns, cfg.sip.routes, cfg.sip.outbound_proxy)
    router = SipRouter(cfg, endpoint, resolver, registrar)
    pager = Pager(cfg, links, router, gw.metrics)
    dispatcher.add("MESSAGE", message_handler(registrar, pager.sip_message))
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
    )
    dispatcher.add("SUBSCRIBE", presence.handle_subscribe)
    dispatcher.add("NOTIFY", presence.handle_notify)
    gw.endpoint = endpoint
    gw.services.append(("store", store))
    gw.services.append(("bridge", BridgeHandlers(pager)))
    gw.services.append(("presence", presence))
    gw.services.append(("xmpp", links))
    gw.services.append(("registrar", registrar))
    gw.services.append(("sip", endpoint))
    if cfg.admin.enabled:
        gw.services.append(("admin", AdminServer(cfg.admin, gw.readiness)))
    return gw


def _reload_log_level(cfg: Config) -> None:
    if cfg.source is None:
        return
    try:
        fresh = read_config(cfg.source)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration: %s", exc)
        return
    set_level(fresh.gateway.log_level)
    event(log, logging.INFO, "configuration reloaded", log_level=fresh.gateway.log_level)


async def run(cfg: Config) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 1 when start-up fails."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_log_level, cfg)
    gw = build(cfg)
    try:
        prepare_state_dir(cfg.gateway.state_dir)
        await gw.start()
    except StartupError as exc:
        log.error("cannot start: %s", exc)
        await gw.stop()
        return 1
    event(
        log,
        logging.INFO,
        "gateway ready",
        pid=os.getpid(),
        components=",".join(c.domain for c in cfg.xmpp.components),
        sip=",".join(li.name for li in gw.endpoint.listeners) if gw.endpoint else "",
        services=",".join(name for name, _ in gw.started),
    )
    await stop.wait()
    event(log, logging.INFO, "shutting down")
    await gw.stop()
    event(log, logging.INFO, "stopped")
    return 0

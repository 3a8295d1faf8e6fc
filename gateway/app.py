"""Composition root: build the services from the config, run them, stop them.

Start order: state directory (checked first, so a broken one fails at start),
XMPP component links, SIP listeners, admin API. Stop order is the reverse.
SIGINT/SIGTERM stop the gateway cleanly (exit 0); SIGHUP reloads the log level.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.admin.server import AdminServer, Readiness
from gateway.config import Config, ConfigError, read_config
from gateway.logs import event, set_level
from gateway.xmpp.disco import prompt_translator
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


def build(cfg: Config) -> Gateway:
    gw = Gateway(cfg)
    gw.services.append(("xmpp", XmppLinks(cfg.xmpp, prompt_to_jid=prompt_translator)))
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
        services=",".join(name for name, _ in gw.started),
    )
    await stop.wait()
    event(log, logging.INFO, "shutting down")
    await gw.stop()
    event(log, logging.INFO, "stopped")
    return 0

"""The presence bridge assembled in-process for integration tests: a real SipEndpoint on
loopback, real XmppLinks to the test Prosody, the SQLite store in a scratch directory.

`RecordingLinks` forwards to the real links and keeps every stanza the bridge sent, so
tests can check stanzas that no client sees (probes to the user's server).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bridge.presence.context import PresenceConfig, domain_maps
from gateway.bridge.presence.service import PresenceService
from gateway.config import (
    ComponentConfig,
    DnsConfig,
    ListenerConfig,
    RouteConfig,
    SipConfig,
    SipTimers,
    Transport,
    XmppConfig,
)
from gateway.metrics import Metrics
from gateway.resolver import Resolver
from gateway.sip.notifier import PackageConfig
from gateway.sip.timers import TimerConfig
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.useragent import IncomingRequest
from gateway.store.sqlite import SqliteStore, open_store
from gateway.xmpp.links import XmppLinks
from tests.harness import LOOPBACK
from tests.harness.prosody import ProsodyServer

T1 = 0.05  # Timer N = 3.2 s, Timer F = 3.2 s
COMPONENT = "sip.localhost"
LIMIT = 30.0


class RecordingLinks:
    def __init__(self, links: XmppLinks) -> None:
        self.links = links
        self.sent: list[Any] = []

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(stanza)
        return self.links.send(domain, stanza)

    async def send_confirmed(self, domain: str, stanza: Any, timeout: float | None = None) -> None:
        self.sent.append(stanza)
        await self.links.send_confirmed(domain, stanza, timeout)

    def is_up(self, domain: str) -> bool:
        return self.links.is_up(domain)

    def component(self, domain: str) -> Any:
        return self.links.component(domain)

    def add_stanza_handler(self, event: str, handler: Any) -> None:
        self.links.add_stanza_handler(event, handler)

    def sent_of(self, kind: str, to: str) -> list[Any]:
        return [s for s in self.sent if s.xml.get("type") == kind and s.xml.get("to") == to]


class Dispatch:
    """SUBSCRIBE and NOTIFY to the presence service; anything else 405."""

    def __init__(self) -> None:
        self.service: PresenceService | None = None

    def handle(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        method = incoming.request.method
        if self.service is None or method not in ("SUBSCRIBE", "NOTIFY"):
            if method != "ACK":
                incoming.reply(503 if self.service is None else 405)
            return None
        if method == "SUBSCRIBE":
            return self.service.handle_subscribe(incoming)
        self.service.handle_notify(incoming)
        return None


@dataclass
class Rig:
    endpoint: SipEndpoint
    links: XmppLinks
    recording: RecordingLinks
    service: PresenceService
    store: SqliteStore
    port: int
    metrics: Metrics = field(default_factory=Metrics)

    @property
    def contact(self) -> str:
        return f"sip:presence@{LOOPBACK}:{self.port}"

    async def stop(self) -> None:
        await self.service.stop()
        await self.endpoint.stop()
        await self.links.stop()
        self.store.close()


async def start_rig(
    prosody: ProsodyServer,
    state_dir: Path,
    port: int,
    *,
    routes: Mapping[str, str] | None = None,
    notify_interval: float = 0.5,
    expires: int = 3600,
    package: PackageConfig | None = None,
) -> Rig:
    comp = ComponentConfig(COMPONENT, prosody.components[COMPONENT])
    xcfg = XmppConfig(
        server=LOOPBACK,
        port=prosody.component_port,
        components=(comp,),
        reconnect_min=0.2,
        reconnect_max=2.0,
    )

    def link_up(domain: str) -> None:  # as app.py wires it: re-announce on every link-up
        service.on_link_up(domain)

    links = XmppLinks(xcfg, on_link_up=link_up)
    recording = RecordingLinks(links)
    dispatch = Dispatch()
    sip_cfg = SipConfig(
        listeners=(ListenerConfig(Transport.UDP, LOOPBACK, port),),
        timers=SipTimers(t1=T1, t2=4.0, t4=5.0),
    )
    endpoint = SipEndpoint(sip_cfg, dispatch)
    resolver = Resolver(
        DnsConfig(), routes=tuple(RouteConfig(d, t) for d, t in (routes or {}).items())
    )
    store = open_store(state_dir)
    metrics = Metrics()
    config = PresenceConfig(
        contact=f"sip:presence@{LOOPBACK}:{port}",
        expires=expires,
        notify_interval=notify_interval,
        retry_min=0.5,
        retry_max=2.0,
        timers=TimerConfig(t1=T1, t2=4.0, t4=5.0),
        package=package or PackageConfig(min_expires=1),
    )
    service = PresenceService(
        config,
        endpoint=endpoint,
        resolver=resolver,
        links=recording,
        store=store,
        maps=domain_maps((comp,), ("localhost",)),
        metrics=metrics,
    )
    await links.start()
    await endpoint.start()
    await service.start()
    dispatch.service = service
    await links.wait_up(COMPONENT, LIMIT)
    return Rig(endpoint, links, recording, service, store, port, metrics)


async def until(predicate: Any, timeout: float = LIMIT, what: str = "condition") -> None:
    """Wait (bounded) until predicate() is true."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)
    del what

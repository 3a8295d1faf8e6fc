"""Each component link connects to its own `port` when it has one, else to `[xmpp] port`.

Two stand-in "servers" (asyncio listeners on loopback, port 0) record the `to` of the
XEP-0114 stream header each connection opens with (XEP-0114 §3: the component names its
domain there); the links and the admin status must agree on the port.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from gateway.config import Addressing, ComponentConfig, XmppConfig
from gateway.xmpp.links import XmppLinks

pytestmark = pytest.mark.unit

SIP, GW = "sip.localhost", "gw.localhost"


class HeaderRecorder:
    """A listener that reads each connection's stream header and keeps its `to`."""

    def __init__(self) -> None:
        self.domains: list[str] = []
        self.seen = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._on_conn, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = b""
        while b">" not in data.partition(b"<stream:stream")[2]:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        m = re.search(rb'<stream:stream[^>]*\sto=["\']([^"\']+)', data)
        if m:
            self.domains.append(m.group(1).decode())
            self.seen.set()
        writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_each_component_connects_to_its_own_port() -> None:
    shared, own = HeaderRecorder(), HeaderRecorder()
    shared_port, own_port = await shared.start(), await own.start()
    cfg = XmppConfig(
        port=shared_port,
        components=(
            ComponentConfig(SIP, "s", Addressing.MIRRORED),
            ComponentConfig(GW, "t", Addressing.ESCAPED, port=own_port),
        ),
        reconnect_min=30.0,  # one attempt each within the test
        reconnect_max=30.0,
    )
    links = XmppLinks(cfg)
    # the default factory builds each GatewayComponent for its own port too
    assert (links.component(SIP).server_port, links.component(GW).server_port) == (
        shared_port,
        own_port,
    )
    try:
        await links.start()
        async with asyncio.timeout(10):
            await shared.seen.wait()
            await own.seen.wait()
        assert shared.domains == [SIP]
        assert own.domains == [GW]
        ports = {s.domain: (s.server, s.port) for s in links.status()}
        assert ports == {SIP: ("127.0.0.1", shared_port), GW: ("127.0.0.1", own_port)}
    finally:
        await links.stop()
        shared.close()
        own.close()

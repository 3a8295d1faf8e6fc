"""A real SIP-over-WebSocket client against the gateway process (issue 20): JsSIP under
Node (tests/js/jssip_peer.js) registers through the ws listener with digest, messages a
slixmpp juliet on the session Prosody both ways, and watches her presence (SUBSCRIBE
from a `.invalid` Contact: the NOTIFYs come back over its WebSocket, RFC 7118 §5).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.jssip import JsSipPeer, require_jssip
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0


def config(prosody: ProsodyServer, tmp_path: Path, udp: int, ws: int) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:romeo@{COMPONENT}", None, "romeo-pw"), ha1_sha256=None
    )
    users.write_text(format_user(romeo))  # MD5: what JsSIP answers
    users.chmod(0o600)
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [
                {"transport": "udp", "address": LOOPBACK, "port": udp},
                {
                    "transport": "ws",
                    "address": LOOPBACK,
                    "port": ws,
                    "path": "/sip",
                    "origins": ["https://app.example.com"],
                },
            ],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        admin={"enabled": False},
    )


PeerFactory = Callable[..., Awaitable[JsSipPeer]]


@pytest.fixture
async def jssip() -> AsyncIterator[PeerFactory]:
    node = require_jssip()
    peers: list[JsSipPeer] = []

    async def start(**options: Any) -> JsSipPeer:
        peer = await JsSipPeer(node, **options).start()
        peers.append(peer)
        return peer

    try:
        yield start
    finally:
        for peer in peers:
            await peer.stop()


async def test_jssip_registers_messages_juliet_both_ways_and_sees_her_presence(
    prosody: ProsodyServer,
    xmpp_client: ClientFactory,
    jssip: PeerFactory,
    tmp_path: Path,
) -> None:
    udp, ws = free_port(), free_port()
    with GatewayProcess(
        config(prosody, tmp_path, udp, ws), tmp_path / "gw", log_level="info"
    ) as gw:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        juliet = await xmpp_client(prefix="juliet")
        romeo = await jssip(
            ws=f"ws://{LOOPBACK}:{ws}/sip",
            uri=f"sip:romeo@{COMPONENT}",
            password="romeo-pw",
            origin="https://app.example.com",
        )
        registered = await romeo.wait("registered", timeout=LIMIT)
        # JsSIP takes the public GRUU (RFC 5627) the registrar gave its .invalid Contact
        assert registered["contact"].startswith(f"<sip:romeo@{COMPONENT};gr=")
        pattern = rf"registration aor=sip:romeo@{re.escape(COMPONENT)} .*source=ws:127\.0\.0\.1:"
        assert re.search(pattern, gw.log_text()), gw.tail()

        # SIP (WebSocket) -> XMPP
        text = f"wherefore art thou {secrets.token_hex(4)}"
        romeo.command("message", id="m1", to=f"sip:{juliet.jid.bare}", body=text)
        sent = await romeo.wait("sent", lambda e: e["id"] == "m1", timeout=LIMIT)
        assert sent["status"] in (200, 202)
        got = await juliet.wait_message(lambda m: str(m["body"]) == text, timeout=LIMIT)
        assert got["from"].bare == f"romeo@{COMPONENT}"

        # XMPP -> SIP: over romeo's registered WebSocket flow
        reply = f"by a name I know not how to tell thee {secrets.token_hex(4)}"
        juliet.send_message(f"romeo@{COMPONENT}", reply)
        arrived = await romeo.wait("message", lambda e: e["body"] == reply, timeout=LIMIT)
        assert arrived["from"].startswith(f"sip:{juliet.jid.user}@")
        assert "SIP/2.0/WS " in arrived["via"]

        # Presence: SUBSCRIBE from a .invalid Contact; NOTIFYs over the same connection
        romeo.command("subscribe", id="p1", to=f"sip:{juliet.jid.bare}")
        first = await romeo.wait("notify", lambda e: e["id"] == "p1", timeout=LIMIT)
        assert first["state"] is not None
        juliet.xmpp.send_presence(pshow="away", pstatus="on the balcony")
        away = await romeo.wait(
            "notify", lambda e: e["id"] == "p1" and "on the balcony" in e["body"], timeout=LIMIT
        )
        assert "<basic>open</basic>" in away["body"]
        log = gw.log_text()
        assert "websocket handshake refused" not in log
        assert "NOTIFY failed" not in log

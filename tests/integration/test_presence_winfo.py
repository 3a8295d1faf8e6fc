"""Watcher information (RFC 3857 presence.winfo, RFC 3858 documents) for a SIP user hosted
by the gateway, against real peers: the gateway PROCESS (its CLI, its config), the
session Prosody with two slixmpp users asking to watch the SIP user, and sipp as the
SIP user (`presence_winfo_uac.xml`: REGISTER, SUBSCRIBE presence.winfo, approval with a
MESSAGE "/allow" to the watcher, rejection with "/deny", refresh, unsubscribe; sipp
checks every document's version, state and watcher status).

sipp sends from 127.0.0.1, a trusted peer here, so the SIP side needs no Digest.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp, SippProcess
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ALICE = f"alice@{COMPONENT}"
LIMIT = 30.0


def gateway(prosody: ProsodyServer, tmp_path: Path, port: int, **presence: Any) -> str:
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "trusted_peers": [LOOPBACK],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        presence={"notify_interval": 0.5, **presence},
        admin={"enabled": False},
    )


def quiet(client: XmppTestClient) -> None:
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False


async def roster_item(client: XmppTestClient, jid: str) -> tuple[str, bool]:
    await client.xmpp.get_roster(timeout=LIMIT)
    item = client.xmpp.client_roster[jid]
    return item["subscription"], bool(item["pending_out"])


async def log_line(gw: GatewayProcess, pattern: str, count: int = 1) -> None:
    async with asyncio.timeout(LIMIT):
        while len(re.findall(pattern, gw.log_text())) < count:
            await asyncio.sleep(0.1)


async def sipp_saw(proc: SippProcess, text: str) -> None:
    """Wait until sipp's message trace shows `text`."""
    trace = proc.workdir / "messages.log"
    async with asyncio.timeout(LIMIT):
        while not trace.exists() or text not in trace.read_text(errors="replace"):
            await asyncio.sleep(0.1)


async def test_hosted_user_sees_approves_and_rejects_xmpp_watchers(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    port = free_port()
    gw = GatewayProcess(gateway(prosody, tmp_path, port), tmp_path / "gw", log_level="info")
    gw.start()
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        juliet = await xmpp_client(prefix="juliet")
        romeo = await xmpp_client(prefix="romeo")
        quiet(juliet)
        quiet(romeo)
        alice = SippProcess(
            "presence_winfo_uac.xml", remote=f"{LOOPBACK}:{port}", timeout=90, workdir=sipp.workdir
        )
        run = asyncio.create_task(asyncio.to_thread(alice.wait))
        await log_line(gw, r"winfo subscription")

        # juliet asks: pending, nothing to her yet; alice sees it (NOTIFY v1) and allows
        juliet.xmpp.send_presence(pto=ALICE, ptype="subscribe")
        online = await juliet.wait_presence(
            lambda p: p["from"].bare == ALICE and p.xml.get("type") is None, LIMIT
        )
        assert online["from"].resource  # one presence per registered device (RFC 8048)
        assert (await roster_item(juliet, ALICE))[0] in ("to", "both")

        # (after alice got the approval NOTIFY, so that romeo's request is a NOTIFY of its own)
        await sipp_saw(alice, 'version="2"')
        # romeo asks: alice denies -> unsubscribed, Prosody drops the pending request
        romeo.xmpp.send_presence(pto=ALICE, ptype="subscribe")
        async with asyncio.timeout(LIMIT):
            while await roster_item(romeo, ALICE) != ("none", False):
                await asyncio.sleep(0.2)
        assert not [
            p for p in romeo.presences if p["from"].bare == ALICE and p.xml.get("type") is None
        ]

        result = await run
        assert result.ok, result.describe()
        log = gw.log_text()
        assert "hosted watcher approved" in log and "reason=rejected" in log, gw.tail()
        # the approved watcher is stored for the next start (presence.records.FOREVER)
    finally:
        gw.terminate()

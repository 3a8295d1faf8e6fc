"""An XMPP user watches a SIP user hosted by the gateway's own registrar: the gateway is
the presence agent (no SUBSCRIBE goes out), and the hosted user decides.

Real peers: the gateway PROCESS (CLI, config, SQLite state), the session Prosody with a
slixmpp user, and baresip 1.0 (presence.so) as the hosted SIP user, registering with
Digest. Juliet asks to watch romeo@sip.localhost and is held pending; baresip starts
with Juliet in its contacts (`presence=p2p`), so it SUBSCRIBEs to her: that approves her
request (docs/presence.md, "Hosted users"). She then sees romeo's registered device as
available. The gateway is restarted: its stop tells Juliet romeo is unavailable, its
start shows romeo available again; the approval survives (it is in the store), so when
baresip stops (unregisters) Juliet is told romeo is unavailable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.registrar.users import format_user, hash_password
from gateway.store.sqlite import open_store
from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import account_line
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_presence_baresip import PresenceBaresip

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ROMEO = f"romeo@{COMPONENT}"
LIMIT = 30.0


def config(prosody: ProsodyServer, tmp_path: Path, port: int) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(hash_password(f"sip:{ROMEO}", None, "romeo"), ha1_sha256=None)
    users.write_text(format_user(romeo))  # MD5 only: baresip 1.0 cannot answer SHA-256
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
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        presence={"notify_interval": 0.5},
        admin={"enabled": False},
    )


async def roster_item(client: XmppTestClient) -> tuple[str, bool]:
    await client.xmpp.get_roster(timeout=LIMIT)
    item = client.xmpp.client_roster[ROMEO]
    return item["subscription"], bool(item["pending_out"])


def ptype(stanza: Any) -> str:
    return stanza.xml.get("type") or "available"


async def log_line(gw: GatewayProcess, text: str) -> None:
    """Wait for a gateway log line without blocking the loop (the XMPP client runs on it)."""
    async with asyncio.timeout(LIMIT):
        while text not in gw.log_text():
            await asyncio.sleep(0.1)


def start(conf: str, workdir: Path) -> GatewayProcess:
    gw = GatewayProcess(conf, workdir, log_level="info")
    gw.start()
    gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
    return gw


async def test_hosted_user_approves_by_subscribing_back_and_it_survives_a_restart(
    prosody: ProsodyServer,
    xmpp_account: object,
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    require_binary("baresip")
    port = free_port()
    conf = config(prosody, tmp_path, port)
    gw = start(conf, tmp_path / "gw-1")
    bs: PresenceBaresip | None = None
    try:
        acct: Account = xmpp_account("juliet")  # type: ignore[operator]
        juliet = await xmpp_client(acct)
        juliet.xmpp.auto_authorize = None
        juliet.xmpp.auto_subscribe = False
        juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribe")
        await log_line(gw, "hosted watcher asks")
        assert (await roster_item(juliet)) == ("none", True)  # held pending

        bs = PresenceBaresip(
            tmp_path / "baresip",
            account=account_line(f"sip:{ROMEO}", "romeo", (LOOPBACK, port), regint=600),
            contact_lines=[f'"Juliet" <sip:{acct.jid}>;presence=p2p'],
        )
        await bs.start()
        # baresip registers and subscribes to Juliet: that approves her request
        online = await juliet.wait_presence(
            lambda p: p["from"].bare == ROMEO and ptype(p) == "available", LIMIT
        )
        assert online["from"].resource  # the registered device (registrar resource)
        assert (await roster_item(juliet))[0] in ("to", "both")
        await log_line(gw, "hosted watcher approved")
        # the S2X side works too: baresip's subscription asks Juliet
        await juliet.wait_presence(
            lambda p: ptype(p) == "subscribe" and p["from"].bare == ROMEO, LIMIT
        )

        gw.terminate()
        store = open_store(tmp_path / "state")
        try:
            x2s = [r for r in store.all_subscriptions() if r.direction == "x2s"]
        finally:
            store.close()
        # one stored approval, and no X2S dialog: no SUBSCRIBE went to romeo
        assert [(r.call_id, r.state, r.xmpp_authorization) for r in x2s] == [
            (f"hosted:{acct.jid}", "active", "to")
        ]
        # the stop told Juliet romeo is unavailable (clean departure, docs/presence.md)
        await juliet.wait_presence(
            lambda p: p["from"].bare == ROMEO and ptype(p) == "unavailable", LIMIT
        )
        gw = start(conf, tmp_path / "gw-2")
        await log_line(gw, "presence subscriptions restored")
        # and the restart shows it again (binding restored, approval restored)
        seen = {id(p) for p in juliet.presences}
        await juliet.wait_presence(
            lambda p: p["from"].bare == ROMEO and ptype(p) == "available" and id(p) not in seen,
            LIMIT,
        )
        seen = {id(p) for p in juliet.presences}
        await bs.stop()  # unregisters: the restored approval delivers the change
        bs = None
        await juliet.wait_presence(
            lambda p: p["from"].bare == ROMEO and ptype(p) == "unavailable" and id(p) not in seen,
            LIMIT,
        )
        assert "hosted watcher asks" not in gw.log_text()  # nobody asked again
    finally:
        if bs is not None:
            await bs.stop()
        if gw.running:
            gw.terminate()

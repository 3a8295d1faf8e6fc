"""A real SIP user agent (headless baresip, tests/harness/baresip.py) and a real XMPP client
exchange pager-mode messages through the gateway process, with the session Prosody.

baresip registers with Digest (no trusted peers), so the SIP -> XMPP message is authorised
by the registrar's trust gate and the XMPP -> SIP message travels over the registered flow.
The pager-specific checks: non-ASCII text both ways, the fate lines with the ids of both
sides, and a message for a SIP user with no registration stored and delivered when he
registers (issue 17, docs/offline.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.baresip import Baresip, account_line
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory
from tests.integration.test_pager import see_all_messages, text_of

pytestmark = pytest.mark.asyncio

COMPONENT = "sip.localhost"
LIMIT = 30.0


@pytest.fixture
async def setup(
    prosody: ProsodyServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, int, Baresip]]:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(hash_password(f"romeo@{COMPONENT}", None, "romeo"), ha1_sha256=None)
    users.write_text(format_user(romeo))  # MD5 only: baresip 1.0 cannot answer SHA-256
    users.chmod(0o600)
    port = free_port()
    config = gateway_config(
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
        admin={"enabled": False},
    )
    gw = GatewayProcess(config, tmp_path / "gateway", log_level="info")
    await asyncio.to_thread(gw.start)
    ua: Baresip | None = None
    try:
        await asyncio.to_thread(gw.wait_for_log, rf"xmpp link {re.escape(COMPONENT)} up", LIMIT)
        ua = Baresip(tmp_path / "baresip", contacts=())
        yield gw, port, ua
    finally:
        if ua is not None:
            await ua.stop()
        if gw.running:
            gw.kill()


async def fate(gw: GatewayProcess, pattern: str) -> str:
    found = await asyncio.to_thread(
        gw.wait_for_log, r"gateway\.bridge\.pager: message " + pattern + r".*", LIMIT
    )
    return found.group(0)


async def test_baresip_and_xmpp_client_exchange_non_ascii_messages(
    setup: tuple[GatewayProcess, int, Baresip], xmpp_client: ClientFactory
) -> None:
    gw, port, romeo = setup
    juliet = see_all_messages(await xmpp_client(prefix="juliet"))
    juliet_sip = f"sip:{juliet.jid.bare}"
    romeo.contacts.append(juliet_sip)
    await romeo.start()

    # before romeo registers, a message for him is stored (issue 17, docs/offline.md):
    # no error, a headline notice, and delivery when he registers
    juliet.send_message(f"romeo@{COMPONENT}", "are you there?", mtype="normal")
    notice = await juliet.wait_message(lambda m: m["type"] == "headline", timeout=LIMIT)
    assert "message stored" in text_of(notice)
    await fate(gw, r"direction=xmpp_to_sip fate=stored")

    outcome = await romeo.register(
        account_line(f"sip:romeo@{COMPONENT}", "romeo", (LOOPBACK, port))
    )
    assert outcome["type"] == "REGISTER_OK", f"{romeo.tail()}\n{gw.tail()}"
    await romeo.wait_message("are you there?", timeout=LIMIT)
    await asyncio.to_thread(gw.wait_for_log, r"stored message delivered", LIMIT)
    assert not [m for m in juliet.messages if m["type"] == "error"]

    text = "Wherefore art thou — Romeo? Příliš žluťoučký"
    juliet.send_message(f"romeo@{COMPONENT}", text, mtype="normal")
    got = await romeo.wait_message(text, timeout=LIMIT)
    assert got.peer.startswith(juliet_sip)
    line = await fate(gw, r"direction=xmpp_to_sip fate=delivered status=200")
    assert "call_id=" in line and "stanza_id=" in line

    reply = "By a name I know not how to tell thee — ů"
    await romeo.send_message(juliet_sip, reply)
    stanza = await juliet.wait_message(lambda m: text_of(m) == reply, timeout=LIMIT)
    assert str(stanza["from"]).startswith(f"romeo@{COMPONENT}")
    line = await fate(
        gw, rf"direction=sip_to_xmpp fate=delivered status=200 .*stanza_id={stanza['id']}"
    )
    call_id = re.search(r"call_id=(\S+)", line)
    assert call_id is not None and stanza["thread"] == call_id.group(1)  # Call-ID -> thread

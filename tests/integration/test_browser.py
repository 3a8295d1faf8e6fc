"""The browser demo page in a real browser: Debian's chromium, headless, driven through
Playwright (tests/harness/browser.py), loads web/demo from the gateway's own /web/
route, and JsSIP in it talks SIP over the gateway's WebSocket listener (RFC 7118) to
a slixmpp juliet on the session Prosody:

* it registers as romeo (Digest) over the WebSocket;
* a MESSAGE typed in the page reaches juliet; hers arrives in the page (DOM text),
  and a screenshot of the page then is kept in tests/artifacts/;
* its SUBSCRIBE to juliet's presence is approved by her, and the page shows her
  available, then away with her note, then offline, from the NOTIFYs' PIDF;
* the page loads nothing from outside the gateway (the harness aborts and records
  any request off loopback; none is made).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.browser import Browser, demo_web_root, screenshot
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ROMEO = f"romeo@{COMPONENT}"
LIMIT = 30.0
MS = int(LIMIT * 1000)


@dataclass(frozen=True)
class Demo:
    gw: GatewayProcess
    page_url: str  # the demo page on the gateway's admin listener
    ws_url: str  # the gateway's SIP-over-WebSocket listener


@pytest.fixture
async def demo(prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[Demo]:
    web_root = demo_web_root()
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(hash_password(ROMEO, None, "romeo"), ha1_sha256=None)
    users.write_text(format_user(romeo))  # JsSIP answers MD5 Digest
    users.chmod(0o600)
    admin_port, ws_port = free_port(), free_port()
    origin = f"http://{LOOPBACK}:{admin_port}"
    config = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [
                {"transport": "udp", "address": LOOPBACK, "port": free_port()},
                {
                    "transport": "ws",
                    "address": LOOPBACK,
                    "port": ws_port,
                    "path": "/",
                    "origins": [origin],
                },
            ],
        },
        registrar={"users_file": str(users)},
        admin={"listen": f"{LOOPBACK}:{admin_port}", "web_root": str(web_root)},
    )
    gw = GatewayProcess(config, tmp_path / "gateway", log_level="info")
    await asyncio.to_thread(gw.start)
    try:
        await asyncio.to_thread(gw.wait_for_log, rf"xmpp link {re.escape(COMPONENT)} up", LIMIT)
        yield Demo(gw, f"{origin}/web/", f"ws://{LOOPBACK}:{ws_port}/")
    finally:
        if gw.running:
            gw.kill()


async def test_jssip_in_chromium_chats_with_juliet_and_sees_her_presence(
    demo: Demo, xmpp_client: ClientFactory
) -> None:
    juliet = await xmpp_client(prefix="juliet")
    juliet.xmpp.auto_authorize = None  # she approves romeo's subscription herself
    juliet.xmpp.auto_subscribe = False
    peer = juliet.jid.bare
    query = urlencode(
        {
            "ws": demo.ws_url,
            "uri": f"sip:{ROMEO}",
            "password": "romeo",
            "peer": f"sip:{peer}",
            "auto": "1",
        }
    )
    async with Browser() as browser:
        page = await browser.page()
        try:
            await page.goto(f"{demo.page_url}?{query}")
            await page.wait_for_selector("#status[data-state='registered']", timeout=MS)

            # romeo's SUBSCRIBE reaches juliet as a subscription request; she approves.
            await juliet.wait_presence(
                lambda p: p.xml.get("type") == "subscribe" and p["from"].bare == ROMEO, LIMIT
            )
            juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribed")
            await page.wait_for_selector("#presence[data-status='available']", timeout=MS)

            # page -> juliet
            await page.fill("#text", "But soft, what light through yonder window breaks?")
            await page.click("#send-button")
            got = await juliet.wait_message(
                lambda m: m["body"] == "But soft, what light through yonder window breaks?",
                LIMIT,
            )
            assert got["from"].bare == ROMEO
            await page.wait_for_selector("#log li.out.delivered", timeout=MS)

            # juliet -> page
            juliet.send_message(ROMEO, "Wherefore art thou, Romeo?")
            await page.wait_for_selector("#log li.in", timeout=MS)
            shot = await screenshot(page, "browser-demo-message")
            assert shot.stat().st_size > 5_000
            log_text = await page.inner_text("#log")
            assert "Wherefore art thou, Romeo?" in log_text
            assert "But soft, what light through yonder window breaks?" in log_text
            assert await page.inner_text("#log li.in .who") == peer

            # juliet's presence changes: away with a note, then offline.
            juliet.xmpp.send_presence(pshow="away", pstatus="on the balcony")
            await page.wait_for_selector("#presence[data-status='away']", timeout=MS)
            assert await page.inner_text("#presence-note") == "on the balcony"
            juliet.xmpp.send_presence(ptype="unavailable")
            await page.wait_for_selector("#presence[data-status='offline']", timeout=MS)
            await screenshot(page, "browser-demo-offline")
        except Exception:
            print(f"browser console:\n{browser.console_tail()}\ngateway:\n{demo.gw.tail(80)}")
            raise
    assert browser.blocked == [], browser.blocked
    assert not [c for c in browser.console if c.startswith("pageerror")], browser.console_tail()

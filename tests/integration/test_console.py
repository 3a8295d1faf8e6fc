"""The operator console of a running gateway in a real browser (issue 26).

A gateway process on the session Prosody, with an admin token and console actions on;
sipp registers mercutio and sends a MESSAGE to juliet (a slixmpp client); Debian's
chromium, headless through Playwright (tests/harness/browser.py), opens /console/, is
refused data until the token is entered, then shows the component link up, mercutio's
registration and the message's fate; a screenshot is kept in tests/artifacts/console.png.
Clicking the SIP wire-trace button switches the trace on, as GET /trace then says.
A second test approves a hosted user's pending authorization through the console API
and drains the gateway with its drain action (exit 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.browser import Browser, screenshot
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_admin_running import (
    COMPONENT,
    REGISTER_UAC,
    TOKEN,
    Admin,
    send_message,
)

pytestmark = pytest.mark.integration

MS = 20_000


async def test_console_shows_links_registration_and_fate_and_switches_the_trace(
    gateway: Callable[..., GatewayProcess],
    xmpp_client: ClientFactory,
    sipp: Sipp,
    tmp_path: Path,
) -> None:
    proc = gateway(
        sip={"trusted_peers": ["127.0.0.1"]},
        admin={"token": TOKEN, "console_actions": True, "console_fates": 50},
    )
    admin = Admin(proc)
    await admin.wait_ready()
    juliet = await xmpp_client(prefix="juliet")

    scenario = tmp_path / "register.xml"
    scenario.write_text(REGISTER_UAC, encoding="utf-8")
    csv = tmp_path / "register.csv"
    csv.write_text(f"SEQUENTIAL\n{COMPONENT};mercutio\n", encoding="utf-8")
    registered = await asyncio.to_thread(
        sipp.run,
        scenario,
        remote=f"{LOOPBACK}:{admin.sip_port}",
        extra_args=["-inf", str(csv)],
        timeout=20,
    )
    assert registered.ok, registered.describe()
    sent = await send_message(sipp, admin, f"sip:{juliet.jid.bare}", "console probe")
    assert sent.ok, sent.describe()
    await juliet.wait_message(lambda m: m["body"].strip() == "console probe", timeout=15)

    async with Browser() as browser:
        page = await browser.page(viewport=(1280, 900))
        try:
            await page.goto(f"{admin.url}/console/")
            # no token yet: the stream is refused and the page asks for one
            await page.wait_for_selector("#status[data-state='unauthorized']", timeout=MS)
            assert await page.is_hidden("#console")
            await page.fill("#token", TOKEN)
            await page.click("#connect")
            await page.wait_for_selector("#status[data-state='live']", timeout=MS)

            link = page.locator("#links tbody tr", has_text=COMPONENT)
            await link.wait_for(timeout=MS)
            assert "up" in await link.inner_text()
            reg = page.locator("#registrations tbody tr", has_text=f"sip:mercutio@{COMPONENT}")
            await reg.wait_for(timeout=MS)
            assert "sip:mercutio@127.0.0.1:" in await reg.inner_text()
            assert "udp" in await reg.inner_text()
            listener = page.locator("#listeners tbody tr", has_text="udp")
            await listener.wait_for(timeout=MS)

            fate = page.locator("#fates tbody tr[data-fate='delivered']", has_text="sip_to_xmpp")
            await fate.wait_for(timeout=MS)
            text = await fate.inner_text()
            assert f"romeo@{COMPONENT}" in text and str(juliet.jid.bare) in text
            assert "200" in text

            # the filter narrows the list on the server (/console/api/fates)
            await page.select_option("#f-fate", "rejected")
            await page.wait_for_selector("#fates tbody tr", state="detached", timeout=MS)
            await page.select_option("#f-fate", "")
            await fate.wait_for(timeout=MS)
            await screenshot(page, "console")

            # an action: the SIP wire trace on, then off again
            assert (await admin.get("/trace"))[1] == {"sip": False, "xmpp": False}
            await page.wait_for_selector("#trace-sip[data-on='false']:enabled", timeout=MS)
            await page.click("#trace-sip")
            await page.wait_for_selector("#trace-sip[data-on='true']", timeout=MS)
            assert (await admin.get("/trace"))[1] == {"sip": True, "xmpp": False}
            await page.click("#trace-sip")
            await page.wait_for_selector("#trace-sip[data-on='false']", timeout=MS)
            assert (await admin.get("/trace"))[1] == {"sip": False, "xmpp": False}
        except Exception:
            print("page:", await page.inner_text("main"))
            print("fates:", await admin.get("/console/api/fates"))
            print(f"browser console:\n{browser.console_tail()}\ngateway:\n{proc.tail(80)}")
            raise
    proc.wait_for_log(r"console action .*action=trace .*sip=True")
    assert browser.blocked == [], browser.blocked
    assert not [c for c in browser.console if c.startswith("pageerror")], browser.console_tail()


async def test_console_approves_a_pending_hosted_authorization_then_drains(
    prosody: ProsodyServer,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    """Juliet asks to watch romeo, a user hosted by the gateway: the console lists her
    request as pending; its authorization action approves it as romeo's `/allow` would
    (her roster then shows the subscription); its drain action stops the gateway like SIGTERM."""
    users = tmp_path / "users.toml"
    romeo = f"romeo@{COMPONENT}"
    users.write_text(format_user(hash_password(f"sip:{romeo}", None, "romeo")))
    users.chmod(0o600)
    proc = GatewayProcess(
        gateway_config(
            gateway={"state_dir": str(tmp_path / "state")},
            xmpp={
                "port": prosody.component_port,
                "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
            },
            sip={
                "hosted_domains": [COMPONENT],
                "served_xmpp_domains": [prosody.domain],
                "listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}],
            },
            registrar={"users_file": str(users)},
            admin={
                "listen": f"{LOOPBACK}:{free_port()}",
                "token": TOKEN,
                "console_actions": True,
            },
        ),
        tmp_path / "gateway",
        log_level="info",
    )
    await asyncio.to_thread(proc.start)
    try:
        admin = Admin(proc)
        await admin.wait_ready()
        acct = xmpp_account("juliet")
        juliet = await xmpp_client(acct)
        juliet.xmpp.auto_authorize = None
        juliet.xmpp.auto_subscribe = False
        juliet.xmpp.send_presence(pto=romeo, ptype="subscribe")
        pending: list[dict[str, str]] = []
        async with asyncio.timeout(20):
            while not pending:
                status, snap = await admin.get("/console/api/state")
                assert status == 200
                pending = snap["pending"]
                await asyncio.sleep(0.2)
        watcher = str(juliet.jid.bare)
        assert pending == [{"aor": f"sip:{romeo}", "watcher": watcher}]

        allow = {"aor": f"sip:{romeo}", "watcher": watcher, "verdict": "allow"}
        status, body = await admin.post("/console/api/actions/authorization", allow)
        assert (status, body) == (200, allow)
        async with asyncio.timeout(20):  # her roster now has a subscription to romeo
            while True:
                await juliet.xmpp.get_roster(timeout=20)
                if juliet.xmpp.client_roster[romeo]["subscription"] in ("to", "both"):
                    break
                await asyncio.sleep(0.2)
        assert (await admin.get("/console/api/state"))[1]["pending"] == []
        proc.wait_for_log(r"console action .*action=authorization .*verdict=allow")

        status, body = await admin.post("/console/api/actions/drain", {"confirm": True})
        assert (status, body) == (200, {"draining": True})
        async with asyncio.timeout(30):
            while proc.running:
                await asyncio.sleep(0.1)
        assert proc.returncode == 0
        assert "shutting down" in proc.log_text()
    except Exception:
        print(proc.tail(60))
        raise
    finally:
        if proc.running:
            proc.kill()

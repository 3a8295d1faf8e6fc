"""Presence with baresip (Debian 1.0, module presence.so) as a real SIP user agent.

* baresip as watcher: its contact `<sip:juliet@localhost>;presence=p2p` is subscribed
  through the gateway (the account's outbound proxy); the Prosody user approves; baresip
  reports "Online" from the NOTIFY's PIDF, then "Offline" when the user goes away.
* baresip as notifier: a Prosody user subscribes to erin@sip.localhost; the gateway's
  SUBSCRIBE reaches baresip by a static route; `presence_offline` / `presence_online`
  on baresip turn into unavailable / available presence for the Prosody user.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LOOPBACK
from tests.harness.baresip import Baresip
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import Account, ClientFactory
from tests.integration.presence_rig import LIMIT, Rig, start_rig

pytestmark = pytest.mark.integration

ERIN = "erin@sip.localhost"


class PresenceBaresip(Baresip):
    """The harness's baresip plus presence.so, one account known at start, and contacts
    with parameters (presence=p2p)."""

    def __init__(self, workdir: Path, *, account: str, contact_lines: list[str]) -> None:
        super().__init__(workdir)
        self.account = account
        self.contact_lines = contact_lines

    def _write_config(self, ctrl_port: int, cons_port: int) -> Path:
        conf = super()._write_config(ctrl_port, cons_port)
        with (conf / "config").open("a") as f:
            f.write("module_app\tpresence.so\n")
        (conf / "accounts").write_text(self.account + "\n")
        (conf / "contacts").write_text("".join(line + "\n" for line in self.contact_lines))
        return conf

    async def wait_status(self, old: str, new: str, timeout: float = LIMIT) -> None:
        """baresip's contact line "<uri> changed status from Old to New" (ANSI colours)."""
        rx = re.compile(rf"changed status from \S*{old}\S* to \S*{new}")

        def check() -> bool | None:
            return True if rx.search(self.console) or rx.search(self.log_text()) else None

        await self._until(check, timeout, f"status {old} -> {new}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@pytest.fixture
async def rig_and_port(prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[Any]:
    holder: dict[str, Any] = {}

    async def make(routes: dict[str, str] | None = None) -> Rig:
        rig = await start_rig(prosody, tmp_path / "state", holder["port"], routes=routes)
        holder["rig"] = rig
        return rig

    holder["port"] = free_port()
    holder["make"] = make
    try:
        yield holder
    finally:
        if "rig" in holder:
            await holder["rig"].stop()


async def test_baresip_watches_an_xmpp_user(
    rig_and_port: Any,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    juliet.xmpp.auto_authorize = None
    juliet.xmpp.auto_subscribe = False
    port = rig_and_port["port"]
    await rig_and_port["make"]()
    account = f'<sip:{ERIN}>;outbound="sip:{LOOPBACK}:{port}";regint=0'
    bs = PresenceBaresip(
        tmp_path / "baresip",
        account=account,
        contact_lines=[f'"Juliet" <sip:{acct.jid}>;presence=p2p'],
    )
    await bs.start()
    try:
        await juliet.wait_presence(
            lambda p: p.xml.get("type") == "subscribe" and p["from"] == ERIN, LIMIT
        )
        juliet.xmpp.send_presence(pto=ERIN, ptype="subscribed")
        await bs.wait_status("Offline", "Online")
        juliet.xmpp.send_presence(ptype="unavailable")
        await bs.wait_status("Online", "Offline")
    finally:
        await bs.stop()


async def test_baresip_is_watched_by_an_xmpp_user(
    rig_and_port: Any, xmpp_client: ClientFactory, tmp_path: Path
) -> None:
    bs = PresenceBaresip(
        tmp_path / "baresip",
        account=f"<sip:{ERIN}>;regint=0",
        contact_lines=[],
    )
    await bs.start()
    try:
        rig = await rig_and_port["make"]({"sip.localhost": f"sip:{LOOPBACK}:{bs.sip_port}"})
        juliet = await xmpp_client(prefix="juliet")
        juliet.xmpp.auto_authorize = None
        juliet.xmpp.send_presence(pto=ERIN, ptype="subscribe")
        online = await juliet.wait_presence(
            lambda p: p["from"].bare == ERIN and p.xml.get("type") is None, LIMIT
        )
        assert online is not None
        await bs.command("presence_offline")
        await juliet.wait_presence(
            lambda p: p["from"].bare == ERIN and p.xml.get("type") == "unavailable", LIMIT
        )
        await bs.command("presence_online")
        await juliet.wait_presence(
            lambda p: p["from"].bare == ERIN and p.xml.get("type") is None, LIMIT
        )
        assert rig.service.x2s.subs
    finally:
        await bs.stop()

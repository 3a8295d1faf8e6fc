"""Call activity of a hosted SIP user in XMPP presence (RFC 4235, RFC 4480;
docs/call-activity.md), against real peers: the gateway PROCESS, the session Prosody with
a slixmpp watcher, and sipp as alice's devices.

* PUBLISH (`call_activity_publish_uac.xml`): alice publishes "Working"; a dialog-info
  PUBLISH with a confirmed dialog makes Juliet see dnd "On the phone (Working)"; the
  terminated dialog gives back exactly the presence she had; RPID <on-the-phone/> in the
  PIDF does the same. A malformed and a hostile dialog-info get 400, an unknown event 489.
* The gateway subscribes (`call_activity_register_uac.xml` registers a device with
  Allow-Events: dialog whose Contact is the sipp UAS `call_activity_dialog_uas.xml`):
  the UAS's NOTIFYs (confirmed, then terminated) show and end the call; its hostile
  NOTIFY gets 400.
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
from tests.harness.sipp import Sipp
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ALICE = f"alice@{COMPONENT}"
LIMIT = 30.0
CALL = ("dnd", "On the phone (Working)")
WORKING = (None, "Working")


def config(prosody: ProsodyServer, tmp_path: Path, port: int) -> str:
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
        presence={"auto_approve_hosted": True},
        admin={"enabled": False},
    )


def shown(p: Any) -> tuple[str | None, str | None]:
    return p["show"] or None, p["status"] or None


def states(client: XmppTestClient) -> list[tuple[str | None, str | None]]:
    """Alice's available presences as Juliet received them, repeats collapsed."""
    out: list[tuple[str | None, str | None]] = []
    for p in client.presences:
        if p["from"].bare != ALICE or p.xml.get("type") is not None:
            continue
        if not out or out[-1] != shown(p):
            out.append(shown(p))
    return out


async def seen(client: XmppTestClient, expected: list[Any]) -> None:
    async with asyncio.timeout(LIMIT):
        while expected != states(client)[-len(expected) :]:
            await asyncio.sleep(0.1)


async def watcher(xmpp_client: ClientFactory) -> XmppTestClient:
    juliet = await xmpp_client(prefix="juliet")
    juliet.xmpp.auto_authorize = None
    juliet.xmpp.auto_subscribe = False
    juliet.xmpp.send_presence(pto=ALICE, ptype="subscribe")
    # approved (auto_approve_hosted): the unregistered alice is shown unavailable
    await juliet.wait_presence(
        lambda p: p["from"].bare == ALICE and p.xml.get("type") == "unavailable", LIMIT
    )
    return juliet


def start(prosody: ProsodyServer, tmp_path: Path, port: int) -> GatewayProcess:
    gw = GatewayProcess(config(prosody, tmp_path, port), tmp_path / "gw", log_level="info")
    gw.start()
    gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
    return gw


async def test_published_dialogs_and_rpid_show_the_call_and_restore_the_presence(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    port = free_port()
    gw = start(prosody, tmp_path, port)
    try:
        juliet = await watcher(xmpp_client)
        result = await asyncio.to_thread(
            sipp.run, "call_activity_publish_uac.xml", remote=f"{LOOPBACK}:{port}",
            timeout=60,
        )  # fmt: skip
        assert result.ok, result.describe()
        await seen(juliet, [WORKING, CALL, WORKING, CALL, WORKING])
        mine = [
            p for p in juliet.presences if p["from"].bare == ALICE and p.xml.get("type") is None
        ]
        before = next(p for p in mine if shown(p) == WORKING)
        during = next(p for p in mine if shown(p) == CALL)
        after = mine[-1]
        # the pre-call presence, exactly: resource, show, status with its language, priority
        for p in (during, after):
            assert p["from"] == before["from"] and p["priority"] == before["priority"]
        assert after.xml.find("{jabber:client}status").get(
            "{http://www.w3.org/XML/1998/namespace}lang"
        ) == before.xml.find("{jabber:client}status").get(
            "{http://www.w3.org/XML/1998/namespace}lang"
        )
        assert shown(after) == shown(before)
        log = gw.log_text()
        assert len(re.findall(r"publication refused .*status=400", log)) == 2, gw.tail()
        assert re.search(r"publication refused .*status=489", log), gw.tail()
    finally:
        gw.terminate()


async def test_gateway_subscribes_to_a_device_that_offers_its_dialogs(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    port = free_port()
    gw = start(prosody, tmp_path, port)
    try:
        juliet = await watcher(xmpp_client)
        # One UDP port plays the device: the REGISTER leaves from it (the flow the
        # gateway's SUBSCRIBE goes back over, RFC 5626 §5.3), then the UAS listens on it
        # and catches the SUBSCRIBE's retransmission (Timer E).
        device = free_port()
        reg = await asyncio.to_thread(
            sipp.run, "call_activity_register_uac.xml", remote=f"{LOOPBACK}:{port}",
            local_port=device, keys={"device": f"{LOOPBACK}:{device}", "expires": "600"},
        )  # fmt: skip
        assert reg.ok, reg.describe()
        with sipp.uas("call_activity_dialog_uas.xml", local_port=device, timeout=60) as uas:
            # registered without PUBLISH: available (registrar.available_without_publish)
            await seen(juliet, [(None, None), ("dnd", "On the phone"), (None, None)])
            result = await asyncio.to_thread(uas.wait)
            assert result.ok, result.describe()
        log = gw.log_text()
        assert "dialog subscription aor=sip:alice@sip.localhost" in log, gw.tail()
        assert re.search(r"dialog NOTIFY refused .*status=400", log), gw.tail()
        assert re.search(r"dialog subscription ended .*reason=noresource", log), gw.tail()
    finally:
        gw.terminate()

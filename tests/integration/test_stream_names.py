"""Hostile XML names over the XMPP stream (issue 12): memory stays bounded, nothing is lost.

An XMPP user sends the gateway messages whose extension payload carries thousands of
fresh element and attribute names each; Prosody relays them unchanged over the component
stream. Without a bound the stream parser would keep every name for the stream's life
(~250 bytes each, gateway/xmpp/component.py NAME_LIMIT). Here: the parser is renewed,
the link stays up, every message reaches the SIP side exactly once, and the gateway's
live Python blocks stay within a bound that the names alone would pass several times.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.soak import LeanUas, RawXmpp, scrape
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.prosody import ProsodyServer
from tests.integration.test_faults import COMPONENT, admin_of, config_for, own_prosody, until

pytestmark = pytest.mark.integration
__all__ = ["own_prosody"]  # the fixture, re-used

StartGateway = Callable[..., GatewayProcess]
MESSAGES = 60
NAMES_PER_MESSAGE = 4000  # element + attribute names, two per child: 240,000 in all


def hostile(seq: int) -> str:
    children = "".join(f"<e{seq}x{j} a{seq}x{j}='1'/>" for j in range(NAMES_PER_MESSAGE // 2))
    return (
        f"<message type='chat' id='h{seq}' to='romeo{seq % 5}@{COMPONENT}'>"
        f"<body>names seq={seq}</body><x xmlns='urn:test:junk:{seq % 3}'>{children}</x>"
        "</message>"
    )


async def test_fresh_names_do_not_grow_the_gateway(
    own_prosody: ProsodyServer, gateway: StartGateway, tmp_path: Path
) -> None:
    sip = await LeanUas().start()
    gw = gateway(config_for(own_prosody, tmp_path / "state", route_port=sip.port))
    gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
    admin = admin_of(gw)
    names = ("cpim_python_allocated_blocks", "cpim_component_reconnects")
    errors: list[str] = []

    def on_nurse(_c: RawXmpp, elem: object) -> None:
        if getattr(elem, "get", None) and elem.get("type") == "error":  # type: ignore[attr-defined]
            errors.append(elem.get("id", ""))  # type: ignore[attr-defined]

    nurse = RawXmpp(own_prosody.c2s_port, "nurse@localhost", "pw", on_stanza=on_nurse)
    await nurse.start()
    try:
        # warm-up: one plain message through the whole path, then the baseline
        nurse.send(
            f"<message type='chat' id='w' to='romeo@{COMPONENT}'><body>seq=1000</body></message>"
        )
        await until(lambda: 1000 in sip.deliveries, 30)
        await asyncio.sleep(1.0)
        before = await scrape(admin, names)
        for seq in range(MESSAGES):
            assert nurse.send(hostile(seq))
            await asyncio.sleep(0.05)  # separate reads, as a real stream would have them
        await until(lambda: all(s in sip.deliveries for s in range(MESSAGES)), 90)
        await asyncio.sleep(1.0)
        after = await scrape(admin, names)
        # after the flood, ordinary traffic still flows on the same link
        nurse.send(
            f"<message type='chat' id='z' to='romeo@{COMPONENT}'><body>seq=1001</body></message>"
        )
        await until(lambda: 1001 in sip.deliveries, 30)
    finally:
        await nurse.stop()
        sip.close()

    grown = after["cpim_python_allocated_blocks"] - before["cpim_python_allocated_blocks"]
    renewals = len(re.findall(r"XMPP stream parser renewed", gw.log_text()))
    print(
        f"{MESSAGES * NAMES_PER_MESSAGE} fresh names: {renewals} parser renewals, "
        f"Python blocks {before['cpim_python_allocated_blocks']:.0f} -> "
        f"{after['cpim_python_allocated_blocks']:.0f} ({grown:+.0f})"
    )
    assert errors == []
    assert all(len(sip.deliveries[s]) == 1 for s in range(MESSAGES)), "a duplicate at SIP"
    # renewed each time the limit (10,000) was passed, at the next stanza
    assert renewals >= MESSAGES * NAMES_PER_MESSAGE // (10_000 + NAMES_PER_MESSAGE) - 1
    # every kept name costs two Python objects at least: 240,000 names kept would be
    # 480,000+ blocks; the bound is the limit's worth (10,000 names) with room for noise
    assert grown < 100_000, grown
    assert after.get("cpim_component_reconnects", 0) == before.get("cpim_component_reconnects", 0)
    assert gw.running

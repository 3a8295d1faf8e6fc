"""Clean departures and returns (issue 22 item 5): XMPP rosters never keep a bridged
contact "online" across a gateway stop, and get it back after the restart.

Real peers: the gateway PROCESS (SIGTERM drain, SQLite state kept between runs), the
session Prosody with a slixmpp Juliet, and baresip as romeo, a SIP user hosted by the
gateway's registrar (it approves Juliet by subscribing to her, as in
test_presence_hosted.py). Juliet sees romeo available; SIGTERM -> Juliet is told
`unavailable`, and the gateway logs that the server confirmed it before the link closed;
the gateway starts again over the same state -> romeo's binding is restored from the
store and Juliet sees romeo available again, with nobody asking anything again.

A watcher who only got a probe answer: Juliet's roster holds bob (a remote SIP user,
sipp) from an earlier gateway; a gateway with an empty store answers the probe her server
sends at login with a fetch (R8048-19). It holds no subscription for her, yet its stop
tells her bob is unavailable (the in-process presence rig of test_presence_outcomes.py).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import account_line
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import Account, ClientFactory
from tests.integration.presence_rig import start_rig, until
from tests.integration.test_presence_baresip import PresenceBaresip
from tests.integration.test_presence_hosted import LIMIT, ROMEO, config, log_line, ptype, start
from tests.integration.test_presence_outcomes import BOB, from_bob, quiet, wait_sipp

pytestmark = pytest.mark.integration


def from_romeo(kind: str, seen: set[int]) -> Any:
    """A presence from romeo of `kind` that arrived after the ones in `seen`."""
    return lambda p: p["from"].bare == ROMEO and ptype(p) == kind and id(p) not in seen


async def test_stop_makes_contacts_unavailable_and_restart_shows_them_again(
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
        bs = PresenceBaresip(
            tmp_path / "baresip",
            account=account_line(f"sip:{ROMEO}", "romeo", (LOOPBACK, port), regint=600),
            contact_lines=[f'"Juliet" <sip:{acct.jid}>;presence=p2p'],
        )
        await bs.start()
        online = await juliet.wait_presence(from_romeo("available", set()), LIMIT)
        device = online["from"].resource
        assert device

        # SIGTERM (drain) while Juliet's client keeps running on this loop
        assert await asyncio.to_thread(gw.terminate) == 0
        gone = await juliet.wait_presence(from_romeo("unavailable", set()), LIMIT)
        assert gone["from"].resource == device  # the resource that was shown available
        text = gw.log_text()
        confirmed = re.search(r"departures sent .*domain=sip\.localhost.*count=1", text)
        assert confirmed is not None, gw.tail()
        # confirmed by the server (a ping behind it answered) before the link closed
        assert confirmed.start() < text.index("stopped")
        seen = {id(p) for p in juliet.presences}

        # restart over the same state: romeo's binding and Juliet's approval come back
        gw = start(conf, tmp_path / "gw-2")
        back = await juliet.wait_presence(from_romeo("available", seen), LIMIT)
        assert back["from"].resource == device
        assert "hosted watcher asks" not in gw.log_text()  # nobody asked again

        # a probe from Juliet's server (RFC 6121 §4.3) is answered with the same state
        seen = {id(p) for p in juliet.presences}
        juliet.xmpp.send_presence(pto=ROMEO, ptype="probe")
        probed = await juliet.wait_presence(from_romeo("available", seen), LIMIT)
        assert probed["from"].resource == device
    finally:
        if bs is not None:
            await bs.stop()
        if gw.running:
            gw.terminate()


async def test_a_watcher_who_only_got_a_probe_answer_is_told_at_stop(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    with sipp.uas("presence_notifier_active_uas.xml", timeout=60) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state-a", free_port(), routes=route)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 1"), LIMIT)
            await wait_sipp(uas)
        finally:
            await rig.stop()
    with sipp.uas("presence_notifier_fetch_uas.xml", timeout=60) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state-b", free_port(), routes=route)
        second = XmppTestClient(
            str(juliet.jid.bare), juliet.xmpp.password, port=prosody.c2s_port, resource="probe"
        )
        try:
            await second.connect()  # initial presence -> Prosody probes bob (RFC 6121 §4.3.1)
            fetched = await second.wait_presence(lambda p: from_bob(p, "fetched"), LIMIT)
            await wait_sipp(uas)
            await until(lambda: not rig.service.x2s.fetches)
            assert not rig.service.x2s.subs  # no subscription: only the probe's answer

            await rig.stop()  # the drain: departures before the link closes
            gone = await second.wait_presence(
                lambda p: from_bob(p) and ptype(p) == "unavailable", LIMIT
            )
            assert gone["from"] == fetched["from"]  # the resource that was shown available
        finally:
            await second.disconnect()
            if rig.links.is_up("sip.localhost"):
                await rig.stop()

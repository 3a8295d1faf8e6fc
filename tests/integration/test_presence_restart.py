"""Subscriptions survive a gateway restart (both directions), against real peers.

The presence service, its SIP endpoint and its XMPP link are stopped and built again on the
same SIP port over the same SQLite state directory, while Prosody, the XMPP user and the SIP
peer (sipp, or a SIP watcher endpoint) keep running. The dialogs must continue: the X2S
refresh goes out in the old dialog (sipp checks the To tag and CSeq 2), the S2X watcher's
in-dialog refresh is answered, and nobody is told anything spurious meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.conftest import Account, ClientFactory
from tests.integration.presence_rig import LIMIT, start_rig, until
from tests.integration.test_presence_s2x import Watcher, state

pytestmark = pytest.mark.integration


async def test_x2s_subscription_survives_a_restart(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    port = free_port()
    state_dir = tmp_path / "state"
    with sipp.uas("presence_notifier_restart_uas.xml", timeout=90) as uas:
        routes = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, state_dir, port, routes=routes)
        juliet = await xmpp_client(prefix="juliet")
        juliet.xmpp.auto_authorize = None
        bare = juliet.jid.bare
        try:
            juliet.xmpp.send_presence(pto="bob@sip.localhost", ptype="subscribe")
            for resource in ("phone", "desk"):  # both tuples shown available
                await juliet.wait_presence(
                    lambda p, r=resource: (
                        p["from"] == f"bob@sip.localhost/{r}" and p["type"] != "unavailable"
                    ),
                    LIMIT,
                )
            before = list(rig.recording.sent)
        finally:
            await rig.stop()
        # clean departure: both resources shown available are made unavailable at stop,
        # confirmed by the server before the link closed (docs/presence.md)
        departed = [s for s in rig.recording.sent[len(before) :] if s.xml.get("to") == bare]
        assert sorted((s.xml.get("from"), s.xml.get("type")) for s in departed) == [
            ("bob@sip.localhost/desk", "unavailable"),
            ("bob@sip.localhost/phone", "unavailable"),
        ]
        for resource in ("desk", "phone"):
            await juliet.wait_presence(
                lambda p, r=resource: (
                    p["from"] == f"bob@sip.localhost/{r}" and p["type"] == "unavailable"
                ),
                LIMIT,
            )

        rig = await start_rig(prosody, state_dir, port, routes=routes)
        try:
            assert rig.service.restored == 1
            assert len(rig.service.x2s.subs) == 1
            # the restored dialog's last state is announced again once the link is up
            await juliet.wait_presence(
                lambda p: p["from"] == "bob@sip.localhost/phone" and p["show"] == "away", LIMIT
            )
            # the refresh goes out in the same dialog (sipp checks To tag and CSeq 2)
            await juliet.wait_presence(
                lambda p: p["from"].bare == "bob@sip.localhost" and p["show"] == "dnd", LIMIT
            )
            after = list(rig.recording.sent)
            told = [s for s in before + after if s.xml.get("to") == bare]
            assert not [s for s in told if s.xml.get("type") == "unsubscribed"]
            # apart from the departures, the only unavailable is the desk tuple the
            # post-restart NOTIFY dropped
            gone = {s.xml.get("from") for s in told if s.xml.get("type") == "unavailable"}
            assert gone == {"bob@sip.localhost/desk"}
            assert len([s for s in told if s.xml.get("type") == "subscribed"]) == 1
            juliet.xmpp.send_presence(pto="bob@sip.localhost", ptype="unsubscribe")
            result = await asyncio.to_thread(uas.wait)
            assert result.ok, result.describe()
            await until(lambda: not rig.service.x2s.subs)
        finally:
            await rig.stop()


async def test_s2x_subscription_survives_a_restart(
    prosody: ProsodyServer,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    port = free_port()
    state_dir = tmp_path / "state"
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    juliet.xmpp.auto_authorize = None
    alice = Watcher("alice@sip.localhost")
    await alice.endpoint.start()
    rig = await start_rig(prosody, state_dir, port)
    try:
        assert (await alice.subscribe(port, acct.jid, 120)).status == 200
        await juliet.wait_presence(lambda p: p.xml.get("type") == "subscribe", LIMIT)
        juliet.xmpp.send_presence(pto="alice@sip.localhost", ptype="subscribed")
        await alice.notify(lambda n: b"<basic>open</basic>" in n.body)
        await rig.stop()

        rig = await start_rig(prosody, state_dir, port)
        assert rig.service.restored == 1
        # the dialog continues: an in-dialog refresh is answered with the current state
        refreshed = await alice.subscribe(port, acct.jid, 120)
        assert refreshed.status == 200
        current = await alice.notify(
            lambda n: state(n).startswith("active") and b"<basic>open</basic>" in n.body
        )
        assert current is not None
        told = [p for p in juliet.presences if p["from"].bare == "alice@sip.localhost"]
        assert not [p for p in told if p.xml.get("type") in ("unavailable", "unsubscribe")]
        assert (await alice.subscribe(port, acct.jid, 0)).status == 200
        await alice.notify(lambda n: state(n).startswith("terminated"))
        await until(lambda: not rig.service.s2x.by_dialog)
    finally:
        await rig.stop()
        await alice.endpoint.stop()

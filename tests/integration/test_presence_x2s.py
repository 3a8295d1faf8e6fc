"""X2S presence against real peers: a Prosody user (slixmpp) watches a SIP presentity played
by sipp (RFC 8048 §5.2 over RFC 6665), through the presence service in-process.

Timers run with T1 = 50 ms (Timer N 3.2 s); the notifier grants expires=4, so the gateway
refreshes after 2 s. Every wait is bounded and waits for a condition.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.conftest import ClientFactory
from tests.integration.presence_rig import LIMIT, start_rig, until

pytestmark = pytest.mark.integration

BOB = "bob@sip.localhost"


def from_bob(stanza: Any, resource: str | None = None) -> bool:
    sender = stanza["from"]
    if sender.bare != BOB:
        return False
    return resource is None or sender.resource == resource


def ptype(stanza: Any) -> str:
    return stanza.xml.get("type") or "available"


def quiet(client: Any) -> None:
    """No automatic roster answers: the test decides (slixmpp approves by default)."""
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False


async def test_xmpp_user_watches_a_sip_presentity(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    with sipp.uas("presence_notifier_uas.xml", timeout=60) as uas:
        rig = await start_rig(
            prosody,
            tmp_path / "state",
            free_port(),
            routes={"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"},
        )
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            bare = juliet.jid.bare
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")

            # pending NOTIFY: answered, nothing to XMPP; then active: subscribed first
            # (Prosody turns `subscribed` into a roster push, it does not deliver the stanza)
            phone = await juliet.wait_presence(lambda p: from_bob(p, "phone"), LIMIT)
            desk = await juliet.wait_presence(lambda p: from_bob(p, "desk"), LIMIT)
            await juliet.xmpp.get_roster(timeout=LIMIT)
            assert juliet.xmpp.client_roster[BOB]["subscription"] in ("to", "both")
            to_juliet = [s for s in rig.recording.sent if s.xml.get("to") == bare]
            assert to_juliet[0].xml.get("type") == "subscribed"  # nothing while pending
            assert ptype(phone) == "available"
            assert phone["show"] == "away"
            assert phone["status"] == "at lunch"
            assert phone["priority"] == 64  # 0.5 -> ceil(0.5 * 127) (RFC 3922 §5.2.13)
            assert ptype(desk) == "available" and desk["show"] == ""

            # the refresh (before expires=4 ends) gets a NOTIFY with one tuple left:
            # desk is made unavailable, phone now dnd
            gone = await juliet.wait_presence(
                lambda p: from_bob(p, "desk") and ptype(p) == "unavailable", LIMIT
            )
            assert gone is not None
            dnd = await juliet.wait_presence(
                lambda p: from_bob(p, "phone") and p["show"] == "dnd", LIMIT
            )
            assert dnd is not None
            # R8048-08: a probe from the gateway to the watcher's bare JID before the refresh
            assert rig.recording.sent_of("probe", bare), "no probe before the refresh"
            probe = rig.recording.sent_of("probe", bare)[0]
            assert probe.xml.get("from") == "sip.localhost"

            records = [r for r in rig.store.all_subscriptions() if r.direction == "x2s"]
            assert len(records) == 1
            assert records[0].state == "active" and records[0].watcher == bare
            assert records[0].last_document is not None and b"dnd" in records[0].last_document

            # unsubscribe -> SUBSCRIBE Expires: 0 in the dialog (sipp checks), unsubscribed
            # (Prosody drops the user's roster item at once, so the client never sees the
            # answering `unsubscribed`: RFC 6121 App. A.3.2, state None.)
            juliet.xmpp.send_presence(pto=BOB, ptype="unsubscribe")
            await until(lambda: rig.recording.sent_of("unsubscribed", bare))
            result = await asyncio.to_thread(uas.wait)
            assert result.ok, result.describe()
            await until(lambda: not rig.service.x2s.subs)
            assert not [r for r in rig.store.all_subscriptions() if r.direction == "x2s"]
            notified = rig.metrics.presence_notifications.labels("sip_to_xmpp")._value.get()
            assert notified >= 2
        finally:
            await rig.stop()

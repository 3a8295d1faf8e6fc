"""X2S outcomes against a real sipp notifier and a real Prosody user (RFC 8048 §5.2 over
RFC 6665 §4.1): 423 retried with Min-Expires, 481 to a refresh -> a new dialog with the
XMPP authorization kept, 403/489/603 and NOTIFY terminated;reason=rejected ->
`unsubscribed`, terminated;reason=deactivated -> an immediate re-SUBSCRIBE on a new
dialog, and a presence probe from the user's server -> a fetch (SUBSCRIBE Expires: 0 in
a new dialog). The presence service runs in-process (tests/integration/presence_rig.py),
T1 = 50 ms; every wait is bounded and waits for a condition.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory
from tests.integration.presence_rig import LIMIT, Rig, start_rig, until

pytestmark = pytest.mark.integration

BOB = "bob@sip.localhost"


def from_bob(stanza: Any, note: str | None = None) -> bool:
    if stanza["from"].bare != BOB:
        return False
    return note is None or stanza["status"] == note


def quiet(client: XmppTestClient) -> None:
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False


async def roster_state(client: XmppTestClient) -> tuple[str, bool]:
    await client.xmpp.get_roster(timeout=LIMIT)
    item = client.xmpp.client_roster[BOB]
    return item["subscription"], bool(item["pending_out"])


def x2s_records(rig: Rig) -> list[Any]:
    return [r for r in rig.store.all_subscriptions() if r.direction == "x2s"]


def no_backoff_within_the_test(rig: Rig) -> None:
    """A retry after backoff would come after 10 minutes: a new dialog seen within the
    test's waits was sent at once."""
    rig.service.ctx.config = dataclasses.replace(
        rig.service.ctx.config, retry_min=600.0, retry_max=900.0
    )


async def wait_sipp(uas: Any) -> None:
    result = await asyncio.to_thread(uas.wait)
    assert result.ok, result.describe()


async def test_423_is_retried_with_min_expires(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    with sipp.uas("presence_notifier_423_uas.xml", timeout=60) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state", free_port(), routes=route)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            # sipp checked that the second SUBSCRIBE (same Call-ID) asked Expires: 7200
            granted = await juliet.wait_presence(lambda p: from_bob(p, "granted after 423"), LIMIT)
            assert granted["type"] in ("", "available")
            await wait_sipp(uas)
            assert rig.recording.sent_of("subscribed", juliet.jid.bare)
            (record,) = x2s_records(rig)
            assert record.state == "active"
            entry = next(iter(rig.service.x2s.subs.values()))
            assert entry.sub.requested == 7200
        finally:
            await rig.stop()


async def test_481_to_a_refresh_starts_a_new_dialog_and_keeps_the_authorization(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    with sipp.uas("presence_notifier_481_uas.xml", timeout=60, calls=2) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state", free_port(), routes=route)
        no_backoff_within_the_test(rig)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            bare = juliet.jid.bare
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 1"), LIMIT)
            first = x2s_records(rig)[0].call_id
            # the refresh of dialog 1 gets 481: a new dialog (sipp's second call) follows
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 2"), LIMIT)
            await until(lambda: x2s_records(rig) and x2s_records(rig)[0].call_id != first)
            await wait_sipp(uas)
            assert not rig.recording.sent_of("unsubscribed", bare)  # authorization kept
            assert len(rig.recording.sent_of("subscribed", bare)) == 1  # not granted twice
            assert (await roster_state(juliet))[0] in ("to", "both")
            (record,) = x2s_records(rig)
            assert record.call_id != first and record.xmpp_authorization == "to"
        finally:
            await rig.stop()


@pytest.mark.parametrize("status", ["403", "489", "603"])
async def test_refusal_ends_the_authorization(
    status: str, prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    with sipp.uas(f"presence_notifier_refuse_{status}_uas.xml", timeout=60) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state", free_port(), routes=route)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            bare = juliet.jid.bare
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            assert (await roster_state(juliet)) == ("none", True)  # asked, pending
            await until(lambda: rig.recording.sent_of("unsubscribed", bare))
            await wait_sipp(uas)
            assert not rig.recording.sent_of("subscribed", bare)
            await until(lambda: not rig.service.x2s.subs)
            assert not x2s_records(rig)
            # Prosody cancelled the pending request (RFC 6121 §3.2.3)
            async with asyncio.timeout(LIMIT):
                while await roster_state(juliet) != ("none", False):
                    await asyncio.sleep(0.1)
        finally:
            await rig.stop()


async def test_notify_rejected_ends_the_authorization(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    keys = {"reason": "rejected"}
    with sipp.uas("presence_notifier_end_uas.xml", timeout=60, keys=keys) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state", free_port(), routes=route)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            bare = juliet.jid.bare
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 1"), LIMIT)
            # terminated;reason=rejected: unavailable for what was shown, then unsubscribed
            gone = await juliet.wait_presence(
                lambda p: from_bob(p) and p["type"] == "unavailable", LIMIT
            )
            assert gone["from"].resource == "phone"
            await until(lambda: rig.recording.sent_of("unsubscribed", bare))
            await wait_sipp(uas)
            await until(lambda: not rig.service.x2s.subs)
            assert not x2s_records(rig)
            async with asyncio.timeout(LIMIT):
                while (await roster_state(juliet))[0] not in ("none", "from"):
                    await asyncio.sleep(0.1)
        finally:
            await rig.stop()


async def test_notify_deactivated_resubscribes_at_once(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    keys = {"reason": "deactivated"}
    with sipp.uas("presence_notifier_end_uas.xml", timeout=60, keys=keys, calls=2) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state", free_port(), routes=route)
        no_backoff_within_the_test(rig)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            bare = juliet.jid.bare
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 1"), LIMIT)
            # dialog 2 is sipp's second call: a new Call-ID, sent without backoff
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 2"), LIMIT)
            await wait_sipp(uas)
            assert not rig.recording.sent_of("unsubscribed", bare)
            assert len(rig.recording.sent_of("subscribed", bare)) == 1
            (record,) = x2s_records(rig)
            assert record.xmpp_authorization == "to"
        finally:
            await rig.stop()


async def test_probe_without_subscription_is_a_fetch(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    """Juliet's roster says `to` (granted through a first gateway); a second gateway
    with an empty store gets the probe Prosody sends when a new resource of Juliet comes
    online (RFC 6121 §4.3.1): no subscription -> a fetch, its NOTIFY -> the prober."""
    with sipp.uas("presence_notifier_active_uas.xml", timeout=60) as uas:
        route = {"sip.localhost": f"sip:127.0.0.1:{uas.local_port}"}
        rig = await start_rig(prosody, tmp_path / "state-a", free_port(), routes=route)
        try:
            juliet = await xmpp_client(prefix="juliet")
            quiet(juliet)
            juliet.xmpp.send_presence(pto=BOB, ptype="subscribe")
            await juliet.wait_presence(lambda p: from_bob(p, "dialog 1"), LIMIT)
            await wait_sipp(uas)
            assert (await roster_state(juliet))[0] in ("to", "both")
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
            assert fetched["from"].resource == "phone"
            await wait_sipp(uas)  # sipp checked: Expires: 0, no To tag
            await until(lambda: not rig.service.x2s.fetches)
            assert not rig.service.x2s.subs  # a fetch creates no subscription
            assert not x2s_records(rig)
        finally:
            await second.disconnect()
            await rig.stop()

"""Faults (issue 12), each against the gateway process and real peers, counted on both sides.

- Prosody SIGKILLed and restarted three times during 2,000 SIP MESSAGEs: every MESSAGE is
  either answered 2xx and delivered exactly once to the XMPP client, or answered with an
  error and not delivered; no duplicates.
- 15 % UDP loss both ways (a seeded lossy relay on loopback) in both directions: every
  MESSAGE delivered exactly once, by retransmission.
- SIGTERM and restart of the gateway with an X2S subscription (XMPP user watching a sipp
  notifier) and an S2X one (a SIP watcher watching an XMPP user): both restored, the next
  refresh continues the same dialog, nobody is told unsubscribe/unsubscribed/terminated.
- A SIP peer that stops answering: every XMPP sender gets remote-server-timeout, the
  transactions in flight return to 0, and a second round leaves RSS and the asyncio task
  count where the first left them.

The lean peers (a UAC with its own Timer E/F, a UDP UAS, a raw c2s client) are those of
scripts/soak.py.
"""

from __future__ import annotations

import asyncio
import random
import re
import signal
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scripts.soak import (
    LeanUac,
    LeanUas,
    RawXmpp,
    SoakWatcher,
    body_seq,
    proc_rss,
    scrape,
)
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, config_of, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import SCENARIO_DIR, Sipp
from tests.integration.conftest import Account, ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
SECRET = "faults-secret"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
LIMIT = 60.0
StartGateway = Callable[..., GatewayProcess]


def config_for(
    prosody: ProsodyServer,
    state_dir: Path,
    *,
    sip_port: int | None = None,
    route_port: int | None = None,
    t1: float = 0.5,
    secret: str = SECRET,
) -> str:
    """The gateway's config for these tests: one component, no hosted domain, loopback
    trusted, per-source/per-user message limits off (the load all comes from 127.0.0.1)."""
    sip: dict[str, Any] = {
        "listeners": [{"transport": "udp", "address": LOOPBACK, "port": sip_port or free_port()}],
        "hosted_domains": [],
        "trusted_peers": [LOOPBACK],
        "timers": {"t1": t1, "t2": max(4.0 * t1, t1), "t4": max(10 * t1, 0.5)},
    }
    if route_port is not None:
        sip["routes"] = [{"domain": COMPONENT, "target": f"sip:{LOOPBACK}:{route_port}"}]
    off = {"burst": 0.0, "rate": 1.0}
    return gateway_config(
        gateway={"state_dir": str(state_dir)},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": secret, "addressing": "mirrored"}],
            "reconnect_min": 0.2,
            "reconnect_max": 1.0,
        },
        sip=sip,
        rate_limits={
            "per_source": {"message": off, "subscribe": off},
            "per_user": {"message": off, "subscribe": off},
        },
    )


def sip_port_of(gw: GatewayProcess) -> int:
    port: int = config_of(gw.config_path.read_text())["sip"]["listeners"][0]["port"]
    return port


def admin_of(gw: GatewayProcess) -> str:
    listen: str = config_of(gw.config_path.read_text())["admin"]["listen"]
    return listen


async def until(cond: Callable[[], bool], timeout: float = LIMIT, what: str = "") -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.05)


@pytest.fixture
def own_prosody(prosody_factory: Callable[..., ProsodyServer]) -> ProsodyServer:
    server = prosody_factory(components={COMPONENT: SECRET})
    server.add_user("juliet", "pw")
    server.add_user("nurse", "pw")
    return server


# --------------------------------------------------------------------------- Prosody killed


async def test_prosody_killed_three_times_during_2000_messages(
    own_prosody: ProsodyServer, gateway: StartGateway, tmp_path: Path
) -> None:
    total, rate = 2000, 50.0
    kills_at = (400, 1000, 1600)
    gw = gateway(config_for(own_prosody, tmp_path / "state"))
    gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
    arrivals: dict[int, int] = {}

    def on_stanza(_c: RawXmpp, elem: ET.Element) -> None:
        if elem.tag.endswith("}message") and elem.get("type") != "error":
            seq = body_seq(elem)
            if seq is not None:
                arrivals[seq] = arrivals.get(seq, 0) + 1

    juliet = await RawXmpp(
        own_prosody.c2s_port, "juliet@localhost", "pw", on_stanza=on_stanza, reconnect=True
    ).start()
    uac = await LeanUac((LOOPBACK, sip_port_of(gw))).start()
    restarts: list[asyncio.Task[None]] = []

    async def kill_and_restart() -> None:
        own_prosody.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(own_prosody.start)

    try:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for seq in range(total):
            while loop.time() < t0 + seq / rate:
                await asyncio.sleep(0.005)
            if seq in kills_at:
                restarts.append(asyncio.create_task(kill_and_restart()))
            uac.send(seq, "sip:juliet@localhost")
        await asyncio.gather(*restarts)
        await uac.drain(90)
        # late arrivals: a 2xx answer comes after Prosody routed the stanza to the client
        await asyncio.sleep(3)
    finally:
        uac.close()
        await juliet.stop()

    outcomes = uac.outcomes
    ok = {s for s, st in outcomes.items() if 200 <= st < 300}
    failed = {s for s, st in outcomes.items() if st >= 300}
    assert len(outcomes) == total, f"{total - len(outcomes)} MESSAGEs without an outcome"
    assert ok - set(arrivals) == set(), f"2xx without delivery: {sorted(ok - set(arrivals))}"
    # A MESSAGE whose stanza was written when Prosody died, before its confirming ping came
    # back, may have been routed: nobody can know (XEP-0114 has no acks). The gateway must
    # say so (503 "delivery in doubt", fate in_doubt=True); every other error means "not
    # delivered".
    in_doubt = {
        int(m.group(1))
        for line in gw.log_text().splitlines()
        if "in_doubt=True" in line
        for m in [re.search(r"call_id=\S*?uac(\d+)-", line)]
        if m is not None
    }
    assert failed & set(arrivals) <= in_doubt, (
        f"an error not marked in doubt answered for a delivered message: "
        f"{sorted((s, outcomes[s]) for s in (failed & set(arrivals)) - in_doubt)}"
    )
    assert in_doubt <= failed
    assert {uac.reasons[s] for s in in_doubt} <= {"Service Unavailable (delivery in doubt)"}
    assert len(in_doubt) <= 5 * len(kills_at), sorted(in_doubt)  # only the batch in flight
    assert [s for s, n in arrivals.items() if n > 1] == [], "duplicates at the client"
    assert set(arrivals) <= set(range(total))
    # the kills took effect (errors while Prosody was away) and delivery came back each time
    assert failed, "no MESSAGE failed: Prosody was never really down"
    assert {outcomes[s] for s in failed} <= {503, 480, 404, 408, 500}, sorted(
        {outcomes[s] for s in failed}
    )
    for k in kills_at:
        assert any(s in ok for s in range(k + 100, k + 600)), f"no delivery after kill at {k}"
    assert juliet.logins >= 4
    assert gw.running
    print(
        f"prosody kills: {len(ok)} 2xx (delivered once each), {len(failed)} errors "
        f"({sorted({outcomes[s] for s in failed})}), {uac.retransmissions} retransmissions"
    )


# --------------------------------------------------------------------------- UDP loss


class LossyRelay(asyncio.DatagramProtocol):
    """A UDP relay that drops a seeded fraction of datagrams in both directions.

    Datagrams to `port` go on to `upstream` from a second socket; whatever comes back to
    that socket goes to the last client seen."""

    def __init__(self, upstream: tuple[str, int], loss: float, seed: int) -> None:
        self.upstream = upstream
        self.loss = loss
        self.rnd = random.Random(seed)
        self.client: Any = None
        self.front: asyncio.DatagramTransport | None = None
        self.back: asyncio.DatagramTransport | None = None
        self.port = 0
        self.passed = 0
        self.dropped = 0

    async def start(self) -> LossyRelay:
        loop = asyncio.get_running_loop()
        relay = self

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                if relay.client is not None and relay.front is not None and relay.keep():
                    relay.front.sendto(data, relay.client)

        front, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=(LOOPBACK, 0))
        back, _ = await loop.create_datagram_endpoint(Back, local_addr=(LOOPBACK, 0))
        self.front = front
        self.back = back
        self.port = self.front.get_extra_info("sockname")[1]
        return self

    def keep(self) -> bool:
        if self.rnd.random() < self.loss:
            self.dropped += 1
            return False
        self.passed += 1
        return True

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client = addr
        if self.back is not None and self.keep():
            self.back.sendto(data, self.upstream)

    def close(self) -> None:
        for t in (self.front, self.back):
            if t is not None:
                t.close()


async def test_udp_loss_15_percent_every_message_once(
    own_prosody: ProsodyServer, gateway: StartGateway, tmp_path: Path
) -> None:
    count, loss = 300, 0.15
    uas = await LeanUas().start()
    to_uas = await LossyRelay((LOOPBACK, uas.port), loss, seed=15).start()
    gw = gateway(config_for(own_prosody, tmp_path / "state", route_port=to_uas.port))
    gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
    to_gw = await LossyRelay((LOOPBACK, sip_port_of(gw)), loss, seed=16).start()
    arrivals: dict[int, int] = {}
    errors: list[ET.Element] = []

    def on_juliet(_c: RawXmpp, elem: ET.Element) -> None:
        if elem.tag.endswith("}message") and (seq := body_seq(elem)) is not None:
            arrivals[seq] = arrivals.get(seq, 0) + 1

    def on_nurse(_c: RawXmpp, elem: ET.Element) -> None:
        if elem.tag.endswith("}message") and elem.get("type") == "error":
            errors.append(elem)

    juliet = RawXmpp(own_prosody.c2s_port, "juliet@localhost", "pw", on_stanza=on_juliet)
    nurse = RawXmpp(own_prosody.c2s_port, "nurse@localhost", "pw", on_stanza=on_nurse)
    await juliet.start()
    await nurse.start()
    # the UAC's Via asks for rport, so the answers come back through the relay
    uac = await LeanUac((LOOPBACK, to_gw.port), rport=True).start()
    try:
        for seq in range(count):
            uac.send(seq, "sip:juliet@localhost")
            nurse.send(
                f"<message type='chat' id='x{seq}' to='romeo{seq % 30}@{COMPONENT}'>"
                f"<body>lossy seq={seq}</body></message>"
            )
            await asyncio.sleep(0.02)
        await uac.drain(90)
        await until(lambda: len(uas.deliveries) + len(errors) >= count, 120)
        await asyncio.sleep(2)  # anything duplicated late would arrive now
    finally:
        uac.close()
        await juliet.stop()
        await nurse.stop()
        to_gw.close()
        to_uas.close()
        uas.close()

    # SIP -> XMPP: every MESSAGE 200 and delivered once, though datagrams were lost
    assert sorted(uac.outcomes.values()) == [200] * count, {
        s: st for s, st in uac.outcomes.items() if st != 200
    }
    assert sorted(arrivals) == list(range(count))
    assert max(arrivals.values()) == 1, "duplicates at the XMPP client"
    # XMPP -> SIP: every MESSAGE reached the UAS in one transaction, no error stanza
    assert errors == []
    assert sorted(uas.deliveries) == list(range(count))
    assert uas.duplicates() == []
    # loss really happened and retransmission repaired it, on both sides
    assert to_gw.dropped > count * loss * 0.5 and to_uas.dropped > count * loss * 0.5
    assert uac.retransmissions > 0
    assert uas.datagrams > count  # the gateway retransmitted what the relay dropped
    print(
        f"loss: relay to gateway dropped {to_gw.dropped}/{to_gw.dropped + to_gw.passed}, "
        f"to UAS {to_uas.dropped}/{to_uas.dropped + to_uas.passed}; UAC retransmissions "
        f"{uac.retransmissions}; UAS datagrams {uas.datagrams} for {count} MESSAGEs"
    )


# --------------------------------------------------------------------------- SIGTERM


def notifier_scenario(tmp_path: Path, expires: int) -> Path:
    """presence_notifier_restart_uas.xml with a longer first Expires, so the refresh that
    must continue the dialog (sipp checks the To tag and CSeq 2) comes from the restarted
    process, and a third SUBSCRIBE must be Expires: 0 (a spurious unsubscribe fails it)."""
    text = (SCENARIO_DIR / "presence_notifier_restart_uas.xml").read_text()
    text = text.replace("Expires: 10", f"Expires: {expires}").replace(
        "active;expires=10", f"active;expires={expires}"
    )
    path = tmp_path / "notifier_restart_long.xml"
    path.write_text(text)
    return path


async def test_sigterm_and_restart_keep_both_subscriptions(
    prosody: ProsodyServer,
    xmpp_client: ClientFactory,
    xmpp_account: Callable[..., Account],
    gateway: StartGateway,
    sipp: Sipp,
    tmp_path: Path,
) -> None:
    sip_port = free_port()
    with sipp.uas(notifier_scenario(tmp_path, 24), timeout=150) as uas:
        base = config_for(
            prosody,
            tmp_path / "state",
            sip_port=sip_port,
            route_port=uas.local_port,
            t1=0.05,
            secret=prosody.components[COMPONENT],
        )
        gw1 = gateway(base)
        gw1.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
        acct = xmpp_account("juliet")
        juliet = await xmpp_client(acct)
        juliet.xmpp.auto_authorize = None
        juliet.xmpp.auto_subscribe = False
        bob, alice = f"bob@{COMPONENT}", f"alice@{COMPONENT}"

        # X2S: juliet watches bob (sipp), gateway -> SUBSCRIBE -> 200 + NOTIFY
        juliet.xmpp.send_presence(pto=bob, ptype="subscribe")
        await juliet.wait_presence(lambda p: p["from"].bare == bob and p["show"] == "away", LIMIT)
        # S2X: alice (a SIP watcher) watches juliet
        watcher = SoakWatcher(alice, t1=0.05)
        await watcher.endpoint.start()
        try:
            assert (await watcher.subscribe(sip_port, acct.jid, 300)).is_success
            await juliet.wait_presence(
                lambda p: p.xml.get("type") == "subscribe" and p["from"] == alice, LIMIT
            )
            juliet.xmpp.send_presence(pto=alice, ptype="subscribed")
            await until(lambda: any(b"<basic>open</basic>" in n.body for n in watcher.notifies))
            dialog = (watcher.call_id, watcher.to_tag)

            assert gw1.terminate(30) == 0
            assert "Traceback" not in gw1.log_text()
            # sipp answers dnd only to the in-dialog refresh: it must come from gw2
            assert not [p for p in juliet.presences if p["from"].bare == bob and p["show"] == "dnd"]
            gw2 = gateway(base)
            gw2.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://{admin_of(gw2)}/subscriptions") as resp,
            ):
                listed = await resp.json()
            directions = sorted(str(r.get("direction")) for r in listed["subscriptions"])
            assert directions == ["s2x", "x2s"], listed

            # S2X: the watcher's in-dialog refresh is answered by the new process
            seen = len(watcher.notifies)
            refreshed = await watcher.subscribe(sip_port, acct.jid, 300)
            assert refreshed.is_success, refreshed.status
            assert (watcher.call_id, watcher.to_tag) == dialog
            await until(lambda: len(watcher.notifies) > seen)
            latest = watcher.notifies[-1]
            assert str(latest.subscription_state).startswith("active")
            assert b"<basic>open</basic>" in latest.body

            # X2S: the restarted gateway refreshes in the same dialog; sipp's NOTIFY says dnd
            await juliet.wait_presence(
                lambda p: p["from"].bare == bob and p["show"] == "dnd", LIMIT
            )
            # nobody was told anything spurious, on either side
            from_sip = [p for p in juliet.presences if p["from"].bare in (bob, alice)]
            assert not [p for p in from_sip if p.xml.get("type") in ("unsubscribe", "unsubscribed")]
            assert not [s for s in watcher.states() if s.startswith("terminated")]
            print(
                "presence from the SIP side at juliet:",
                [(str(p["from"]), p.xml.get("type"), p["show"]) for p in from_sip],
                "| NOTIFY states at the watcher:",
                watcher.states(),
            )

            # clean end: juliet unsubscribes (sipp's third SUBSCRIBE must be Expires: 0)
            juliet.xmpp.send_presence(pto=bob, ptype="unsubscribe")
            result = await asyncio.to_thread(uas.wait)
            assert result.ok, result.describe()
            gone = await watcher.subscribe(sip_port, acct.jid, 0)
            assert gone.is_success
            await until(lambda: watcher.states()[-1].startswith("terminated"))
            assert gw2.terminate(30) == 0
        finally:
            await watcher.endpoint.stop()


# --------------------------------------------------------------------------- black hole


def error_condition(elem: ET.Element) -> str | None:
    err = elem.find("{jabber:client}error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


async def test_sip_peer_that_stops_answering(
    own_prosody: ProsodyServer, gateway: StartGateway, tmp_path: Path
) -> None:
    hole = await LeanUas(silent=True).start()
    gw = gateway(config_for(own_prosody, tmp_path / "state", route_port=hole.port, t1=0.05))
    gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
    admin = admin_of(gw)
    errors: dict[str, ET.Element] = {}

    def on_nurse(_c: RawXmpp, elem: ET.Element) -> None:
        if elem.tag.endswith("}message") and elem.get("type") == "error":
            errors[elem.get("id", "")] = elem

    nurse = RawXmpp(own_prosody.c2s_port, "nurse@localhost", "pw", on_stanza=on_nurse)
    await nurse.start()
    names = ("cpim_sip_transactions_in_flight", "cpim_asyncio_tasks")

    async def round_of(tag: str, count: int) -> tuple[int, float]:
        for i in range(count):
            nurse.send(
                f"<message type='chat' id='{tag}{i}' to='romeo{i % 50}@{COMPONENT}'>"
                f"<body>{tag} seq={i}</body></message>"
            )
        await until(lambda: sum(k.startswith(tag) for k in errors) >= count, 120)
        idle: dict[str, float] = {}

        async def settled() -> bool:
            idle.update(await scrape(admin, names))
            return idle["cpim_sip_transactions_in_flight"] == 0

        async with asyncio.timeout(LIMIT):
            while not await settled():
                await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
        return proc_rss(gw.pid), (await scrape(admin, names))["cpim_asyncio_tasks"]

    try:
        await asyncio.sleep(1.0)
        baseline = proc_rss(gw.pid)
        rss1, tasks1 = await round_of("a", 300)
        rss2, tasks2 = await round_of("b", 300)
    finally:
        await nurse.stop()
        hole.close()

    assert len(errors) == 600
    conditions = {error_condition(e) for e in errors.values()}
    assert conditions == {"remote-server-timeout"}, conditions
    assert hole.requests.get("MESSAGE", 0) >= 600  # every one went out (and retransmitted)
    # memory: the second round adds (almost) nothing to what the first left
    mib = 2**20
    assert rss2 - rss1 < 3 * mib, (baseline / mib, rss1 / mib, rss2 / mib)
    assert rss2 - baseline < 24 * mib, (baseline / mib, rss1 / mib, rss2 / mib)
    assert tasks2 <= tasks1, (tasks1, tasks2)
    assert gw.running
    gw.send_signal(signal.SIGTERM)
    assert gw.proc.wait(30) == 0
    print(
        f"black hole: RSS baseline {baseline / mib:.1f} MiB, after round 1 {rss1 / mib:.1f}, "
        f"after round 2 {rss2 / mib:.1f}; tasks {tasks1:g} -> {tasks2:g}; "
        f"{hole.requests.get('MESSAGE', 0)} MESSAGE datagrams swallowed"
    )

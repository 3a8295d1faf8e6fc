"""S2X presence against real peers: SIP watchers (a second SipEndpoint on loopback, and
sipp) subscribe to a Prosody user through the presence service (RFC 8048 §5.3).

The Python watcher is a real SIP stack on the wire: it sends SUBSCRIBEs and records the
NOTIFYs it gets (answering 200, or never, for the Timer F case). T1 = 50 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.watchers import Watchers as BenchWatchers
from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.transport.endpoint import IncomingRequest, SipEndpoint
from gateway.sip.uri import parse_uri
from mappings.pidf import parse_pidf
from tests.harness import LOOPBACK
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import Account, ClientFactory
from tests.integration.presence_rig import LIMIT, T1, Rig, start_rig, until

pytestmark = pytest.mark.integration

_ids = itertools.count(1)


class Watcher:
    """A SIP watcher: SUBSCRIBE out, NOTIFYs in (answered 200 unless `silent`; NOTIFYs
    with a body get `body_status` instead, e.g. 481)."""

    def __init__(self, user: str, *, silent: bool = False, body_status: int = 200) -> None:
        self.user = user
        self.silent = silent
        self.body_status = body_status
        self.notifies: list[SipRequest] = []
        self.arrived = asyncio.Event()
        self.port = free_port()
        cfg = SipConfig(
            listeners=(ListenerConfig(Transport.UDP, LOOPBACK, self.port),),
            timers=SipTimers(t1=T1, t2=4.0, t4=5.0),
        )
        self.endpoint = SipEndpoint(cfg, self)
        self.call_id = f"w{next(_ids)}@{LOOPBACK}"
        self.tag = f"t{next(_ids)}"
        self.to_tag: str | None = None
        self.cseq = 0

    def handle(self, incoming: IncomingRequest) -> None:
        if incoming.request.method == "NOTIFY":
            self.notifies.append(incoming.request)
            self.arrived.set()
            if not self.silent:
                incoming.reply(self.body_status if incoming.request.body else 200)

    async def subscribe(
        self, gateway_port: int, to: str, expires: int, *, new: bool = False
    ) -> SipResponse:
        if new:
            self.call_id, self.tag, self.to_tag, self.cseq = (
                f"w{next(_ids)}",
                f"t{next(_ids)}",
                None,
                0,
            )
        self.cseq += 1
        to_value = f"<sip:{to}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        headers = Headers(
            [
                ("From", f"<sip:{self.user}>;tag={self.tag}"),
                ("To", to_value),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} SUBSCRIBE"),
                ("Contact", f"<sip:watcher@{LOOPBACK}:{self.port}>"),
                ("Event", "presence"),
                ("Accept", "application/pidf+xml"),
                ("Expires", str(expires)),
            ]
        )
        request = SipRequest("SUBSCRIBE", parse_uri(f"sip:{to}"), headers)
        target = Target("udp", LOOPBACK, LOOPBACK, gateway_port)
        response = await self.endpoint.request(request, target)
        if response.is_success and self.to_tag is None:
            self.to_tag = response.to_tag
        return response

    async def notify(self, predicate: Callable[[SipRequest], bool]) -> SipRequest:
        taken: set[int] = getattr(self, "_taken", set())
        self._taken = taken
        async with asyncio.timeout(LIMIT):
            while True:
                for n in self.notifies:
                    if id(n) not in taken and predicate(n):
                        taken.add(id(n))
                        return n
                self.arrived.clear()
                await self.arrived.wait()


def cseq_of(n: SipRequest) -> int:
    return 0 if n.cseq is None else n.cseq.seq


def state(n: SipRequest) -> str:
    return str(n.subscription_state)


WatcherFactory = Callable[..., Awaitable[Watcher]]


@pytest.fixture
async def watchers() -> AsyncIterator[WatcherFactory]:
    made: list[Watcher] = []

    async def make(user: str, **kw: Any) -> Watcher:
        w = Watcher(user, **kw)
        await w.endpoint.start()
        made.append(w)
        return w

    try:
        yield make
    finally:
        for w in made:
            await w.endpoint.stop()


@pytest.fixture
async def rig(prosody: ProsodyServer, tmp_path: Path) -> AsyncIterator[Rig]:
    r = await start_rig(prosody, tmp_path / "state", free_port(), notify_interval=1.0)
    try:
        yield r
    finally:
        await r.stop()


def quiet(client: XmppTestClient) -> None:
    client.xmpp.auto_authorize = None
    client.xmpp.auto_subscribe = False


async def test_sip_user_watches_an_xmpp_user(
    rig: Rig,
    prosody: ProsodyServer,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    watchers: WatcherFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.bridge.presence_s2x")
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    quiet(juliet)
    alice = await watchers("alice@sip.localhost")
    alice_jid = "alice@sip.localhost"

    ok = await alice.subscribe(rig.port, acct.jid, 60)
    assert ok.status == 200 and ok.expires is not None and 0 < ok.expires <= 60
    pending = await alice.notify(lambda n: state(n).startswith("pending"))
    assert "expires=" in state(pending) and not pending.body
    ask = await juliet.wait_presence(
        lambda p: p.xml.get("type") == "subscribe" and p["from"] == alice_jid, LIMIT
    )
    assert ask is not None

    juliet.xmpp.send_presence(pto=alice_jid, ptype="subscribed")
    active = await alice.notify(lambda n: state(n).startswith("active"))
    assert "expires=" in state(active)
    first = await alice.notify(lambda n: bool(n.body))
    doc = parse_pidf(first.body)
    assert [t.id for t in doc.tuples] == ["ID-test"] and doc.tuples[0].basic == "open"

    # a second resource: dnd, status in German, priority 5
    mobile = XmppTestClient(f"{acct.jid}/mobile", acct.password, port=prosody.c2s_port)
    await mobile.connect(send_presence=False)
    try:
        mobile.send_raw(
            "<presence><show>dnd</show><status xml:lang='de'>beschäftigt</status>"
            "<priority>5</priority></presence>"
        )
        both = await alice.notify(lambda n: b"ID-mobile" in n.body)
        doc = parse_pidf(both.body)
        tuples = {t.id: t for t in doc.tuples}
        assert set(tuples) == {"ID-test", "ID-mobile"}
        m = tuples["ID-mobile"]
        assert m.basic == "open" and m.show == "dnd"
        assert [(n.text, n.lang) for n in m.notes] == [("beschäftigt", "de")]
        assert str(m.priority) == "0.039"  # floor(5 * 1000 / 127) / 1000
        assert doc.person is not None and "busy" in doc.person.activities

        # a burst of changes is coalesced (RFC 3856 §6.2.2), the newest state wins
        before = len([n for n in alice.notifies if n.body])
        for i in range(6):
            juliet.send_raw(f"<presence><status>step {i}</status></presence>")
        await alice.notify(lambda n: b"step 5" in n.body)
        bodies = [n for n in alice.notifies if n.body][before:]
        assert len(bodies) < 6, [n.body for n in bodies]

        # refresh: 200 and a NOTIFY with the current state (R8048-12). The NOTIFY may
        # arrive before the 200 (RFC 6665 §4.1.2.4), so note what was seen before sending.
        seen = max(cseq_of(n) for n in alice.notifies)
        refreshed = await alice.subscribe(rig.port, acct.jid, 60)
        assert refreshed.status == 200
        current = await alice.notify(lambda n: cseq_of(n) > seen and b"step 5" in n.body)
        assert current is not None

        # the mobile resource goes offline: its tuple is closed
        await mobile.disconnect()
        closed = await alice.notify(
            lambda n: b"ID-mobile" in n.body and b"<basic>closed</basic>" in n.body
        )
        assert closed is not None
    finally:
        await mobile.disconnect()

    # a fetch (new dialog, Expires 0) is answered from the last known state
    fetcher = await watchers("alice@sip.localhost")
    fetched = await fetcher.subscribe(rig.port, acct.jid, 0)
    assert fetched.status == 200
    final = await fetcher.notify(lambda n: state(n).startswith("terminated"))
    assert b"ID-test" in final.body

    assert len([r for r in rig.store.all_subscriptions() if r.direction == "s2x"]) == 1

    # unsubscribe: final NOTIFY terminated;reason=timeout with basic closed (R8048-13)
    gone = await alice.subscribe(rig.port, acct.jid, 0)
    assert gone.status == 200
    last = await alice.notify(lambda n: state(n).startswith("terminated"))
    assert "reason=timeout" in state(last) and b"<basic>closed</basic>" in last.body
    await juliet.wait_presence(
        lambda p: p["from"] == alice_jid and p.xml.get("type") == "unavailable", LIMIT
    )
    await until(lambda: not rig.service.s2x.by_dialog)
    assert not [r for r in rig.store.all_subscriptions() if r.direction == "s2x"]
    sent = rig.metrics.presence_notifications.labels("xmpp_to_sip")._value.get()
    assert sent >= 4
    # One log line per subscription change (issue 10): subscribed (pending), authorized,
    # the fetch/unsubscribe, and the dialog's removal.
    changes = [r.getMessage() for r in caplog.records if r.name.endswith("presence_s2x")]
    for change in ("watcher subscribed", "watcher authorized", "watcher dialog removed"):
        assert change in changes, changes


async def test_rejection_and_two_dialogs_sharing_one_authorization(
    rig: Rig,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    watchers: WatcherFactory,
) -> None:
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    quiet(juliet)
    bob = "bob@sip.localhost"
    one = await watchers(bob)
    two = await watchers(bob)
    assert (await one.subscribe(rig.port, acct.jid, 60)).status == 200
    assert (await two.subscribe(rig.port, acct.jid, 60)).status == 200
    await one.notify(lambda n: state(n).startswith("pending"))
    await two.notify(lambda n: state(n).startswith("pending"))
    await until(lambda: len(juliet.presences) > 1)
    asks = [p for p in juliet.presences if p.xml.get("type") == "subscribe"]
    assert len(asks) == 1  # two dialogs, one XMPP subscription
    assert len(rig.service.s2x.watches) == 1

    juliet.xmpp.send_presence(pto=bob, ptype="unsubscribed")
    for w in (one, two):
        end = await w.notify(lambda n: state(n).startswith("terminated"))
        assert "reason=rejected" in state(end) and not end.body  # R8048-11, nothing leaks
    await until(lambda: not rig.service.s2x.by_dialog)


async def test_a_watcher_that_never_answers_notify_is_cleaned_up(
    rig: Rig, xmpp_account: Callable[..., Account], watchers: WatcherFactory
) -> None:
    acct = xmpp_account("juliet")
    mute = await watchers("carol@sip.localhost", silent=True)
    assert (await mute.subscribe(rig.port, acct.jid, 60)).status == 200
    await mute.notify(lambda n: state(n).startswith("pending"))
    assert rig.service.s2x.by_dialog
    # Timer F (64*T1) on the NOTIFY: the subscription is removed (RFC 6665 §4.2.2)
    await until(lambda: not rig.service.s2x.by_dialog)
    assert not [r for r in rig.store.all_subscriptions() if r.direction == "s2x"]


async def test_sipp_watcher(
    rig: Rig, xmpp_account: Callable[..., Account], xmpp_client: ClientFactory, sipp: Sipp
) -> None:
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    quiet(juliet)
    user = acct.jid.split("@")[0]
    run = asyncio.create_task(
        asyncio.to_thread(
            sipp.run,
            "presence_watcher_uac.xml",
            remote=f"{LOOPBACK}:{rig.port}",
            keys={"to_user": user},
            timeout=40,
        )
    )
    await juliet.wait_presence(
        lambda p: p.xml.get("type") == "subscribe" and p["from"] == "dave@sip.localhost", LIMIT
    )
    juliet.xmpp.send_presence(pto="dave@sip.localhost", ptype="subscribed")
    result = await run
    assert result.ok, result.describe()
    await until(lambda: not rig.service.s2x.by_dialog)


async def test_notify_answered_481_ends_the_subscription(
    rig: Rig,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    watchers: WatcherFactory,
) -> None:
    """RFC 6665 §4.2.2: a 481 to a NOTIFY removes the dialog (and, with no dialog left,
    the watch sends `unavailable` to the contact: R8048-13)."""
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    quiet(juliet)
    gone = await watchers("erin@sip.localhost", body_status=481)
    ok = await gone.subscribe(rig.port, acct.jid, 60)
    assert ok.status == 200
    await juliet.wait_presence(
        lambda p: p.xml.get("type") == "subscribe" and p["from"] == "erin@sip.localhost", LIMIT
    )
    assert rig.service.s2x.by_dialog
    juliet.xmpp.send_presence(pto="erin@sip.localhost", ptype="subscribed")
    await gone.notify(lambda n: bool(n.body))
    await until(lambda: not rig.service.s2x.by_dialog)
    assert not [r for r in rig.store.all_subscriptions() if r.direction == "s2x"]
    bye = await juliet.wait_presence(
        lambda p: p.xml.get("type") == "unavailable" and p["from"] == "erin@sip.localhost", LIMIT
    )
    assert bye is not None


class _Fanout(BenchWatchers):
    """bench.watchers' lean UDP watchers, also keeping every NOTIFY (parsed) per watcher."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.got: list[list[SipRequest]] = [[] for _ in range(self.count)]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        super().datagram_received(data, addr)
        if data.startswith(b"NOTIFY "):
            msg = parse_message(data)
            assert isinstance(msg, SipRequest)
            i = int((msg.call_id or "").split("-", 1)[0][2:])
            self.got[i].append(msg)


async def test_one_change_fans_out_to_200_watchers(
    rig: Rig, xmpp_account: Callable[..., Account], xmpp_client: ClientFactory
) -> None:
    """200 SIP watchers of one XMPP user (each its own dialog through the gateway, the
    user approving each): one presence change reaches every watcher exactly once, with
    the same PIDF, in a NOTIFY whose CSeq follows the dialog's earlier ones."""
    n = 200
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)  # approves every subscribe (the client's default)
    loop = asyncio.get_running_loop()
    _, ws = await loop.create_datagram_endpoint(
        lambda: _Fanout((LOOPBACK, rig.port), "sip.localhost", f"sip:{acct.jid}", n),
        local_addr=(LOOPBACK, 0),
    )
    try:
        await asyncio.wait_for(ws.subscribe_all(rate=200), LIMIT)
        assert all(w.subscribed for w in ws.watchers)
        await until(
            lambda: all(w.state == b"active" and w.with_body for w in ws.watchers),
            timeout=60,
            what="every watcher active with a PIDF",
        )
        # every watch past its RFC 3856 throttle interval (1 s in this rig)
        await until(lambda: time.time() - ws.last_notify > 1.5, what="no NOTIFY for 1.5 s")
        before = [max(cseq_of(m) for m in got) for got in ws.got]
        juliet.send_raw("<presence><status>fan-out one</status></presence>")
        await until(
            lambda: all(any(b"fan-out one" in m.body for m in got) for got in ws.got),
            timeout=60,
            what="every watcher notified of the change",
        )
        await until(lambda: time.time() - ws.last_notify > 1.5, what="no NOTIFY for 1.5 s")
    finally:
        assert ws.transport is not None
        ws.transport.close()
    bodies = set()
    for i, got in enumerate(ws.got):
        after = {cseq_of(m): m for m in got if cseq_of(m) > before[i]}  # by CSeq: retransmissions
        assert len(after) == 1, (i, sorted(after))
        (notify,) = after.values()
        assert b"fan-out one" in notify.body
        assert state(notify).startswith("active")
        assert cseq_of(notify) == before[i] + 1
        bodies.add(notify.body)
        cseqs = [cseq_of(m) for m in got]
        assert cseqs == sorted(cseqs)  # each dialog's NOTIFYs arrived in CSeq order
    assert len(bodies) == 1  # one PIDF for the one state
    doc = parse_pidf(bodies.pop())
    assert [t.basic for t in doc.tuples] == ["open"]
    assert [n.text for t in doc.tuples for n in t.notes] == ["fan-out one"]

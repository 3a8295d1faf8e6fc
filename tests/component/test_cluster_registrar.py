"""Two instances over one store (issue 21, docs/cluster.md): each `Registrar` finds the
bindings the other committed (read through the store, cached `binding_cache` seconds),
only the REGISTRAR_EXPIRY lease owner removes expired bindings from the store, and a
single process keeps its in-memory table as the truth (the fast path). The offline
queues deliver from the OFFLINE_QUEUE lease owner only, and from the survivor once it
takes the lease over."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.offline.service import OfflineService
from gateway.cluster.keeper import OFFLINE_QUEUE, REGISTRAR_EXPIRY, LeaseKeeper
from gateway.cluster.lease import LeasePolicy
from gateway.config import (
    AdminConfig,
    ClusterConfig,
    ComponentConfig,
    Config,
    DnsConfig,
    GatewaySection,
    OfflineSection,
    RateLimitsConfig,
    RegistrarConfig,
    SipConfig,
    XmppConfig,
)
from gateway.metrics import Metrics
from gateway.registrar.delivery import NoBinding
from gateway.registrar.service import Registrar
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.uri import parse_uri
from gateway.store.api import Binding, Flow, StoredMessage
from gateway.store.memory import MemoryStore

pytestmark = pytest.mark.component

DOMAIN = "sip.localhost"
AOR = f"sip:romeo@{DOMAIN}"
NOW = 1_000_000.0
POLICY = LeasePolicy(ttl=15.0, renew_every=5.0, margin=3.0)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.sent: list[SipRequest] = []

    async def request(self, req: SipRequest, target: Target, **_: object) -> SipResponse:
        self.sent.append(req)
        return make_response(req, 200, to_tag="x")


def binding(port: int, expires: float = 600.0) -> Binding:
    return Binding(
        aor=AOR,
        contact=f"sip:romeo@192.0.2.7:{port}",
        expires_at=NOW + expires,
        call_id=f"reg-{port}",
        cseq=1,
        flow=Flow("udp", "127.0.0.1:5060", f"198.51.100.1:{port}"),
        updated_at=NOW,
    )


def config(tmp_path: Path, cluster: bool, name: str) -> Config:
    return Config(
        gateway=GatewaySection(state_dir=tmp_path / name),
        xmpp=XmppConfig(components=(ComponentConfig(DOMAIN, "s3cret"),)),
        sip=SipConfig(hosted_domains=(DOMAIN,), served_xmpp_domains=("localhost",)),
        registrar=RegistrarConfig(),
        rate_limits=RateLimitsConfig(),
        dns=DnsConfig(),
        admin=AdminConfig(enabled=False),
        cluster=ClusterConfig(enabled=cluster, instance_id=name, binding_cache=1.0),
    )


@dataclass
class Instance:
    registrar: Registrar
    keeper: LeaseKeeper
    endpoint: Recorder


@dataclass
class Pair:
    a: Instance
    b: Instance
    store: MemoryStore
    clock: Clock


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    store, clock = MemoryStore(), Clock()
    made = []
    for name in ("a", "b"):
        keeper = LeaseKeeper(store, name, (REGISTRAR_EXPIRY, OFFLINE_QUEUE), POLICY, clock=clock)
        keeper.tick()  # a claims first: a owns both leases
        endpoint = Recorder()
        reg = Registrar(
            config(tmp_path, True, name),
            store,
            endpoint,  # type: ignore[arg-type]
            Metrics(),
            clock=clock,
            leases=keeper,
        )
        await reg.start()
        made.append(Instance(reg, keeper, endpoint))
    yield Pair(made[0], made[1], store, clock)
    for inst in made:
        await inst.registrar.stop()


async def test_a_binding_committed_by_one_instance_is_found_by_the_other(pair: Pair) -> None:
    with pytest.raises(NoBinding):
        pair.b.registrar.locate(AOR)  # read now: nothing yet
    pair.store.set_bindings(AOR, [binding(40001)])  # instance a's REGISTER committed this
    # b read the AOR a moment ago: within binding_cache it answers from its cache
    with pytest.raises(NoBinding):
        pair.b.registrar.locate(AOR)
    pair.clock.now += 1.0
    assert [b.contact for b in pair.b.registrar.locate(AOR)] == ["sip:romeo@192.0.2.7:40001"]
    response = await pair.b.registrar.send_to_user(AOR, _message)
    assert response.status == 200 and len(pair.b.endpoint.sent) == 1
    # removed through a: b stops delivering once its cached copy is older than the cache
    pair.store.set_bindings(AOR, [])
    pair.clock.now += 1.0
    with pytest.raises(NoBinding):
        pair.b.registrar.locate(AOR)


async def test_one_process_keeps_its_table_as_the_truth(tmp_path: Path) -> None:
    """The single-process fast path never reads the store after start."""
    store = MemoryStore()
    reg = Registrar(config(tmp_path, False, "solo"), store, Recorder(), Metrics())  # type: ignore[arg-type]
    await reg.start()
    store.set_bindings(AOR, [binding(40001)])  # written behind its back
    with pytest.raises(NoBinding):
        reg.locate(AOR)
    await reg.stop()


async def test_only_the_lease_owner_removes_expired_bindings(pair: Pair) -> None:
    pair.store.set_bindings(AOR, [binding(40001, expires=30.0), binding(40002)])
    pair.clock.now += 1.0
    assert len(pair.b.registrar.locate(AOR)) == 2
    pair.clock.now = NOW + 31
    for inst in (pair.a, pair.b):  # both keep their leases fresh (a owns them)
        inst.keeper.tick()
    assert pair.b.registrar.sweep_store() == 0  # b does not own REGISTRAR_EXPIRY
    assert len(pair.store.bindings(AOR)) == 2
    assert pair.a.registrar.sweep_store() == 1
    assert [b.contact for b in pair.store.bindings(AOR)] == ["sip:romeo@192.0.2.7:40002"]


async def test_the_survivor_takes_the_expiry_sweep_over(pair: Pair) -> None:
    pair.store.set_bindings(AOR, [binding(40001, expires=60.0)])
    pair.b.keeper.tick()
    assert not pair.b.keeper.holds(REGISTRAR_EXPIRY)
    # a is killed: it renews no more. b takes over once a's lease lapsed.
    pair.clock.now += POLICY.ttl
    pair.b.keeper.tick()
    assert pair.b.keeper.holds(REGISTRAR_EXPIRY)
    pair.clock.now = NOW + 61
    pair.b.keeper.tick()
    assert pair.b.registrar.sweep_store() == 1
    assert pair.store.bindings(AOR) == ()


async def test_a_takeover_sweeps_at_once(pair: Pair) -> None:
    pair.store.set_bindings(AOR, [binding(40001, expires=10.0)])
    pair.clock.now = NOW + POLICY.ttl  # a is gone; the binding expired meanwhile
    pair.b.keeper.tick()  # b takes REGISTRAR_EXPIRY over: its on_gain schedules a sweep
    assert pair.b.keeper.holds(REGISTRAR_EXPIRY)
    await asyncio.sleep(0)
    assert pair.store.bindings(AOR) == ()


def _message(uri: str) -> SipRequest:
    return SipRequest(
        "MESSAGE",
        parse_uri(uri),
        Headers(
            [
                ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKc1"),
                ("From", "<sip:juliet@localhost>;tag=t"),
                ("To", f"<{AOR}>"),
                ("Call-ID", "m1"),
                ("CSeq", "1 MESSAGE"),
            ]
        ),
        b"hi",
    )


# -- the offline queue: deliveries from the OFFLINE_QUEUE lease owner only


class FakeLinks:
    def component(self, domain: str) -> Any:
        raise AssertionError("no stanza expected")

    def send(self, domain: str, stanza: Any) -> bool:
        raise AssertionError("no stanza expected")


def stored(n: int) -> StoredMessage:
    return StoredMessage(
        message_id=f"id{n}", aor=AOR, stored_at=NOW, expires_at=NOW + 3600,
        sender="juliet@localhost/balcony", stanza_id=f"s{n}", component=DOMAIN,
        recipient="romeo@sip.localhost", from_uri="sip:juliet@localhost", call_id=f"c{n}",
        content_type="text/plain", body=f"text {n}".encode(),
    )  # fmt: skip


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0.01)


async def test_offline_queue_delivers_from_the_owner_then_the_survivor(pair: Pair) -> None:
    cfg = replace(OfflineSection(), notice=False)
    queues = [
        OfflineService(
            cfg,
            pair.store,
            inst.registrar,
            FakeLinks(),
            clock=pair.clock,
            leases=inst.keeper,
            resync_every=3600.0,  # resync driven by the test
        )
        for inst in (pair.a, pair.b)
    ]
    for q in queues:
        await q.start()
    queues[1].offer(stored(1))  # stored through b while romeo is offline
    pair.store.set_bindings(AOR, [binding(40001)])  # registered through b
    pair.clock.now += 1.0
    queues[1].resync()  # b does not own the lease: it delivers nothing
    await settle()
    assert pair.b.endpoint.sent == [] and len(pair.store.messages(AOR)) == 1
    # a is killed before its resync; b takes the lease over and delivers
    pair.clock.now += POLICY.ttl
    pair.b.keeper.tick()
    await settle()
    assert [r.body for r in pair.b.endpoint.sent] == [b"text 1"]
    assert pair.a.endpoint.sent == []
    assert pair.store.messages(AOR) == ()
    for q in queues:
        await q.stop()

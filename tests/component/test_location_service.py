"""Issue 23: every request the gateway originates to a URI of a hosted domain goes
through the location service (the registrar's bindings), never DNS.

A real `Registrar` (bindings restored from a `MemoryStore`), `SipRouter` and
`PresenceContext`, with a resolver whose DNS is disabled (any lookup raises
"DNS is disabled") and an endpoint that records what it is asked to send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.bridge.presence.context import PresenceConfig, PresenceContext, SendFailed
from gateway.bridge.presence.scheduler import Scheduler
from gateway.bridge.routing import SipRouter
from gateway.config import (
    AdminConfig,
    ComponentConfig,
    Config,
    DnsConfig,
    GatewaySection,
    RateLimitsConfig,
    RegistrarConfig,
    SipConfig,
    XmppConfig,
)
from gateway.metrics import Metrics
from gateway.registrar.bindings import public_gruu
from gateway.registrar.delivery import NoBinding
from gateway.registrar.service import Registrar
from gateway.resolver.resolver import Resolver
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.uri import parse_uri
from gateway.store.api import Binding, Flow
from gateway.store.memory import MemoryStore

pytestmark = pytest.mark.component

DOMAIN = "sip.localhost"
AOR = f"sip:romeo@{DOMAIN}"
NOW = 1_000_000.0
PHONE = "<urn:uuid:00000000-0000-0000-0000-000000000001>"
DESK = "<urn:uuid:00000000-0000-0000-0000-000000000002>"


@dataclass
class Recorder:
    sent: list[tuple[SipRequest, Target]] = field(default_factory=list)
    status: int = 200

    async def request(self, req: SipRequest, target: Target, **_: object) -> SipResponse:
        self.sent.append((req, target))
        return make_response(req, self.status, to_tag="x")


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def binding(
    instance: str, port: int, *, path: tuple[str, ...] = (), updated: float = NOW
) -> Binding:
    return Binding(
        aor=AOR,
        contact=f"sip:romeo@192.0.2.7:{port}",
        expires_at=NOW + 600,
        call_id=f"reg-{port}",
        cseq=1,
        instance=instance,
        flow=Flow("udp", "127.0.0.1:5060", f"198.51.100.1:{port}"),
        path=path,
        updated_at=updated,
    )


@dataclass
class World:
    registrar: Registrar
    endpoint: Recorder
    ctx: PresenceContext
    router: SipRouter
    clock: Clock
    store: MemoryStore


@pytest.fixture
async def world(tmp_path: Path) -> World:
    cfg = Config(
        gateway=GatewaySection(state_dir=tmp_path / "state"),
        xmpp=XmppConfig(components=(ComponentConfig(DOMAIN, "s3cret"),)),
        sip=SipConfig(hosted_domains=(DOMAIN,), served_xmpp_domains=("localhost",)),
        registrar=RegistrarConfig(),
        rate_limits=RateLimitsConfig(),
        dns=DnsConfig(),
        admin=AdminConfig(enabled=False),
    )
    store = MemoryStore()
    path = ("<sip:edge.example.net;lr>",)
    store.set_bindings(
        AOR, [binding(PHONE, 40001, path=path), binding(DESK, 40002, updated=NOW - 10)]
    )
    endpoint = Recorder()
    clock = Clock()
    registrar = Registrar(cfg, store, endpoint, Metrics(), clock=clock)  # type: ignore[arg-type]
    await registrar.start()
    resolver = Resolver(DnsConfig())  # no [dns] servers: a lookup raises
    router = SipRouter(cfg, endpoint, resolver, registrar)
    ctx = PresenceContext(
        config=PresenceConfig(contact="sip:presence@127.0.0.1:5060"),
        endpoint=endpoint,
        resolver=resolver,
        xmpp=None,  # type: ignore[arg-type]
        store=store,  # type: ignore[arg-type]
        maps={},
        scheduler=Scheduler(lambda keys, now: None, clock=clock),
        clock=clock,
        router=router,
    )
    yield World(registrar, endpoint, ctx, router, clock, store)
    await registrar.stop()


def notify(target: str, *routes: str) -> SipRequest:
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKloc1"),
        *(("Route", r) for r in routes),
        ("From", "<sip:juliet@localhost>;tag=ours"),
        ("To", f"<{AOR}>;tag=theirs"),
        ("Call-ID", "dialog-1"),
        ("CSeq", "2 NOTIFY"),
        ("Max-Forwards", "70"),
        ("Event", "presence"),
        ("Subscription-State", "active;expires=600"),
    ]
    return SipRequest("NOTIFY", parse_uri(target), Headers(headers))


def gruu(w: World, instance: str) -> str:
    b = next(b for b in w.registrar.bindings(AOR) if b.instance == instance)
    value = public_gruu(b)
    assert value is not None
    return value


async def test_in_dialog_notify_to_a_gruu_goes_to_its_binding_with_path(world: World) -> None:
    """Linphone's case: the SUBSCRIBE's Contact (the dialog's remote target) is the GRUU
    the registrar gave it. The NOTIFY goes to that device's flow, its Request-URI the
    registered contact (no `gr`, RFC 5627 §6.1), its Route the binding's Path (RFC
    3327), the dialog's own Route set dropped; no DNS."""
    target = gruu(world, PHONE)
    response = await world.ctx.send(notify(target, "<sip:stale.example.org;lr>"))
    assert response.status == 200
    [(sent, where)] = world.endpoint.sent
    assert str(sent.uri) == "sip:romeo@192.0.2.7:40001"
    assert sent.headers.get_all("Route") == ("<sip:edge.example.net;lr>",)
    assert (where.transport, where.address, where.port) == ("udp", "198.51.100.1", 40001)
    assert sent.call_id == "dialog-1" and sent.cseq is not None and sent.cseq.seq == 2


async def test_gruu_selects_one_device_not_the_aor(world: World) -> None:
    target = gruu(world, DESK)
    await world.ctx.send(notify(target))
    assert [str(r.uri) for r, _ in world.endpoint.sent] == ["sip:romeo@192.0.2.7:40002"]
    assert world.endpoint.sent[0][0].headers.get_all("Route") == ()


async def test_out_of_dialog_message_to_a_gruu_uses_the_same_function(world: World) -> None:
    """SipRouter.send (the pager's path) keeps the `gr` for the lookup."""
    target = parse_uri(gruu(world, DESK))
    response = await world.router.send(target, lambda c: notify(c).replace(method="MESSAGE"))
    assert response.status == 200
    assert [str(r.uri) for r, _ in world.endpoint.sent] == ["sip:romeo@192.0.2.7:40002"]


async def test_aor_target_tries_bindings_in_delivery_order(world: World) -> None:
    world.endpoint.status = 480  # each device answers 480: the next one is tried
    response = await world.ctx.send(notify(AOR))
    assert response.status == 480
    assert [w.port for _, w in world.endpoint.sent] == [40001, 40002]


async def test_gruu_whose_binding_expired_is_480_locally_without_dns(world: World) -> None:
    """RFC 5627 §5.3/§6.1: 480, as a response a notifier acts on (RFC 6665 §4.2.2)."""
    target = gruu(world, PHONE)
    world.clock.now = NOW + 601  # both bindings expired
    with pytest.raises(SendFailed) as failed:
        await world.ctx.send(notify(target))
    assert failed.value.status == 480 and not failed.value.timeout
    assert failed.value.response is not None and failed.value.response.status == 480
    assert "DNS" not in str(failed.value)
    assert world.endpoint.sent == []
    with pytest.raises(NoBinding):
        world.registrar.locate(target)


async def test_unknown_gruu_is_480_too(world: World) -> None:
    with pytest.raises(SendFailed) as failed:
        await world.ctx.send(notify(f"{AOR};gr=aaaaaaaaaaaaaaaa"))
    assert failed.value.status == 480
    assert world.endpoint.sent == []


async def test_hosted_target_never_takes_the_located_memo_fast_path(world: World) -> None:
    done: list[object] = []
    assert world.ctx.send_nowait(notify(gruu(world, PHONE)), lambda r, e: done.append(r)) is False
    assert done == []


async def test_non_hosted_target_still_resolved_as_before(world: World) -> None:
    """A contact that is an IP literal (baresip's) keeps the RFC 3263 path and memo."""
    response = await world.ctx.send(notify("sip:romeo@192.0.2.9:5070"))
    assert response.status == 200
    [(_, where)] = world.endpoint.sent
    assert (where.address, where.port) == ("192.0.2.9", 5070)

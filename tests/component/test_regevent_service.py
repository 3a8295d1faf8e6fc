"""`bridge/regevent/service.RegEventService`: the reg event notifier glue (RFC 3680) over
doubles of the registrar slice, the sender and the authorizer; the store is MemoryStore.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from gateway.bridge.presence.context import PresenceConfig
from gateway.bridge.presence.records import is_presence_record
from gateway.bridge.regevent.service import RegEventService, is_reg_record
from gateway.config import RegEventSection
from gateway.registrar.bindings import BindingsChange
from gateway.registrar.service import Identity
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.uri import parse_uri
from gateway.store.api import Binding
from gateway.store.memory import MemoryStore
from mappings.reginfo import parse_reginfo

COMP = "sip.localhost"
ALICE = f"sip:alice@{COMP}"
NOW = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Ctx:
    """The slice of `PresenceContext` the service uses: config, store, send."""

    def __init__(self) -> None:
        self.config = PresenceConfig(contact="sip:gw@127.0.0.1:5060")
        self.store = MemoryStore()
        self.sent: list[SipRequest] = []

    async def send(self, request: SipRequest) -> SipResponse:
        self.sent.append(request)
        return make_response(request, 200)


class Registrar:
    def __init__(self) -> None:
        self.table: dict[str, list[Binding]] = {}
        self.listeners: list[Callable[[BindingsChange], None]] = []

    def is_hosted(self, domain: str) -> bool:
        return domain == COMP

    def bindings(self, aor: str) -> list[Binding]:
        return list(self.table.get(aor, []))

    def on_bindings_change(self, callback: Callable[[BindingsChange], None]) -> None:
        self.listeners.append(callback)

    def change(self, after: list[Binding], now: float, cause: str = "register") -> None:
        before = tuple(self.table.get(ALICE, []))
        self.table[ALICE] = after
        for cb in self.listeners:
            cb(BindingsChange(ALICE, before, tuple(after), cause, now))  # type: ignore[arg-type]


class Incoming:
    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.to_tag = "gwtag"
        self.transport = "udp"
        self.responses: list[SipResponse] = []

    def reply(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self.responses.append(make_response(self.request, status, reason, headers=headers))

    def respond(self, response: SipResponse) -> None:
        self.responses.append(response)


def subscribe(sender: str = ALICE, *, expires: int = 600, to_tag: str | None = None,
              body: bytes = b"", cseq: int = 1) -> Incoming:  # fmt: skip
    to = f"<{ALICE}>" + (f";tag={to_tag}" if to_tag else "")
    items = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKsub" + str(cseq)),
        ("From", f"<{sender}>;tag=watcher"),
        ("To", to),
        ("Call-ID", "reg-1"),
        ("CSeq", f"{cseq} SUBSCRIBE"),
        ("Contact", "<sip:alice@127.0.0.1:5070>"),
        ("Event", "reg"),
        ("Accept", "application/reginfo+xml"),
        ("Expires", str(expires)),
    ]
    if body:
        items.append(("Content-Type", "application/xml"))
    return Incoming(SipRequest("SUBSCRIBE", parse_uri(ALICE), Headers(items), body))


def binding(port: int, expires: float = 600) -> Binding:
    return Binding(ALICE, f"sip:alice@127.0.0.1:{port}", NOW + expires, "c", 1, updated_at=NOW)


def service(identity: Identity | None, **cfg: Any) -> tuple[RegEventService, Ctx, Registrar, Clock]:
    ctx, registrar, clock = Ctx(), Registrar(), Clock()
    registrar.table[ALICE] = [binding(5070)]
    svc = RegEventService(
        RegEventSection(**cfg),
        ctx,  # type: ignore[arg-type]
        registrar,
        authorize=lambda _incoming, _kind: identity,
        clock=clock,
    )
    return svc, ctx, registrar, clock


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def bodies(ctx: Ctx) -> list[tuple[int, str, tuple[tuple[str, str], ...]]]:
    out = []
    for req in ctx.sent:
        doc = parse_reginfo(req.body)
        (reg,) = doc.registrations
        out.append((doc.version, doc.state, tuple((c.uri, c.event) for c in reg.contacts)))
    return out


async def test_own_user_gets_full_state_and_the_dialog_is_stored() -> None:
    svc, ctx, _, _ = service(Identity(ALICE, None, "registered-flow"))
    incoming = subscribe()
    await svc.route(lambda _i: None)(incoming)  # type: ignore[misc]
    await settle()
    assert [r.status for r in incoming.responses] == [200]
    assert bodies(ctx) == [(0, "full", (("sip:alice@127.0.0.1:5070", "registered"),))]
    (rec,) = ctx.store.all_subscriptions()
    assert is_reg_record(rec) and not is_presence_record(rec)
    assert rec.target == ALICE and rec.state == "active"


@pytest.mark.parametrize(
    ("identity", "status"),
    [
        (Identity("sip:bob@sip.localhost", None, "digest"), 403),
        (Identity("sip:mallory@evil.example", None, "federation"), 403),
        (Identity("sip:bot@ops.example", None, "trusted-peer"), 200),  # provisioned automaton
    ],
)
async def test_only_the_user_or_a_trusted_peer(identity: Identity, status: int) -> None:
    svc, ctx, _, _ = service(identity)
    incoming = subscribe(identity.aor)
    await svc.handle_subscribe(incoming)  # type: ignore[misc]
    assert [r.status for r in incoming.responses] == [status]
    assert bool(list(ctx.store.all_subscriptions())) is (status == 200)


async def test_other_domains_bodies_and_other_events_are_not_served() -> None:
    svc, _, _, _ = service(Identity(ALICE, None, "digest"))
    with_body = subscribe(body=b"<filter/>")
    await svc.handle_subscribe(with_body)  # type: ignore[misc]
    assert [r.status for r in with_body.responses] == [415]
    presence = subscribe()
    presence.request = presence.request.replace(
        headers=presence.request.headers.remove("Event").add("Event", "presence")
    )
    assert not svc.owns(presence.request)  # left to presence
    passed: list[Any] = []
    svc.route(passed.append)(presence)
    assert passed == [presence]


async def test_changes_in_the_interval_go_as_one_partial_document() -> None:
    svc, ctx, registrar, clock = service(Identity(ALICE, None, "digest"), notify_interval=5.0)
    incoming = subscribe()
    await svc.handle_subscribe(incoming)  # type: ignore[misc]
    await settle()
    did = next(iter(svc.subs))
    clock.now += 1
    registrar.change([binding(5070), binding(5071)], clock.now)  # registered
    registrar.change([binding(5071)], clock.now)  # the first one unregistered
    await settle()
    assert len(ctx.sent) == 1  # held by the throttle (RFC 3680 §4.10)
    assert svc.scheduler.get(("reg-throttle", did)) == NOW + 5
    clock.now = NOW + 5
    svc._fire([("reg-throttle", did)], clock.now)
    await settle()
    assert bodies(ctx)[1:] == [
        (1, "partial", (("sip:alice@127.0.0.1:5071", "registered"),
                        ("sip:alice@127.0.0.1:5070", "unregistered"))),
    ]  # fmt: skip
    # everything gone: the registration is terminated in the partial document
    clock.now += 10
    registrar.change([], clock.now, "expired")
    await settle()
    doc = parse_reginfo(ctx.sent[-1].body)
    assert doc.version == 2 and doc.registrations[0].state == "terminated"
    assert doc.registrations[0].contacts[0].event == "expired"


async def test_refresh_and_fetch_get_the_full_state() -> None:
    svc, ctx, _, _ = service(Identity(ALICE, None, "digest"))
    await svc.handle_subscribe(subscribe())  # type: ignore[misc]
    await settle()
    refresh = subscribe(to_tag="gwtag", cseq=2)
    assert svc.owns(refresh.request)
    svc.handle_subscribe(refresh)
    await settle()
    assert [r.status for r in refresh.responses] == [200]
    assert [(v, s) for v, s, _ in bodies(ctx)] == [(0, "full"), (1, "full")]
    fetch_svc, fetch_ctx, _, _ = service(Identity(ALICE, None, "digest"))
    await fetch_svc.handle_subscribe(subscribe(expires=0))  # type: ignore[misc]
    await settle()
    assert list(fetch_ctx.store.all_subscriptions()) == []  # a fetch is not stored
    (notify,) = fetch_ctx.sent
    assert notify.headers.get("Subscription-State", "").startswith("terminated")
    assert parse_reginfo(notify.body).state == "full"


async def test_restored_subscription_continues_its_versions() -> None:
    svc, ctx, _, _ = service(Identity(ALICE, None, "digest"))
    await svc.handle_subscribe(subscribe())  # type: ignore[misc]
    await settle()
    records = [r for r in ctx.store.all_subscriptions() if is_reg_record(r)]
    again, ctx2, registrar2, clock2 = service(Identity(ALICE, None, "digest"), notify_interval=0)
    assert again.restore(records) == 1
    clock2.now += 1
    registrar2.change([binding(5070), binding(5072)], clock2.now)
    await settle()
    (notify,) = ctx2.sent
    assert parse_reginfo(notify.body).version == 1  # after the stored version 0
    assert notify.call_id == "reg-1"

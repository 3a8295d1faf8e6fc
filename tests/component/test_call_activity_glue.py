"""`bridge/presence/activity.CallActivity`: the call-activity glue over doubles of the
registrar slice and the presence context (docs/call-activity.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

import pytest

from gateway.bridge.presence import activity as activity_module
from gateway.bridge.presence.activity import CallActivity
from gateway.bridge.presence.context import PresenceConfig
from gateway.registrar.bindings import BindingsChange
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.uri import parse_uri
from gateway.store.api import Binding, Publication
from mappings.callactivity import CallDisplay
from mappings.dialoginfo import Dialog, DialogInfo, build_dialog_info
from mappings.pidf import Note, PresenceDocument, Tuple
from mappings.presence import XmppPresence

ALICE = "sip:alice@sip.localhost"
DEVICE = "sip:alice@127.0.0.1:5070"
NOW = 1_000_000.0
BASE = PresenceDocument(ALICE, (Tuple("ID-desk", "open", notes=(Note("Working", "en"),)),))


class Scheduler:
    def __init__(self) -> None:
        self.at: dict[Hashable, float | None] = {}

    def set(self, key: Hashable, at: float | None) -> None:
        self.at[key] = at

    def cancel(self, key: Hashable) -> None:
        self.at.pop(key, None)


class Ctx:
    def __init__(self) -> None:
        self.config = PresenceConfig(contact="sip:gw@127.0.0.1:5060")
        self.scheduler = Scheduler()
        self.sent: list[SipRequest] = []

    def clock(self) -> float:
        return NOW

    async def send(self, request: SipRequest) -> SipResponse:
        self.sent.append(request)
        return make_response(request, 200, to_tag="dev")


class Registrar:
    def __init__(self) -> None:
        self.pubs: list[Publication] = []
        self.listeners: list[Callable[[BindingsChange], None]] = []
        self.delivered: list[SipRequest] = []

    def publications(self, aor: str, event_package: str) -> tuple[Publication, ...]:
        return tuple(p for p in self.pubs if p.aor == aor and p.event == event_package)

    def on_bindings_change(self, callback: Callable[[BindingsChange], None]) -> None:
        self.listeners.append(callback)

    def resource_for(self, aor: str, contact_or_instance: str) -> str | None:
        return "res"

    async def send_to_user(
        self, aor: str, build: Callable[[str], SipRequest], *, resource: str | None = None
    ) -> SipResponse:
        request = build(DEVICE)
        self.delivered.append(request)
        return make_response(request, 200, to_tag="dev")


def dialog_doc(version: int, state: str) -> bytes:
    return build_dialog_info(
        DialogInfo(ALICE, version, "full", (Dialog("d1", state),))  # type: ignore[arg-type]
    )


def make(mode: str = "auto") -> tuple[CallActivity, Ctx, Registrar, list[str]]:
    ctx, registrar, changed = Ctx(), Registrar(), []
    act = CallActivity(
        CallDisplay(),
        ctx,
        registrar,
        subscribe_dialog=mode,
        changed=changed.append,  # type: ignore[arg-type]
    )
    return act, ctx, registrar, changed


def register(allow_events: str | None) -> SipRequest:
    items = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKreg"),
        ("From", f"<{ALICE}>;tag=r"),
        ("To", f"<{ALICE}>"),
        ("Call-ID", "reg"),
        ("CSeq", "1 REGISTER"),
        ("Contact", f"<{DEVICE}>"),
    ]
    if allow_events:
        items.append(("Allow-Events", allow_events))
    return SipRequest("REGISTER", parse_uri("sip:sip.localhost"), Headers(items))


class Incoming:
    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.responses: list[int] = []

    def respond(self, response: SipResponse) -> None:
        self.responses.append(response.status)


def notify(
    act: CallActivity, body: bytes, cseq: int, state: str = "active;expires=600"
) -> Incoming:
    (key,) = act.watches
    call_id, tag = key
    items = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKn" + str(cseq)),
        ("From", f"<{ALICE}>;tag=dev"),
        ("To", f"<{ALICE}>;tag={tag}"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Contact", f"<{DEVICE}>"),
        ("Event", "dialog"),
        ("Subscription-State", state),
    ]
    if body:
        items.append(("Content-Type", "application/dialog-info+xml"))
    return Incoming(SipRequest("NOTIFY", parse_uri("sip:gw@127.0.0.1:5060"), Headers(items), body))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_published_dialogs_show_the_call_and_its_end_restores_the_base() -> None:
    act, _, registrar, _ = make()
    before = act.presences(ALICE, BASE)
    assert before == [XmppPresence("desk", statuses=(("Working", "en"),))]
    pub = Publication(ALICE, "e1", "dialog", NOW + 600, dialog_doc(0, "confirmed"),
                      "application/dialog-info+xml")  # fmt: skip
    registrar.pubs = [pub]
    assert act.presences(ALICE, BASE) == [
        XmppPresence("desk", show="dnd", statuses=(("On the phone (Working)", "en"),))
    ]
    registrar.pubs = [Publication(ALICE, "e2", "dialog", NOW + 600, dialog_doc(1, "terminated"),
                                  "application/dialog-info+xml")]  # fmt: skip
    assert act.presences(ALICE, BASE) == before
    registrar.pubs = [Publication(ALICE, "e3", "dialog", NOW + 600, b"<broken",
                                  "application/dialog-info+xml")]  # fmt: skip
    assert act.presences(ALICE, BASE) == before  # a corrupt stored body is skipped
    assert act.presences(ALICE, None) == [XmppPresence(available=False)]


@pytest.mark.parametrize(
    ("mode", "allow", "subscribed"),
    [
        ("auto", "presence, dialog", True),
        ("auto", "presence", False),
        ("auto", None, False),
        ("always", None, True),
        ("never", "dialog", False),
    ],
)
async def test_when_the_gateway_subscribes(mode: str, allow: str | None, subscribed: bool) -> None:
    act, _, registrar, _ = make(mode)
    act.saw_register(ALICE, register(allow))
    await settle()
    assert bool(registrar.delivered) is subscribed
    if subscribed:
        (sub,) = registrar.delivered
        assert str(sub.uri) == DEVICE and sub.event is not None and sub.event.package == "dialog"
        assert sub.headers.get("Accept") == "application/dialog-info+xml"
    act.saw_register(ALICE, register(allow))  # a refresh: no second subscription
    await settle()
    assert len(registrar.delivered) == int(subscribed)


async def test_notifies_drive_the_call_and_hostile_ones_get_400() -> None:
    act, _, _, changed = make()
    act.saw_register(ALICE, register("dialog"))
    await settle()
    first = notify(act, dialog_doc(0, "confirmed"), 1)
    assert act.handle_notify(first)
    assert first.responses == [200] and changed == [ALICE] and act.calling(ALICE)
    hostile = notify(act, b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>', 2)
    assert act.handle_notify(hostile)
    assert hostile.responses == [400] and act.calling(ALICE)  # table unchanged
    ended = notify(act, dialog_doc(1, "terminated"), 3)
    act.handle_notify(ended)
    assert ended.responses == [200] and changed == [ALICE, ALICE] and not act.calling(ALICE)
    stranger = notify(act, b"", 4)
    stranger.request = stranger.request.replace(
        headers=stranger.request.headers.remove("Call-ID").add("Call-ID", "other")
    )
    assert not act.handle_notify(stranger)  # not ours: presence answers 481


async def test_the_binding_going_ends_the_subscription_and_the_call() -> None:
    act, _, registrar, changed = make()
    act.saw_register(ALICE, register("dialog"))
    await settle()
    act.handle_notify(notify(act, dialog_doc(0, "early"), 1))
    assert act.calling(ALICE) and changed == [ALICE]
    gone = Binding(ALICE, DEVICE, NOW - 1, "reg", 1)
    for cb in registrar.listeners:
        cb(BindingsChange(ALICE, (gone,), (), "expired", NOW))
    assert act.watches == {} and not act.calling(ALICE) and changed == [ALICE, ALICE]


async def test_dialog_subscriptions_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activity_module, "MAX_WATCHES", 1)
    act, _, registrar, _ = make("always")
    act.saw_register(ALICE, register(None))
    act.saw_register("sip:bob@sip.localhost", register(None))
    await settle()
    assert len(act.watches) == 1 and len(registrar.delivered) == 1

"""Pure parts of the presence bridge: stanza conversion, backoff, the one-timer scheduler,
address maps and the default config. No sockets, no sleeps (the scheduler is stepped with
a fake clock)."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.stanza import Presence

from gateway.bridge.presence.context import PresenceConfig, domain_maps
from gateway.bridge.presence.scheduler import Scheduler
from gateway.bridge.presence.x2s import backoff
from gateway.config import Addressing, ComponentConfig
from gateway.xmpp.caps import NS_CAPS, Caps
from gateway.xmpp.presence_convert import (
    build_presence,
    build_subscription,
    read_presence,
)
from mappings.addresses import AddressingMode
from mappings.avatar import NS_VCARD_UPDATE, Avatar
from mappings.jid import Jid, parse_jid
from mappings.presence import XmppPresence

pytestmark = pytest.mark.unit

NS = "jabber:component:accept"


def stanza(xml: str) -> Presence:
    return Presence(xml=ET.fromstring(xml))


class FakeComponent:
    caps = Caps("https://node.example/caps", "ver-string=")
    avatars: dict[str, Avatar] = {}  # noqa: RUF012  (bare JID -> avatar; none by default)

    def avatar_of(self, contact: Jid) -> Avatar | None:
        return self.avatars.get(str(contact.bare))

    def __init__(self) -> None:
        self.asked: list[Jid] = []  # the contacts whose caps were asked (issue 22 item 2)

    def caps_for(self, contact: Jid) -> Caps:
        self.asked.append(contact)
        return self.caps

    def make_presence(self, pto: str, pfrom: str, ptype: str | None = None) -> Presence:
        p = Presence(xml=ET.Element(f"{{{NS}}}presence"))
        p.xml.set("to", pto)
        p.xml.set("from", pfrom)
        if ptype is not None:
            p.xml.set("type", ptype)
        return p


# ------------------------------------------------------------------ read_presence


def test_available_presence_with_show_statuses_and_priority() -> None:
    got = read_presence(
        stanza(
            f"<presence xmlns='{NS}' from='juliet@example.com/balcony' to='romeo@sip.example'"
            " xml:lang='en'><show>dnd</show><status>busy</status>"
            "<status xml:lang='de'>beschäftigt</status><priority>-3</priority></presence>"
        )
    )
    assert got is not None and got.kind == "available"
    assert got.sender == parse_jid("juliet@example.com/balcony")
    assert got.presence == XmppPresence(
        resource="balcony",
        show="dnd",
        statuses=(("busy", "en"), ("beschäftigt", "de")),  # xml:lang inherited
        priority=-3,
        lang="en",
    )


@pytest.mark.parametrize(
    ("attr", "kind"),
    [
        ("unavailable", "unavailable"),
        ("subscribe", "subscribe"),
        ("subscribed", "subscribed"),
        ("unsubscribe", "unsubscribe"),
        ("unsubscribed", "unsubscribed"),
        ("probe", "probe"),
    ],
)
def test_presence_types(attr: str, kind: str) -> None:
    got = read_presence(stanza(f"<presence xmlns='{NS}' from='a@b' to='c@d' type='{attr}'/>"))
    assert got is not None and got.kind == kind
    if kind == "unavailable":
        assert got.presence is not None and not got.presence.available
    else:
        assert got.presence is None


def test_unknown_type_is_ignored_and_error_condition_is_read() -> None:
    assert read_presence(stanza(f"<presence xmlns='{NS}' from='a@b' to='c@d' type='x'/>")) is None
    err = read_presence(
        stanza(
            f"<presence xmlns='{NS}' from='a@b' to='d' type='error'><error type='cancel'>"
            "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>"
        )
    )
    assert err is not None and err.kind == "error" and err.error_condition == "item-not-found"


def test_bad_show_and_priority_are_tolerated() -> None:
    got = read_presence(
        stanza(
            f"<presence xmlns='{NS}' from='a@b' to='c@d'><show>sleeping</show>"
            "<priority>lots</priority></presence>"
        )
    )
    assert got is not None and got.presence is not None
    assert got.presence.show is None and got.presence.priority == 0


# ------------------------------------------------------------------ build


def test_build_round_trips_through_read() -> None:
    p = XmppPresence(
        resource="phone",
        show="away",
        statuses=(("at lunch", "en"), ("beim Essen", "de")),
        priority=64,
        lang="en",
    )
    component = FakeComponent()
    out = build_presence(
        component,
        sender=parse_jid("bob@sip.example/phone"),
        recipient=parse_jid("juliet@example.com"),
        presence=p,
    )
    back = read_presence(stanza(ET.tostring(out.xml, encoding="unicode")))
    assert back is not None and back.presence == p
    assert back.recipient == parse_jid("juliet@example.com")
    caps = out.xml.findall(f"{{{NS_CAPS}}}c")  # XEP-0115 §4: one <c/>, the component's
    assert [c.attrib for c in caps] == [
        {"hash": "sha-1", "node": "https://node.example/caps", "ver": "ver-string="}
    ]
    assert component.asked == [parse_jid("bob@sip.example/phone")]  # the sender's own caps


SHA1_BOB = "4e29e873f2ad48c2403d8c7d19bdf9a9948f5742"


class AvatarComponent(FakeComponent):
    avatars = {"bob@sip.example": Avatar("image/png", b"\x89PNG\r\n\x1a\n-bob")}  # noqa: RUF012


@pytest.mark.parametrize("available", [True, False])
def test_photo_hash_in_every_presence_of_a_contact_with_an_avatar(available: bool) -> None:
    """XEP-0153 §3.1, §4.1: <x xmlns='vcard-temp:x:update'><photo>SHA-1 hex</photo></x>."""
    presence = XmppPresence(available=available)
    juliet = parse_jid("juliet@example.com")
    bob = parse_jid("bob@sip.example/phone")
    out = build_presence(AvatarComponent(), sender=bob, recipient=juliet, presence=presence)
    xs = out.xml.findall(f"{{{NS_VCARD_UPDATE}}}x")
    assert len(xs) == 1
    photos = [(c.tag, c.text) for c in xs[0]]
    # sha1(b"\x89PNG\r\n\x1a\n-bob"), computed independently
    assert photos == [(f"{{{NS_VCARD_UPDATE}}}photo", SHA1_BOB)]
    alice = parse_jid("alice@sip.example")
    other = build_presence(AvatarComponent(), sender=alice, recipient=juliet, presence=presence)
    assert other.xml.find(f"{{{NS_VCARD_UPDATE}}}x") is None  # no avatar: no <x/> at all


def test_unavailable_carries_no_priority_and_subscriptions_only_known_types() -> None:
    out = build_presence(
        FakeComponent(),
        sender=parse_jid("bob@sip.example"),
        recipient=parse_jid("juliet@example.com"),
        presence=XmppPresence(available=False, priority=5),
    )
    assert out.xml.get("type") == "unavailable"
    assert not [c for c in out.xml if c.tag.endswith("priority")]
    assert out.xml.find(f"{{{NS_CAPS}}}c") is None  # no capabilities left to describe
    sub = build_subscription(
        FakeComponent(), "subscribed", sender=parse_jid("a@b"), recipient=parse_jid("c@d")
    )
    assert sub.xml.get("type") == "subscribed"
    with pytest.raises(ValueError):
        build_subscription(
            FakeComponent(), "available", sender=parse_jid("a@b"), recipient=parse_jid("c@d")
        )


# ------------------------------------------------------------------ backoff


@settings(max_examples=200)
@given(st.integers(1, 200), st.floats(0, 0.999999))
def test_backoff_is_bounded_and_grows(failures: int, rand: float) -> None:
    d = backoff(failures, 5.0, 900.0, rand)
    assert 2.5 <= d <= 900.0
    assert backoff(failures + 1, 5.0, 900.0, rand) >= d


def test_backoff_doubles_from_the_minimum() -> None:
    assert [backoff(n, 5.0, 60.0, 1.0) for n in range(1, 6)] == [5.0, 10.0, 20.0, 40.0, 60.0]


# ------------------------------------------------------------------ scheduler


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_scheduler_fires_due_keys_in_order_with_a_fake_clock() -> None:
    clock = Clock()
    fired: list[tuple[list[str], float]] = []
    sched: Scheduler[str] = Scheduler(lambda keys, now: fired.append((keys, now)), clock=clock)
    sched.set("b", clock.now + 2)
    sched.set("a", clock.now + 1)
    sched.set("c", clock.now + 3)
    sched.set("c", None)  # cancelled by None
    sched.set("d", clock.now + 1.5)
    sched.cancel("d")
    clock.now += 2
    sched._on_timer()
    assert fired == [(["a", "b"], clock.now)]
    assert len(sched) == 0


def test_scheduler_keeps_running_when_the_owner_fails() -> None:
    clock = Clock()

    def boom(keys: list[str], now: float) -> None:
        raise RuntimeError("owner bug")

    sched: Scheduler[str] = Scheduler(boom, clock=clock)
    sched.set("x", clock.now)
    sched._on_timer()  # logged, not raised
    assert "x" not in sched


def test_scheduler_with_100000_subscriptions() -> None:
    clock = Clock()
    rng = random.Random(7)
    fired: list[int] = []
    sched: Scheduler[int] = Scheduler(lambda keys, now: fired.extend(keys), clock=clock)
    deadlines = {k: clock.now + rng.uniform(0, 3600) for k in range(100_000)}
    for k, at in deadlines.items():
        sched.set(k, at)
    for k in range(0, 100_000, 2):  # every other one refreshed to a later time
        deadlines[k] += 3600
        sched.set(k, deadlines[k])
    clock.now += 3600
    sched._on_timer()
    assert sorted(fired) == list(range(1, 100_000, 2))
    assert len(sched) == 50_000


# ------------------------------------------------------------------ config


def test_domain_maps_and_config_checks() -> None:
    maps = domain_maps(
        (
            ComponentConfig("sip.example", "s"),
            ComponentConfig("gw.example", "s", Addressing.ESCAPED),
        ),
        ("example.com",),
    )
    assert maps["sip.example"].mode is AddressingMode.MIRRORED
    assert maps["gw.example"].mode is AddressingMode.ESCAPED
    assert maps["gw.example"].serves_xmpp("example.com")
    with pytest.raises(ValueError):
        PresenceConfig(contact="sip:presence@127.0.0.1", expires=0)
    with pytest.raises(ValueError):
        PresenceConfig(contact="sip:presence@127.0.0.1", retry_min=10, retry_max=1)
    assert PresenceConfig(contact="sip:p@127.0.0.1").timer_n == 32.0

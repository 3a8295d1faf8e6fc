"""Clean departures and returns (docs/presence.md, "Restart and drain"): what
`PresenceService.depart` sends at stop and `reannounce` at link-up, over restored state.

A real `GatewayComponent` builds the stanzas; the links are a recording double of the
`XmppOut` slice (send, send_confirmed, is_up); the registrar is the `HostedRegistrar`
slice with fixed PIDF documents.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.bridge.presence.context import PresenceConfig, domain_maps
from gateway.bridge.presence.records import hosted_record
from gateway.bridge.presence.service import PresenceService
from gateway.bridge.presence.x2s import Fetch
from gateway.config import ComponentConfig
from gateway.sip.message import Headers, SipRequest
from gateway.sip.uri import parse_uri
from gateway.store.memory import MemoryStore
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.links import LinkDown
from mappings.jid import parse_jid
from mappings.pidf import PresenceDocument, Tuple

COMP = "sip.localhost"
ROMEO, TYBALT = f"sip:romeo@{COMP}", f"sip:tybalt@{COMP}"


class Registrar:
    def __init__(self, docs: dict[str, PresenceDocument]) -> None:
        self.docs = docs

    def is_hosted(self, domain: str) -> bool:
        return domain == COMP

    def presence_of(self, aor: str) -> PresenceDocument | None:
        return self.docs.get(aor)

    def on_presence_change(self, callback: Callable[[str], None]) -> None:
        return None


class Links:
    def __init__(self, comp: GatewayComponent, *, up: bool = True, confirm: bool = True) -> None:
        self.comp, self.up, self.confirm = comp, up, confirm
        self.sent: list[Any] = []
        self.timeouts: list[float | None] = []

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(stanza)
        return True

    async def send_confirmed(self, domain: str, stanza: Any, timeout: float | None = None) -> None:
        self.sent.append(stanza)
        self.timeouts.append(timeout)
        if not self.confirm:
            raise LinkDown(domain, "no confirmation from the server", 0)

    def is_up(self, domain: str) -> bool:
        return self.up

    def component(self, domain: str) -> GatewayComponent:
        return self.comp

    def told(self) -> list[tuple[str, str, str]]:
        return [(s["from"].full, s["to"].bare, s.xml.get("type") or "available") for s in self.sent]


def service(**links_kw: Any) -> tuple[PresenceService, Links]:
    comp = GatewayComponent(ComponentConfig(COMP, "secret"), server="127.0.0.1", port=1)
    links = Links(comp, **links_kw)
    store = MemoryStore()
    store.put_subscription(hosted_record(parse_jid("juliet@localhost"), ROMEO, "active"))
    store.put_subscription(hosted_record(parse_jid("nurse@localhost"), TYBALT, "active"))
    store.put_subscription(hosted_record(parse_jid("paris@localhost"), ROMEO, "pending"))
    registrar = Registrar({ROMEO: PresenceDocument(ROMEO, (Tuple("phone", "open"),))})
    svc = PresenceService(
        PresenceConfig(contact="sip:presence@127.0.0.1:5060"),
        endpoint=object(),  # type: ignore[arg-type]
        resolver=object(),  # type: ignore[arg-type]
        links=links,
        store=store,  # type: ignore[arg-type]
        maps=domain_maps((ComponentConfig(COMP, "secret"),), ("localhost",)),
        registrar=registrar,
        departure_grace=1.5,
    )
    assert svc.restore() == 3
    return svc, links


async def test_link_up_reannounces_restored_hosted_state_and_stop_departs() -> None:
    svc, links = service()
    assert await svc.depart() == 0  # restored, nothing shown yet: nothing to withdraw
    assert links.sent == []

    svc.reannounce(COMP)
    shown = links.told()
    assert [t for t in shown if t[1] == "juliet@localhost"] == [
        (shown[0][0], "juliet@localhost", "available")
    ]
    assert shown[0][0].startswith("romeo@sip.localhost/")
    # an unavailable contact is re-stated too (a crash sent no departure)
    assert ("tybalt@sip.localhost", "nurse@localhost", "unavailable") in shown
    assert not [t for t in shown if t[1] == "paris@localhost"]  # pending: nothing
    links.sent.clear()

    assert await svc.depart() == 1
    assert links.told() == [(shown[0][0], "juliet@localhost", "unavailable")]
    assert links.timeouts == [1.5]  # confirmed within the grace


async def test_departures_with_the_link_down_or_unconfirmed_count_nothing() -> None:
    svc, links = service(up=False)
    svc.reannounce(COMP)
    links.sent.clear()
    assert await svc.depart() == 0
    assert links.sent == []  # not queued behind a closing link

    svc, links = service(confirm=False)
    svc.reannounce(COMP)
    links.sent.clear()
    assert await svc.depart() == 0
    assert [t[2] for t in links.told()] == ["unavailable"]


async def test_on_link_up_reannounces_after_the_current_callbacks() -> None:
    svc, links = service()
    svc.on_link_up(COMP)
    assert links.sent == []  # queued stanzas are flushed first (links.py `_session`)
    await asyncio.sleep(0)
    assert ("tybalt@sip.localhost", "nurse@localhost", "unavailable") in links.told()


class Incoming:
    """The slice of `IncomingRequest` a fetch's NOTIFY uses."""

    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.responses: list[int] = []

    def respond(self, response: Any) -> None:
        self.responses.append(response.status)


def fetch_notify(call_id: str, tag: str, pidf: bytes) -> Incoming:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKfetch"),
            ("From", f"<sip:bob@{COMP}>;tag=remote"),
            ("To", f"<sip:juliet@localhost>;tag={tag}"),
            ("Call-ID", call_id),
            ("CSeq", "1 NOTIFY"),
            ("Event", "presence"),
            ("Subscription-State", "terminated;reason=timeout"),
            ("Content-Type", "application/pidf+xml"),
        ]
    )
    return Incoming(SipRequest("NOTIFY", parse_uri("sip:presence@127.0.0.1"), headers, pidf))


def pidf(basic: str) -> bytes:
    return (
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob@sip.localhost">'
        f'<tuple id="phone"><status><basic>{basic}</basic></status></tuple></presence>'
    ).encode()


async def test_a_prober_that_only_got_a_fetch_answer_gets_unavailable_at_stop() -> None:
    """Issue 22 item 5: no subscription, only a probe (its server's, at login) answered by
    a fetch (R8048-19): the stop tells that prober too, once per resource shown."""
    svc, links = service()
    prober, bob = parse_jid("juliet@localhost/balcony"), parse_jid(f"bob@{COMP}")
    for n, basic in enumerate(("open", "open", "closed"), 1):  # the last fetch: gone again
        fetch = Fetch(prober, bob, COMP, (f"call-{n}", f"tag-{n}"))
        svc.x2s.fetches[fetch.key] = fetch
        incoming = fetch_notify(f"call-{n}", f"tag-{n}", pidf(basic))
        assert svc.x2s.handle_notify(incoming) and incoming.responses == [200]
        if n == 2:
            assert await svc.depart() == 1
            assert links.told()[-1] == (f"bob@{COMP}/phone", "juliet@localhost", "unavailable")
            assert links.sent[-1]["to"].full == "juliet@localhost/balcony"  # who probed
    # two fetches shown, the stop's departure, the third fetch's own answer
    assert [t[2] for t in links.told()] == ["available"] * 2 + ["unavailable"] * 2
    links.sent.clear()
    assert await svc.depart() == 0  # the last answer showed nothing available
    assert links.sent == []

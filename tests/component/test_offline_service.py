"""The offline queue's glue (gateway/bridge/offline/service.py) over a MemoryStore, a fake
registrar and fake links: delivery on registration in store order with the original time
in a Date header, removal only after a 2xx, retries, and the expiry error stanza."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from slixmpp import ComponentXMPP

from gateway.bridge.offline.service import OfflineService, QuotaExceeded
from gateway.config import OfflineSection
from gateway.registrar.delivery import NoBinding
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.useragent import TransactionTimeout
from gateway.store.api import StoredMessage
from gateway.store.memory import MemoryStore

pytestmark = pytest.mark.component

AOR = "sip:romeo@sip.localhost"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRegistrar:
    registered: bool = False
    answers: list[int | None] = field(default_factory=list)  # None: timeout
    sent: list[SipRequest] = field(default_factory=list)
    listeners: list[Callable[[str], None]] = field(default_factory=list)

    def bindings(self, aor: str) -> list[Any]:
        return ["b"] if self.registered else []

    def on_presence_change(self, callback: Callable[[str], None]) -> None:
        self.listeners.append(callback)

    async def send_to_user(
        self, aor: str, build: Callable[[str], SipRequest], *, resource: str | None = None
    ) -> SipResponse:
        if not self.registered:
            raise NoBinding(aor)
        request = build("sip:romeo@127.0.0.1:5070")
        self.sent.append(request)
        status = self.answers.pop(0) if self.answers else 200
        if status is None:
            raise TransactionTimeout("no answer")
        return SipResponse(status, "X", request.headers)

    def register(self) -> None:
        self.registered = True
        for cb in self.listeners:
            cb(AOR)


class FakeLinks:
    def __init__(self) -> None:
        self.xmpp = ComponentXMPP("sip.localhost", "secret", "127.0.0.1", 5347)
        self.sent: list[Any] = []

    def component(self, domain: str) -> Any:
        return self.xmpp

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(stanza)
        return True


def message(n: int) -> StoredMessage:
    return StoredMessage(
        message_id=f"id{n}",
        aor=AOR,
        stored_at=0.0,
        expires_at=0.0,
        sender="juliet@localhost/balcony",
        stanza_id=f"s{n}",
        component="sip.localhost",
        recipient="romeo@sip.localhost",
        from_uri="sip:juliet@localhost;gr=balcony",
        call_id=f"c{n}",
        content_type="text/plain;charset=UTF-8",
        body=f"text {n}".encode(),
    )


@pytest.fixture
def parts() -> tuple[OfflineService, FakeRegistrar, FakeLinks, MemoryStore, Clock]:
    clock, reg, links, store = Clock(), FakeRegistrar(), FakeLinks(), MemoryStore()
    cfg = OfflineSection(max_messages=3, max_age=60.0, retry_min=0.01, retry_max=0.02)
    return OfflineService(cfg, store, reg, links, clock=clock), reg, links, store, clock


async def settle(service: OfflineService) -> None:
    for _ in range(200):
        await asyncio.sleep(0.01)
        if not service._tasks:
            return


async def test_delivery_on_registration_in_order_with_the_original_date(parts: Any) -> None:
    service, reg, links, store, clock = parts
    await service.start()
    stored_at = clock.now
    for n in (1, 2, 3):
        service.offer(message(n))
    with pytest.raises(QuotaExceeded) as over:
        service.offer(message(4))
    assert over.value.sip_status == 480 and "3 messages" in str(over.value)
    assert [s["type"] for s in links.sent] == ["headline"] * 3
    clock.now += 30
    reg.answers = [503, None, 200, 200, 200]  # the head is retried, blocking the others
    delivered: list[str] = []
    service.on_delivered = lambda m: delivered.append(m.message_id)
    reg.register()
    await settle(service)
    bodies = [r.body for r in reg.sent]
    assert bodies == [b"text 1", b"text 1", b"text 1", b"text 2", b"text 3"]
    assert delivered == ["id1", "id2", "id3"]
    assert store.messages(AOR) == ()
    date = reg.sent[-1].headers.get("Date")
    assert date is not None and parsedate_to_datetime(date).timestamp() == int(stored_at)
    await service.stop()


async def test_kept_until_a_2xx_and_expired_with_an_error_to_the_sender(parts: Any) -> None:
    service, reg, links, store, clock = parts
    await service.start()
    service.offer(message(1))
    reg.answers = [404]  # a rejection ends it with the mapped error
    service.offer(message(2))
    reg.register()
    await settle(service)
    errors = [s for s in links.sent if s["type"] == "error"]
    assert [e["id"] for e in errors] == ["s1"]  # 404 for the first; the second delivered
    reg.registered = False
    service.offer(message(3))
    assert [m.message_id for m in store.messages(AOR)] == ["id3"]
    clock.now += 61
    service._on_timer()
    assert store.messages(AOR) == ()
    expired = [s for s in links.sent if s["type"] == "error"][-1]
    assert expired["id"] == "s3" and str(expired["to"]) == "juliet@localhost/balcony"
    assert expired["error"]["condition"] == "recipient-unavailable"
    assert "expired undelivered after 61 seconds" in expired["error"]["text"]
    await service.stop()


async def test_restart_delivers_what_an_earlier_process_stored(parts: Any) -> None:
    service, reg, links, store, clock = parts
    await service.start()
    service.offer(message(1))
    await service.stop()
    reg.registered = True  # registered while the gateway was down (restored binding)
    again = OfflineService(OfflineSection(), store, reg, links, clock=clock)
    await again.start()
    await settle(again)
    assert [r.body for r in reg.sent] == [b"text 1"] and store.messages(AOR) == ()
    await again.stop()


# -- the pager hands messages to the queue ----------------------------------------------------


class NoBindingRouter:
    """A router for a hosted user with nothing registered (the location service's 480)."""

    def __init__(self, cfg: Any) -> None:
        from gateway.bridge.routing import Domains

        self.domains = Domains(cfg)
        self.calls = 0

    async def send(self, aor: Any, build: Any, *, user: Any = None) -> Any:
        self.calls += 1
        raise NoBinding(aor.aor)


def _pager_world() -> tuple[Any, Any, FakeLinks, MemoryStore, NoBindingRouter, FakeRegistrar]:
    import tomllib
    from pathlib import Path

    from gateway.bridge.pager.service import Pager
    from gateway.config import load_config
    from gateway.metrics import Metrics
    from tests.harness.gateway_proc import gateway_config

    cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
    links, store, reg = FakeLinks(), MemoryStore(), FakeRegistrar()
    links.domains = ["sip.localhost"]  # type: ignore[attr-defined]
    offline = OfflineService(OfflineSection(max_messages=2), store, reg, links)
    router = NoBindingRouter(cfg)
    pager = Pager(cfg, links, router, Metrics(), offline=offline)  # type: ignore[arg-type]
    return pager, offline, links, store, router, reg


def _stanza(links: FakeLinks, sid: str, body: str, *, receipt: bool = False) -> Any:
    msg = links.xmpp.make_message(
        mto="romeo@sip.localhost", mfrom="juliet@localhost/balcony", mbody=body
    )
    msg["id"] = sid
    if receipt:
        import xml.etree.ElementTree as ET

        ET.SubElement(msg.xml, "{urn:xmpp:receipts}request")
    return msg


async def test_pager_stores_in_order_and_refuses_over_quota_with_480() -> None:
    pager, offline, links, store, router, reg = _pager_world()
    await offline.start()
    await pager.on_stanza(_stanza(links, "a", "first", receipt=True))
    await pager.on_stanza(_stanza(links, "b", "second"))
    assert router.calls == 1  # the second joined the queue without overtaking it
    kept = store.messages(AOR)
    assert [m.stanza_id for m in kept] == ["a", "b"]
    first = kept[0]
    assert first.content_type == "message/cpim" and first.receipt_id is not None
    assert f"Message-ID: {first.receipt_id}".encode() in first.body  # RFC 5438 §6.3
    assert kept[1].content_type.startswith("text/plain") and kept[1].receipt_id is None
    assert first.sender == "juliet@localhost/balcony" and first.recipient == "romeo@sip.localhost"
    assert [s["type"] for s in links.sent] == ["headline", "headline"]
    await pager.on_stanza(_stanza(links, "c", "third"))
    refused = links.sent[-1]
    assert refused["type"] == "error" and refused["id"] == "c"
    assert refused["error"]["condition"] == "recipient-unavailable"
    assert "quota" in refused["error"]["text"]
    # a device took the first: the pager waits for its IMDN to send the XEP-0184 receipt
    reg.answers = [200, 200]
    reg.register()
    await settle(offline)
    assert store.messages(AOR) == ()
    assert pager._x2s_receipts.get(first.receipt_id) is not None
    await offline.stop()


async def test_no_offline_notice_while_the_user_is_registered(parts: Any) -> None:
    """A message that only waits behind stored ones (the user has a device) is not
    announced as "offline"; it is delivered with the queue."""
    service, reg, links, store, _clock = parts
    await service.start()
    reg.registered = True
    service.offer(message(1))
    assert links.sent == []
    await settle(service)
    assert [r.body for r in reg.sent] == [b"text 1"] and store.messages(AOR) == ()
    await service.stop()

"""`Link.send_confirmed` never reports success for a stanza that was not written.

A real `GatewayComponent` over an in-memory transport that behaves like asyncio's socket
transport (after `close()`/`abort()` writes are dropped silently); the test plays the
server: it answers only the pings it actually received. Failure modes: a stanza that
cannot be serialized or encoded, no transport, a closing transport, a write that raises,
the connection lost while the ping is in flight, no answer (timeout).
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from gateway.config import Addressing, ComponentConfig, XmppConfig
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.links import Callbacks, Link, LinkDown, LinkState, StanzaRefused

pytestmark = pytest.mark.unit

DOMAIN = "sip.localhost"
GOOD = '<message xmlns="jabber:component:accept" to="a@b" from="x@sip.localhost"/>'


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.fail: Exception | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.fail is not None:
            raise self.fail
        if not self.closing:  # asyncio drops writes after close()/abort() without a word
            self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    @property
    def text(self) -> str:
        return b"".join(self.written).decode()


async def up_link(dead_link_timeout: float = 30.0) -> tuple[Link, MemoryTransport]:
    cfg = XmppConfig(components=(), dead_link_timeout=dead_link_timeout)
    comp = GatewayComponent(
        ComponentConfig(DOMAIN, "secret", Addressing.MIRRORED), server="127.0.0.1", port=5347
    )
    link = Link(cfg, comp, Callbacks())
    transport = MemoryTransport()
    comp.transport = transport
    link.state = LinkState.UP
    return link, transport


def answer_pings(link: Link, transport: MemoryTransport) -> int:
    """Answer every ping received so far (as the server would); how many."""
    ids = re.findall(r'<iq type="get" id="(cpim-ping-[^"]+)"', transport.text)
    for ping_id in ids:
        xml = ET.fromstring(
            f'<iq xmlns="jabber:component:accept" type="result" id="{ping_id}" '
            f'from="{DOMAIN}" to="{DOMAIN}"/>'
        )
        link._on_ping_stanza(SimpleNamespace(xml=xml))
    return len(ids)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_confirmed_after_the_ping_written_behind_the_stanza() -> None:
    link, transport = await up_link()
    task = asyncio.ensure_future(link.send_confirmed(GOOD))
    await settle()
    assert not task.done()
    assert len(transport.written) == 1  # the stanza and its ping in one write
    assert transport.text.index(GOOD) < transport.text.index("urn:xmpp:ping")
    assert answer_pings(link, transport) == 1
    await asyncio.wait_for(task, 5)


async def test_unserializable_stanza_is_refused_and_spares_its_batch() -> None:
    link, transport = await up_link()
    good = asyncio.ensure_future(link.send_confirmed(GOOD))
    bad_text = asyncio.ensure_future(link.send_confirmed("<message>\udcff</message>"))
    no_xml = asyncio.ensure_future(link.send_confirmed(SimpleNamespace(xml=None)))  # "" once
    bad_xml = asyncio.ensure_future(link.send_confirmed(SimpleNamespace(xml=42)))
    await settle()
    for bad in (bad_text, no_xml, bad_xml):
        assert bad.done()
        assert isinstance(bad.exception(), StanzaRefused)
    assert "\udcff" not in transport.text and transport.text.count("<message") == 1
    answer_pings(link, transport)
    await asyncio.wait_for(good, 5)


async def test_no_transport_is_link_down() -> None:
    link, transport = await up_link()
    link.component.transport = None  # connection_lost ran; the supervisor has not yet
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(link.send_confirmed(GOOD), 5)
    assert transport.written == []
    assert not info.value.in_doubt  # never written: surely not delivered


async def test_closing_transport_is_link_down_not_a_timeout() -> None:
    link, transport = await up_link()
    transport.close()
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(link.send_confirmed(GOOD), 5)
    assert info.value.reason != "no confirmation from the server"
    assert transport.written == []
    assert not info.value.in_doubt


async def test_closed_while_the_ping_is_in_flight_is_link_down() -> None:
    link, transport = await up_link()
    first = asyncio.ensure_future(link.send_confirmed(GOOD))
    await settle()
    second = asyncio.ensure_future(link.send_confirmed(GOOD))  # waits for the next ping
    await settle()
    transport.abort()  # the second stanza's write is dropped by the transport
    answer_pings(link, transport)  # answers the first ping only
    await asyncio.wait_for(first, 5)
    link.component.connection_lost(None)
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(second, 5)
    assert not info.value.in_doubt  # its batch never reached the closing transport


async def test_lost_after_the_write_before_the_answer_is_in_doubt() -> None:
    link, transport = await up_link()
    sent = asyncio.ensure_future(link.send_confirmed(GOOD))
    await settle()
    assert transport.text.count("<message") == 1  # written, its ping unanswered
    link.component.connection_lost(None)
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(sent, 5)
    assert info.value.in_doubt


async def test_write_that_raises_is_link_down() -> None:
    link, transport = await up_link()
    transport.fail = ConnectionResetError("reset")
    with pytest.raises(LinkDown):
        await asyncio.wait_for(link.send_confirmed(GOOD), 5)


async def test_no_answer_is_link_down() -> None:
    link, _ = await up_link(dead_link_timeout=0.2)
    with pytest.raises(LinkDown) as info:
        await asyncio.wait_for(link.send_confirmed(GOOD), 5)
    assert info.value.in_doubt


async def test_link_not_up_is_link_down() -> None:
    link, transport = await up_link()
    link.state = LinkState.CONNECTING
    with pytest.raises(LinkDown) as info:
        await link.send_confirmed(GOOD)
    assert transport.written == []
    assert not info.value.in_doubt


async def test_confirm_domain_pings_come_back_as_gets_and_confirm() -> None:
    """A cluster instance (docs/cluster.md): its pings go from and to its own
    confirm_domain; the server routes the `get` back to this connection only, and that
    arrival confirms. An answer from the shared domain (another instance's) does not."""
    cfg = XmppConfig(components=(), dead_link_timeout=30.0)
    comp = GatewayComponent(
        ComponentConfig(DOMAIN, "secret", Addressing.MIRRORED), server="127.0.0.1", port=5347
    )
    mine = "a.confirm.sip.localhost"
    link = Link(cfg, comp, Callbacks(), confirm_domain=mine)
    transport = MemoryTransport()
    comp.transport = transport
    link.state = LinkState.UP
    task = asyncio.create_task(link.send_confirmed(GOOD))
    await settle()
    [ping_id] = re.findall(r'<iq type="get" id="(cpim-ping-[^"]+)"', transport.text)
    assert f'from="{mine}" to="{mine}"' in transport.text
    shared = ET.fromstring(
        f'<iq xmlns="jabber:component:accept" type="result" id="{ping_id}" '
        f'from="{DOMAIN}" to="{DOMAIN}"/>'
    )
    assert link._on_ping_stanza(SimpleNamespace(xml=shared)) is not None  # not ours
    await settle()
    assert not task.done()
    back = ET.fromstring(
        f'<iq xmlns="jabber:component:accept" type="get" id="{ping_id}" '
        f'from="{mine}" to="{mine}"><ping xmlns="urn:xmpp:ping"/></iq>'
    )
    assert link._on_ping_stanza(SimpleNamespace(xml=back)) is None
    await asyncio.wait_for(task, 1)
    assert transport.text.count("<iq") == 1  # nobody answers our own get

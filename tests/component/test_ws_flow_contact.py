"""Issue 20: an in-dialog request whose remote target is a WebSocket client's `.invalid`
Contact (RFC 7118 §5) goes over the flow that client registered from: the binding of the
dialog's remote URI (To) with that Contact, never DNS; 480 once that binding is gone.

Same world as test_location_service.py: a real `Registrar`, `SipRouter` and
`PresenceContext`, DNS disabled, an endpoint that records what it is asked to send.
"""

from __future__ import annotations

import pytest

from gateway.bridge.presence.context import SendFailed
from gateway.bridge.routing import is_flow_contact
from gateway.sip.uri import SipUri, parse_uri
from gateway.store.api import Binding, Flow
from tests.component.test_location_service import AOR, NOW, World, notify, world

pytestmark = pytest.mark.component

__all__ = ["world"]  # the fixture, shared

BROWSER = "sip:r2d2@df7jal23ls0d.invalid;transport=ws"
TAB = "<urn:uuid:00000000-0000-0000-0000-00000000000b>"


def ws_binding(contact: str = BROWSER) -> Binding:
    return Binding(
        aor=AOR,
        contact=contact,
        expires_at=NOW + 600,
        call_id="reg-ws",
        cseq=1,
        instance=TAB,
        flow=Flow("ws", "127.0.0.1:8080", "198.51.100.5:53211", connection_id="e/7"),
        updated_at=NOW,
    )


def test_flow_contact_is_the_invalid_host() -> None:
    for text, flow in ((BROWSER, True), ("sip:romeo@192.0.2.7:5060", False)):
        uri = parse_uri(text)
        assert isinstance(uri, SipUri) and is_flow_contact(uri) is flow


async def test_notify_to_a_ws_contact_goes_over_its_flow(world: World) -> None:
    world.store.set_bindings(AOR, [*world.registrar.locate(AOR), ws_binding()])
    await world.registrar.stop()
    await world.registrar.start()  # restores the bindings, the WebSocket one with them
    response = await world.ctx.send(notify(BROWSER))
    assert response.status == 200
    [(sent, where)] = world.endpoint.sent
    assert str(sent.uri) == BROWSER
    assert (where.transport, where.address, where.port) == ("ws", "198.51.100.5", 53211)


async def test_ws_contact_without_binding_is_480_without_dns(world: World) -> None:
    with pytest.raises(SendFailed) as failed:
        await world.ctx.send(notify(BROWSER))
    assert failed.value.status == 480
    assert "DNS" not in str(failed.value)
    assert world.endpoint.sent == []

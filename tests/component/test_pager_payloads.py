"""XMPP -> SIP through `Pager.on_stanza` on in-memory stubs (issue 17 items 4-5).

* End-to-end encrypted stanzas (OMEMO, OpenPGP, XEP-0027, OTR, anything XEP-0380 names) are
  refused with not-acceptable naming the scheme; nothing reaches SIP; one fate line.
* A retraction is refused with feature-not-implemented; nothing reaches SIP.
* A correction reaches SIP as the new text with the "[correction] " marker.
* A markable message asks for an IMDN ``display``; the stanza writer and reader agree on
  ``<markable/>`` and ``<displayed/>``.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.pager.service import Pager
from gateway.bridge.routing import Domains
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest, make_response
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.convert import message_to_op
from gateway.xmpp.fastwrite import message_xml
from mappings import cpim, imdn
from mappings.errors import MappingError
from mappings.model import Address, BodyPart, MessageOp
from tests.harness.gateway_proc import gateway_config
from tests.harness.stanzas import stanza_from_text, stanza_of

pytestmark = pytest.mark.component

NS = "jabber:component:accept"
COMP = "sip.localhost"
FALLBACK = "I sent you an OMEMO encrypted message but your client doesn't seem to support that."


class _Links:
    def __init__(self) -> None:
        self.domains = [COMP]
        self.sent: list[Any] = []

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(stanza)
        return True


class _Router:
    def __init__(self, cfg: Any) -> None:
        self.domains = Domains(cfg)
        self.requests: list[SipRequest] = []

    async def send(self, aor: Any, build: Callable[[str], SipRequest], *, user: Any = None) -> Any:
        request = build(str(aor))
        self.requests.append(request)
        return make_response(request, 200)


@pytest.fixture
def rig() -> tuple[Pager, _Router, GatewayComponent]:
    cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
    comp = GatewayComponent(
        ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    router = _Router(cfg)
    pager = Pager(cfg, _Links(), router, Metrics())  # type: ignore[arg-type]
    return pager, router, comp


def feed(rig: tuple[Pager, _Router, GatewayComponent], inner: str, sid: str = "m1") -> None:
    pager, _, comp = rig
    raw = (
        f'<message xmlns="{NS}" to="romeo@{COMP}" from="juliet@localhost/balcony"'
        f' id="{sid}" type="chat">{inner}</message>'
    )
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(pager.on_stanza(stanza_from_text(comp, raw)))
    finally:
        loop.close()


ALSO = (
    '<active xmlns="http://jabber.org/protocol/chatstates"/>'
    '<request xmlns="urn:xmpp:receipts"/><markable xmlns="urn:xmpp:chat-markers:0"/>'
)


@pytest.mark.parametrize(
    ("payload", "name"),
    [
        (
            f"<body>{FALLBACK}</body>"
            '<encrypted xmlns="eu.siacs.conversations.axolotl"><header sid="27183">'
            '<key rid="31415">BASE64</key><iv>BASE64</iv></header><payload>BASE64</payload>'
            "</encrypted>",
            "OMEMO",
        ),
        (
            f"<body>{FALLBACK}</body>"
            '<encrypted xmlns="urn:xmpp:omemo:2"><header sid="1"/><payload>eA==</payload>'
            '</encrypted><encryption xmlns="urn:xmpp:eme:0" namespace="urn:xmpp:omemo:2"/>',
            "OMEMO 2",
        ),
        (
            "<body>This message is encrypted with OpenPGP</body>"
            '<openpgp xmlns="urn:xmpp:openpgp:0">BASE64</openpgp>',
            "OpenPGP for XMPP",
        ),
        (
            '<body>This message is encrypted.</body><x xmlns="jabber:x:encrypted">qANQR1</x>',
            "Legacy OpenPGP",
        ),
        (
            "<body>?OTR:AAMDJ+MVmSfjFZcAAAAAAQAAAAEAAADAVf3Ei72ZgFeKqWvLMnuVPVCwxktsOZ1Q</body>",
            "OTR",
        ),
    ],
)
def test_encrypted_stanzas_are_refused_and_nothing_reaches_sip(
    rig: tuple[Pager, _Router, GatewayComponent],
    caplog: pytest.LogCaptureFixture,
    payload: str,
    name: str,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.bridge.pager")
    with pytest.raises(MappingError) as err:
        feed(rig, payload + ALSO)
    assert err.value.xmpp_condition == "not-acceptable"
    assert f"{name} encrypted message not delivered" in (err.value.to_xmpp().text or "")
    assert rig[1].requests == []
    (line,) = [r for r in caplog.records if r.getMessage() == "message"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["fate"], fields["condition"], fields["stanza_id"]) == (
        "rejected",
        "not-acceptable",
        "m1",
    )
    # the receipt and display requests it carried are not remembered
    assert len(rig[0]._x2s_receipts) == len(rig[0]._x2s_displays) == 0


def test_retraction_is_refused(rig: tuple[Pager, _Router, GatewayComponent]) -> None:
    with pytest.raises(MappingError) as err:
        feed(
            rig,
            "<body>This person attempted to retract a previous message, but it's unsupported"
            ' by your client.</body><retract id="m0" xmlns="urn:xmpp:message-retract:1"/>'
            '<fallback xmlns="urn:xmpp:fallback:0" for="urn:xmpp:message-retract:1"/>',
        )
    assert err.value.xmpp_condition == "feature-not-implemented"
    assert rig[1].requests == []


def test_correction_goes_as_marked_text(rig: tuple[Pager, _Router, GatewayComponent]) -> None:
    feed(rig, "<body>see you at nine</body>", "m0")
    feed(
        rig,
        '<body>see you at ten</body><replace id="m0" xmlns="urn:xmpp:message-correct:0"/>',
    )
    first, second = rig[1].requests
    assert first.body == b"see you at nine"
    assert second.body == b"[correction] see you at ten"
    assert str(second.content_type).startswith("text/plain")


def test_markable_asks_for_a_display_notification(
    rig: tuple[Pager, _Router, GatewayComponent],
) -> None:
    feed(rig, '<body>read me</body><markable xmlns="urn:xmpp:chat-markers:0"/>')
    (request,) = rig[1].requests
    assert str(request.content_type) == "message/cpim"
    msg = cpim.parse_cpim(request.body)
    asked = imdn.read_disposition_request(msg)
    assert asked is not None and asked.requested == frozenset({"display"})
    assert msg.body == b"read me"
    assert rig[0]._x2s_displays.get(asked.message_id) is not None
    assert rig[0]._x2s_receipts.get(asked.message_id) is None


def test_markers_written_and_read_back() -> None:
    comp = GatewayComponent(
        ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    a = Address("romeo", COMP)
    for op in (
        MessageOp(a, a, "s1", parts=(BodyPart.plain("hi"),), markable=True),
        MessageOp(a, a, "s2", displayed_for="x&1"),
    ):
        xml = message_xml(op, mfrom=f"romeo@{COMP}", mto="juliet@localhost", stanza_id="s")
        wire = f'<stream xmlns="{NS}">{xml}</stream>'  # the stream's default namespace
        stanza = stanza_of(comp, ET.fromstring(wire)[0])
        back = message_to_op(stanza, source=a, destination=a)
        assert (back.markable, back.displayed_for) == (op.markable, op.displayed_for)

"""XMPP -> SIP under overload (issue 27): a message stanza the pager cannot serve gets
resource-constraint, type wait (RFC 6120 §8.3.3.18), and nothing is queued or sent to SIP;
when the admission admits, the stanza goes to SIP as usual."""

from __future__ import annotations

import asyncio
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.pager.service import Pager
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest, make_response
from gateway.xmpp.component import GatewayComponent
from tests.harness.gateway_proc import gateway_config
from tests.harness.stanzas import stanza_from_text

pytestmark = pytest.mark.component

COMP = "sip.localhost"
STANZA_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class _Links:
    def __init__(self) -> None:
        self.domains = [COMP]
        self.sent: list[tuple[str, ET.Element]] = []

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append((domain, stanza.xml))
        return True


class _Router:
    def __init__(self) -> None:
        self.sent: list[SipRequest] = []

    async def send(self, aor: Any, build: Callable[[str], SipRequest], **_: Any) -> Any:
        req = build(str(aor))
        self.sent.append(req)
        return make_response(req, 200)


def _pager() -> tuple[Pager, _Links, _Router]:
    cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
    links, router = _Links(), _Router()
    pager = Pager(
        cfg,
        links,  # type: ignore[arg-type]
        router,  # type: ignore[arg-type]
        Metrics(),
        now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    return pager, links, router


def _stanza(comp: GatewayComponent) -> Any:
    return stanza_from_text(
        comp,
        f'<message xmlns="jabber:component:accept" to="romeo@{COMP}" '
        'from="juliet@localhost/r" id="m1" type="chat"><body>hi</body></message>',
    )


def test_refused_stanza_gets_resource_constraint_wait_and_nothing_reaches_sip() -> None:
    loop = asyncio.new_event_loop()
    try:
        comp = GatewayComponent(
            ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
        )
        pager, links, router = _pager()
        asked: list[bool] = []

        def admission() -> bool:
            asked.append(True)
            return False

        pager.admission = admission
        loop.run_until_complete(pager.on_stanza(_stanza(comp)))
        assert asked == [True] and router.sent == []
        ((domain, xml),) = links.sent
        assert domain == COMP and xml.get("type") == "error" and xml.get("id") == "m1"
        assert xml.get("to") == "juliet@localhost/r" and xml.get("from") == f"romeo@{COMP}"
        (error,) = [e for e in xml if e.tag.endswith("}error")]  # the stream's namespace
        assert error.get("type") == "wait"
        assert error.find(f"{{{STANZA_NS}}}resource-constraint") is not None

        pager.admission = lambda: True  # admitted: bridged as usual
        links.sent.clear()
        loop.run_until_complete(pager.on_stanza(_stanza(comp)))
        assert len(router.sent) == 1 and links.sent == []
    finally:
        loop.close()


def test_x2s_pending_counts_messages_being_bridged() -> None:
    loop = asyncio.new_event_loop()
    try:
        comp = GatewayComponent(
            ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
        )
        pager, _links, router = _pager()
        gate = asyncio.Event()
        plain_send = router.send

        async def slow_send(aor: Any, build: Callable[[str], SipRequest], **kw: Any) -> Any:
            await gate.wait()
            return await plain_send(aor, build, **kw)

        router.send = slow_send  # type: ignore[method-assign]

        async def scenario() -> list[int]:
            seen = [pager.x2s_pending]
            tasks = [asyncio.ensure_future(pager.on_stanza(_stanza(comp))) for _ in range(3)]
            await asyncio.sleep(0.01)
            seen.append(pager.x2s_pending)  # one awaiting its answer, two queued (RFC 3428 §8)
            gate.set()
            await asyncio.gather(*tasks)
            seen.append(pager.x2s_pending)
            return seen

        assert loop.run_until_complete(scenario()) == [0, 3, 0]
        assert len(router.sent) == 3
    finally:
        loop.close()

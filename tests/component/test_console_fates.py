"""The pager's fates reach the console's ring through the one `_fate` call (issue 26).

A Pager on in-memory stubs sends XMPP -> SIP messages answered 200, 404 and not at all;
each fate is in `pager.fates` with the same direction, fate, status, sender, recipient and
ids as its INFO "message" line, and with the handling time the clock gives.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.bridge.pager.service import Pager
from gateway.bridge.routing import Domains
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.fates import FateRing
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest, make_response
from gateway.sip.useragent import TransactionTimeout
from gateway.xmpp.component import GatewayComponent
from tests.harness.gateway_proc import gateway_config
from tests.harness.stanzas import stanza_from_text

pytestmark = pytest.mark.component

NS = "jabber:component:accept"
COMP = "sip.localhost"


class _Links:
    def __init__(self) -> None:
        self.domains = [COMP]

    def send(self, domain: str, stanza: Any) -> bool:
        return True


class _Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


class _Router:
    """Answers per the script, a quarter of a second after the request."""

    def __init__(self, cfg: Any, clock: _Clock) -> None:
        self.domains = Domains(cfg)
        self.clock = clock
        self.script: Iterator[int] = iter(())

    async def send(self, aor: Any, build: Callable[[str], SipRequest], *, user: Any = None) -> Any:
        self.clock.now += 0.25
        outcome = next(self.script, 200)
        if outcome == 0:
            raise TransactionTimeout("no answer")
        return make_response(build(str(aor)), outcome)


def test_every_fate_lands_in_the_ring_with_its_log_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
    comp = GatewayComponent(
        ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    clock = _Clock()
    router = _Router(cfg, clock)
    ring = FateRing(2, wall=lambda: 1_763_000_000.0)
    pager = Pager(
        cfg,
        _Links(),  # type: ignore[arg-type]
        router,  # type: ignore[arg-type]
        Metrics(),
        clock=clock,
        fates=ring,
    )
    loop = asyncio.new_event_loop()
    caplog.set_level(logging.INFO, logger="gateway.bridge.pager")
    try:
        for n, status in enumerate((200, 404, 0)):
            router.script = iter([status])
            raw = (
                f'<message xmlns="{NS}" to="romeo@{COMP}" from="juliet@localhost/balcony"'
                f' id="m{n}" type="chat"><body>hi {n}</body></message>'
            )
            loop.run_until_complete(pager.on_stanza(stanza_from_text(comp, raw)))
    finally:
        loop.close()
    assert ring.totals() == (3, 2, pytest.approx(0.75))
    assert len(ring) == 2  # bounded: the first fate fell off
    newest = list(ring.newest_first())
    assert [(f.seq, f.fate, f.status) for f in newest] == [
        (3, "timeout", None),
        (2, "rejected", 404),
    ]
    lines = [r for r in caplog.records if r.getMessage() == "message"]
    assert len(lines) == 3
    for fate, line in zip(newest, reversed(lines[1:]), strict=True):
        fields = line.fields  # type: ignore[attr-defined]
        assert fate.direction == fields["direction"] == "xmpp_to_sip"
        assert fate.fate == fields["fate"]
        assert fate.sender == fields["sender"] == "juliet@localhost/balcony"
        assert fate.recipient == fields["recipient"] == f"romeo@{COMP}"
        assert fate.call_id == fields["call_id"] and fate.call_id
        assert fate.stanza_id == fields["stanza_id"]
        assert fate.detail == fields["condition"]
        assert fate.seconds == pytest.approx(0.25)
        assert fate.at == 1_763_000_000.0

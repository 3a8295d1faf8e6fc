"""Hostile XML over the wire: libxml2's name dictionary stays bounded (issue 12).

The gateway process (CLI, generated config) with real Prosody; a lean UDP UAC sends SIP
MESSAGEs whose application/im-iscomposing+xml bodies carry ~2,000 never-seen element and
attribute names each (800,000 in all, ~8 MB, about eight parse-worker budgets). The
gateway's C heap (`cpim_heap_bytes` in_use + mmapped from the admin /metrics) is read
with no transaction in flight before and after: the growth stays far below what one
dictionary for ever would add (docs/reliability.md §4). Every MESSAGE gets a final
response from the gateway.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from scripts.soak import LeanUac, scrape
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, config_of, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
SECRET = "xml-dictionary-secret"
ISCOMPOSING = b"application/im-iscomposing+xml"
HEAP = ('cpim_heap_bytes{kind="in_use"}', 'cpim_heap_bytes{kind="mmapped"}')
IN_FLIGHT = "cpim_sip_transactions_in_flight"
T1 = 0.1  # Timer J = 64*T1: completed server transactions (holding bodies) go quickly

BODIES = 400
CHILDREN = 999  # + <state> + root = 1,001 elements; ~20 KB per body
WINDOW = 4  # MESSAGEs in flight (20 KB datagrams: stay well inside socket buffers)
# One 1 MiB budget of these bodies leaves ~3.4 MiB of dictionary; one dictionary for
# ever adds ~4.5 MiB per 100,000 names (measured: old code +35.5 MiB for this run, new +2.0).
BOUND = 12 * 2**20

_names = itertools.count()


def hostile_iscomposing() -> str:
    ids = [next(_names) for _ in range(CHILDREN)]
    extra = "".join(f'<q{i:x} w{i:x}="1"/>' for i in ids)
    return (
        '<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing">'
        f"<state>active</state>{extra}</isComposing>"
    )


class XmlUac(LeanUac):
    """LeanUac sending iscomposing bodies; notes which transactions ended by its own
    Timer F (no final response from the gateway) rather than by a response."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target, t1=T1, t2=4 * T1)
        self.timed_out: set[bytes] = set()

    def _write(self, data: bytes) -> None:  # retransmissions pass here too
        head, sep, body = data.partition(b"\r\n\r\n")
        head = head.replace(
            b"Content-Type: text/plain;charset=UTF-8", b"Content-Type: " + ISCOMPOSING
        )
        super()._write(head + sep + body)

    def _timer_f(self, call_id: bytes) -> None:
        self.timed_out.add(call_id)
        super()._timer_f(call_id)


def config_for(prosody: ProsodyServer, state_dir: Path) -> str:
    off = {"burst": 0.0, "rate": 1.0}
    return gateway_config(
        gateway={"state_dir": str(state_dir)},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": SECRET, "addressing": "mirrored"}],
        },
        sip={
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}],
            "hosted_domains": [],
            "trusted_peers": [LOOPBACK],
            "timers": {"t1": T1, "t2": 4 * T1, "t4": 0.5},
        },
        rate_limits={
            "per_source": {"message": off, "subscribe": off},
            "per_user": {"message": off, "subscribe": off},
        },
    )


async def heap_when_idle(admin: str, timeout: float = 60.0) -> float:
    """C heap bytes (in use + mmapped) once no SIP transaction is left."""
    async with asyncio.timeout(timeout):
        while True:
            metrics = await scrape(admin, (IN_FLIGHT, *HEAP))
            if metrics[IN_FLIGHT] == 0:
                return sum(metrics[k] for k in HEAP)
            await asyncio.sleep(0.2)


async def send_all(uac: XmlUac, count: int, first: int) -> None:
    for seq in range(first, first + count):
        async with asyncio.timeout(60):
            while len(uac.pending) >= WINDOW:
                await asyncio.sleep(0.005)
        uac.send(seq, "sip:juliet@localhost", hostile_iscomposing())
    await uac.drain(60)


async def hostile_growth(gw: GatewayProcess) -> tuple[float, XmlUac]:
    """Send the warm-up and the BODIES hostile MESSAGEs; the heap growth in bytes."""
    config = config_of(gw.config_path.read_text())
    admin: str = config["admin"]["listen"]
    port: int = config["sip"]["listeners"][0]["port"]
    uac = XmlUac((LOOPBACK, port))
    await uac.start()
    try:
        await send_all(uac, 20, 0)  # warm-up: first parse worker, code paths, buffers
        before = await heap_when_idle(admin)
        await send_all(uac, BODIES, 20)
        after = await heap_when_idle(admin)
    finally:
        uac.close()
    return after - before, uac


@pytest.fixture
def own_prosody(prosody_factory: Callable[..., ProsodyServer]) -> ProsodyServer:
    server = prosody_factory(components={COMPONENT: SECRET})
    server.add_user("juliet", "pw")
    return server


async def test_hostile_iscomposing_names_leave_memory_bounded(
    own_prosody: ProsodyServer, gateway: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    gw = gateway(config_for(own_prosody, tmp_path / "state"))
    gw.wait_for_log(rf"xmpp link {COMPONENT.replace('.', '[.]')} up", timeout=30)
    growth, uac = await hostile_growth(gw)

    total = BODIES + 20
    statuses: Counter[int] = Counter(uac.outcomes.values())
    assert len(uac.outcomes) == total, f"{total - len(uac.outcomes)} without an outcome"
    assert not uac.timed_out, f"{len(uac.timed_out)} MESSAGEs got no final response"
    assert all(200 <= s < 500 for s in statuses), statuses
    assert gw.running
    names = BODIES * CHILDREN * 2
    print(f"{names} new names: heap +{growth / 2**20:.2f} MiB, answers {dict(statuses)}")
    assert growth < BOUND, f"heap grew {growth / 2**20:.1f} MiB for {names} names"

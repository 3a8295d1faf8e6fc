"""gateway.overload.monitor on a real asyncio loop (issue 27): the sampling timer measures
its own lateness (event-loop lag), reads the sources, feeds the policy, publishes the
gauges and counters, and logs one line per state change, never one per refusal."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from gateway.config import OverloadConfig
from gateway.metrics import Metrics
from gateway.overload.monitor import LoadSources, OverloadMonitor
from gateway.overload.policy import OverloadPolicy

pytestmark = pytest.mark.component

CFG = OverloadConfig(interval=0.02, lag_high=0.2, lag_low=0.15, hold=0.1, retry_after=3)


def value(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float:
    got = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if got is None else got


async def _until(cond: object, limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not cond():  # type: ignore[operator]
            await asyncio.sleep(0.01)


def test_lag_enters_refusals_are_counted_calm_leaves(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.overload.monitor")
    metrics = Metrics()
    policy = OverloadPolicy(CFG)
    pending = [0]
    sources = LoadSources(lambda: pending[0], lambda: 7, lambda: 123, lambda: 0.004)
    monitor = OverloadMonitor(policy, sources, metrics)

    async def scenario() -> None:
        await monitor.start()
        await asyncio.sleep(0.1)
        assert not policy.overloaded
        assert value(metrics, "cpim_overload_xmpp_backlog_bytes") == 123
        assert value(metrics, "cpim_overload_clients") == 7
        time.sleep(0.4)  # the loop blocked: the next sample fires late by ~0.4 s
        await _until(lambda: policy.overloaded)
        answers = [policy.admit(0) for _ in range(50)]  # half admitted at first
        assert answers.count(3) == 25 and answers.count(None) == 25
        await _until(lambda: not policy.overloaded)  # calm samples for `hold` seconds
        await asyncio.sleep(0.05)
        await monitor.stop()

    asyncio.run(scenario())
    assert value(metrics, "cpim_overload_refused_total", {"side": "sip"}) == 25
    assert value(metrics, "cpim_overload_transitions_total", {"state": "overloaded"}) == 1
    assert value(metrics, "cpim_overload_transitions_total", {"state": "admitting"}) == 1
    assert value(metrics, "cpim_overload_active") == 0
    lines = [r for r in caplog.records if r.name == "gateway.overload.monitor"]
    assert [r.getMessage() for r in lines] == [
        "overload: refusing new work",
        "overload over: admitting again",
    ]
    entered, left = (r.__dict__["fields"] for r in lines)
    assert entered["signals"] == "lag" and entered["lag_ms"] >= 200
    assert left["refused_requests"] == 25 and left["refused_stanzas"] == 0


def test_disabled_monitor_does_not_sample() -> None:
    calls: list[int] = []
    policy = OverloadPolicy(OverloadConfig(enabled=False))
    sources = LoadSources(lambda: calls.append(1) or 0, lambda: 0, lambda: 0, lambda: 0.0)
    monitor = OverloadMonitor(policy, sources, Metrics())

    async def scenario() -> None:
        await monitor.start()
        await asyncio.sleep(0.3)
        await monitor.stop()

    asyncio.run(scenario())
    assert calls == []


def test_udp_backlog_is_the_share_of_the_receive_buffer_in_use() -> None:
    import socket

    from gateway.config import ListenerConfig, Transport
    from gateway.sip.transport.udp import UdpListener

    async def scenario() -> tuple[float, float]:
        listener = UdpListener(ListenerConfig(Transport.UDP, "127.0.0.1", 0), lambda *a: None)
        await listener.start()
        empty = listener.backlog()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
            for _ in range(20):  # queued: the loop does not run before the reading below
                out.sendto(b"x" * 500, listener.local)
        full = listener.backlog()
        listener.close()
        return empty, full

    empty, full = asyncio.run(scenario())
    assert empty == 0.0 and 0.0 < full < 1.0


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_stream_backlog_counts_bytes_the_kernel_holds_for_us(loop_name: str) -> None:
    import socket

    from gateway.eventloop import loop_factory
    from gateway.sip.transport.stream import ConnectionTable, StreamConnection

    if loop_name == "uvloop":
        pytest.importorskip("uvloop")
    frames: list[bytes] = []
    table = ConnectionTable(
        on_frame=lambda conn, data: frames.append(data),
        on_framing_error=lambda conn, exc: None,
        max_message_size=65535,
        clock=time.monotonic,
    )

    async def scenario() -> tuple[int, int, int]:
        with socket.create_server(("127.0.0.1", 0)) as server:
            peer = socket.create_connection(server.getsockname())
            ours, _ = server.accept()
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: StreamConnection(table, "tcp", None), ours)
        await asyncio.sleep(0)
        empty = table.backlog()
        peer.sendall(b"\r\n\r\n" * 250)  # keep-alives, queued: the loop has not run since
        queued = table.backlog()
        await asyncio.sleep(0.05)  # read now
        drained = table.backlog()
        peer.close()
        await asyncio.sleep(0.05)
        return empty, queued, drained

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        empty, queued, drained = runner.run(scenario())
    assert (empty, queued, drained) == (0, 1000, 0)

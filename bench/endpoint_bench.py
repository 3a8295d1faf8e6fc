"""CPU per MESSAGE through `SipEndpoint`: datagram in -> the SIP core -> a handler that
answers 200 -> the response's bytes handed to the listener.

No socket I/O: a stub listener takes the place of the UDP socket, so the figure is the
stack's own cost. Written to compare two trees (issue 25, docs/performance.md): it sets the
endpoint's loop and clock as `start()` would, without binding, which both trees accept.

    PYTHONPATH=<tree> python bench/endpoint_bench.py [N]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import gateway.sip.transport.endpoint as endpoint_module
from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.sip.transport.endpoint import SipEndpoint

ROUNDS = 5


class Answer200:
    def handle(self, incoming: Any) -> None:
        incoming.reply(200)


class StubListener:
    name = "udp:127.0.0.1:5060"
    transport_name = "udp"
    family6 = False
    local = ("127.0.0.1", 5060)

    def __init__(self) -> None:
        self.sent = 0

    def send(self, data: bytes, dest: tuple[str, int]) -> None:
        self.sent += 1

    def close(self) -> None:
        pass

    def read_pending(self, limit: int) -> int:
        return 0


def message(i: int) -> bytes:
    lines = [
        "MESSAGE sip:juliet@localhost SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{i}",
        "Max-Forwards: 70",
        f"From: <sip:romeo@sip.localhost>;tag=a{i}",
        "To: <sip:juliet@localhost>",
        f"Call-ID: c{i}@x",
        "CSeq: 1 MESSAGE",
        "Content-Type: text/plain",
        "Content-Length: 5",
    ]
    return ("\r\n".join(lines) + "\r\n\r\nhello").encode()


async def run(n: int) -> dict[str, float]:
    endpoint_module.UdpListener = StubListener  # type: ignore[misc,assignment]
    listener = StubListener()
    cfg = SipConfig(
        listeners=(ListenerConfig(Transport.UDP, "127.0.0.1", 5060),),
        timers=SipTimers(t1=0.5, t2=4.0, t4=5.0),
    )
    ep = SipEndpoint(cfg, Answer200())  # type: ignore[arg-type]
    loop = asyncio.get_running_loop()
    ep._loop, ep._clock = loop, loop.time
    ep.listeners.append(listener)  # type: ignore[arg-type]
    data = [message(i) for i in range(n)]
    per_round = n // ROUNDS
    best = float("inf")
    for r in range(ROUNDS):
        t0 = time.process_time()
        for i in range(r * per_round, (r + 1) * per_round):
            ep._on_datagram(data[i], ("127.0.0.1", 5070), listener)  # type: ignore[arg-type]
        best = min(best, time.process_time() - t0)
    if listener.sent != ROUNDS * per_round:
        raise SystemExit(f"only {listener.sent} responses were sent")
    return {"us_per_message_best_round": best / per_round * 1e6, "messages": n}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000))))

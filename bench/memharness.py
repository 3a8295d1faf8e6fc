"""Memory and garbage-collector harness for the SIP endpoint (issue 11), in one process.

A `SipEndpoint` on loopback UDP whose handler answers 200 at once receives N MESSAGEs
from a plain socket in the same event loop (paced in bursts of 20, about 2,000/s), so
every completed non-INVITE server transaction stays alive for Timer J (64*T1). Prints:
RSS before/after and per message, transactions alive, GC-tracked objects alive, and the
pauses of every garbage collection (max and total per generation, from `gc.callbacks`);
then waits for Timer J and prints RSS and transactions again. Not a test: figures for
docs/performance.md.

    .venv/bin/python -m bench.memharness [-n 40000] [--t1 0.5] [--freeze]
        [--threshold 700] [--threshold2 10] [--tracemalloc] [--no-wait]

`--freeze` calls `gc.freeze()` after the endpoint started (as gateway/app.py does);
`--threshold N` sets the generation-0 threshold; `--tracemalloc` lists the top
allocation sites that are still alive after the load (slow: use a smaller -n).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import os
import socket
import time
import tracemalloc
from typing import Any

from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.useragent import IncomingRequest

_pauses: list[tuple[int, float]] = []
_started: list[float] = [0.0]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        _pauses.append((int(info["generation"]), (time.perf_counter() - _started[0]) * 1e3))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class _Answer200:
    def handle(self, incoming: IncomingRequest) -> None:
        incoming.reply(200)


def _message(i: int, port: int) -> bytes:
    body = b"hello %d" % i
    head = (
        f"MESSAGE sip:juliet@sip.localhost SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{i}-x;rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a{i}\r\n"
        f"To: <sip:juliet@sip.localhost>\r\nCall-ID: c{i}@h\r\nCSeq: 1 MESSAGE\r\n"
        f"Content-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _gc_line() -> str:
    parts = []
    for gen in (0, 1, 2):
        d = [ms for g, ms in _pauses if g == gen]
        parts.append(f"gen{gen} n={len(d)} max={max(d, default=0):.1f}ms sum={sum(d):.0f}ms")
    return "gc: " + "; ".join(parts)


async def _run(args: argparse.Namespace) -> None:
    listener = ListenerConfig(Transport.UDP, "127.0.0.1", 0)
    cfg = SipConfig(listeners=(listener,), timers=SipTimers(t1=args.t1))
    ep = SipEndpoint(cfg, _Answer200())
    await ep.start()
    port = ep.listeners[0].local[1]
    cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cli.bind(("127.0.0.1", 0))
    cli.setblocking(False)
    cli.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    cport = cli.getsockname()[1]
    loop = asyncio.get_running_loop()
    got = 0

    def read() -> None:
        nonlocal got
        while True:
            try:
                cli.recv(65535)
            except BlockingIOError:
                return
            got += 1

    loop.add_reader(cli, read)
    await asyncio.sleep(0.2)
    gc.collect()
    if args.freeze:
        gc.freeze()
    if args.threshold:
        gc.set_threshold(args.threshold, *gc.get_threshold()[1:])
    if args.threshold2:
        t0, t1, _ = gc.get_threshold()
        gc.set_threshold(t0, t1, args.threshold2)
    r0 = _rss_mb()
    if args.tracemalloc:
        tracemalloc.start(10)
    s0 = tracemalloc.take_snapshot() if args.tracemalloc else None
    gc.callbacks.append(_on_gc)
    t = time.perf_counter()
    for i in range(args.n):
        cli.sendto(_message(i, cport), ("127.0.0.1", port))
        if i % 20 == 19:
            await asyncio.sleep(0.008)
    while got < args.n and time.perf_counter() - t < 60:
        await asyncio.sleep(0.05)
    dt = time.perf_counter() - t
    gc.callbacks.remove(_on_gc)
    r1 = _rss_mb()
    print(f"sent {args.n} answered {got} in {dt:.2f} s ({got / dt:,.0f}/s)")
    print(
        f"alive: transactions {len(ep.layer)}, GC-tracked objects {len(gc.get_objects())}; "
        f"RSS {r0:.1f} -> {r1:.1f} MB ({(r1 - r0) * 1e6 / max(args.n, 1):,.0f} B/message)"
    )
    print(_gc_line())
    if s0 is not None:
        s1 = tracemalloc.take_snapshot()
        for stat in s1.compare_to(s0, "lineno")[:12]:
            print(stat)
        tracemalloc.stop()
    counts = collections.Counter(type(o).__name__ for o in gc.get_objects())
    print("most common tracked types:", counts.most_common(8))
    if not args.no_wait:
        await asyncio.sleep(64 * args.t1 + 1)
        gc.collect()
        print(f"after Timer J: transactions {len(ep.layer)}; RSS {_rss_mb():.1f} MB")
    loop.remove_reader(cli)
    cli.close()
    await ep.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", type=int, default=40000)
    p.add_argument("--t1", type=float, default=0.5)
    p.add_argument("--freeze", action="store_true")
    p.add_argument("--threshold", type=int, default=0)
    p.add_argument("--threshold2", type=int, default=0, help="generation-2 threshold")
    p.add_argument("--tracemalloc", action="store_true")
    p.add_argument("--no-wait", action="store_true", help="skip the wait for Timer J")
    asyncio.run(_run(p.parse_args()))


if __name__ == "__main__":
    main()

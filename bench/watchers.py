"""Many SIP presence watchers in one lean asyncio UDP program (the `presence-fanout` side).

Loopback only. Sends `--count` SUBSCRIBEs (`sip:w<i>@<domain>` -> `--target`, each its own
dialog) to the gateway at `--rate` per second from one UDP socket, retransmitting an
unanswered one every 2 s (up to 20 times), and answers every NOTIFY 200 at once. No SIP
stack: the few header lines a 200 needs are copied from the request.

Progress goes to stdout as JSON lines every `--report` seconds:
`{"subscribed": n, "active": n, "with_body": n, "notifies": n, "idle_s": s}`: answered
SUBSCRIBEs (2xx), watchers whose last NOTIFY said active, watchers that received a PIDF
body, NOTIFYs answered in all, seconds since the last NOTIFY.

With `--passive` nothing is subscribed: the watchers only answer the NOTIFYs sent to
`--port` (the fan-out's bare baseline, `bench.baseline --fanout`, sends them), numbered by
their Call-ID `fw<i>-...` as here.

A line `mark <text>` on stdin starts a measurement: from then on, each watcher's first
NOTIFY whose body contains <text> is timestamped (wall clock, when its 200 is sent); when
every watcher has one (or `--timeout` passes) one line
`{"marked": n, "times": [...], "notifies": n}` (times sorted; NOTIFYs answered in all,
retransmissions included) is printed. `quit` (or EOF) stops.

    python -m bench.watchers --gateway 127.0.0.1:5060 --count 10000 --rate 500
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

__all__ = ["Watchers", "main", "ok_response"]

LOOPBACK = "127.0.0.1"
# SO_RCVBUFFORCE (Linux, 33; Python's socket module does not name it): past rmem_max, so
# a burst of 10,000 NOTIFYs (the bare baseline sends them at once) is not dropped.
_RCVBUFFORCE: int | None = getattr(
    socket, "SO_RCVBUFFORCE", 33 if sys.platform == "linux" else None
)
_RETRANSMIT = 2.0
_TRIES = 20
_CALL_ID = re.compile(rb"\r\n(?:Call-ID|i)[ \t]*:[ \t]*fw(\d+)-", re.IGNORECASE)
_STATE = re.compile(rb"\r\nSubscription-State[ \t]*:[ \t]*([a-z]+)", re.IGNORECASE)
_STATUS = re.compile(rb"SIP/2\.0 (\d{3}) ")
# Header lines a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED = re.compile(rb"^(?:Via|v|From|f|To|t|Call-ID|i|CSeq)[ \t]*:", re.IGNORECASE)


def ok_response(request: bytes) -> bytes:
    """A 200 OK for `request` (Via, From, To, Call-ID, CSeq copied; a To tag added when
    missing, as for a dialog-creating request)."""
    head = request.split(b"\r\n\r\n", 1)[0]
    lines = [b"SIP/2.0 200 OK"]
    for line in head.split(b"\r\n")[1:]:
        if _COPIED.match(line):
            to_without_tag = line[:3].lower() == b"to:" and b"tag=" not in line
            lines.append(line + b";tag=w" if to_without_tag else line)
    lines.append(b"Content-Length: 0")
    return b"\r\n".join(lines) + b"\r\n\r\n"


@dataclass
class Watcher:
    subscribed: bool = False
    tries: int = 0
    sent_at: float = 0.0
    state: bytes = b""
    with_body: bool = False
    marked_at: float | None = None


@dataclass
class Watchers(asyncio.DatagramProtocol):
    gateway: tuple[str, int]
    domain: str
    target: str
    count: int
    run: str = field(default_factory=lambda: f"{time.time_ns() % 10**9:x}")
    watchers: list[Watcher] = field(default_factory=list)
    notifies: int = 0
    last_notify: float = 0.0
    marker: bytes | None = None
    marked: int = 0
    transport: asyncio.DatagramTransport | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.watchers = [Watcher() for _ in range(self.count)]
        self.all_marked = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def subscribe(self, i: int) -> None:
        w = self.watchers[i]
        w.tries += 1
        w.sent_at = time.monotonic()
        host, port = self.gateway
        me = f"{LOOPBACK}:{self.port}"
        msg = (
            f"SUBSCRIBE {self.target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me};branch=z9hG4bK{self.run}x{i}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:w{i}@{self.domain}>;tag=f{i}\r\n"
            f"To: <{self.target}>\r\n"
            f"Call-ID: fw{i}-{self.run}@{LOOPBACK}\r\n"
            "CSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:w{i}@{me}>\r\n"
            "Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.sendto(msg.encode(), (host, port))

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        m = _CALL_ID.search(data)
        if m is None or int(m.group(1)) >= self.count:
            return
        w = self.watchers[int(m.group(1))]
        if data.startswith(b"SIP/2.0 "):
            status = _STATUS.match(data)
            if status is not None and status.group(1).startswith(b"2"):
                w.subscribed = True
            return
        if not data.startswith(b"NOTIFY "):
            return
        assert self.transport is not None
        self.transport.sendto(ok_response(data), addr)
        now = time.time()
        self.notifies += 1
        self.last_notify = now
        state = _STATE.search(data)
        if state is not None:
            w.state = state.group(1).lower()
        body = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
        if body:
            w.with_body = True
        if self.marker is not None and w.marked_at is None and self.marker in body:
            w.marked_at = now
            self.marked += 1
            if self.marked >= self.count:
                self.all_marked.set()

    def status(self) -> dict[str, float]:
        ws = self.watchers
        return {
            "subscribed": sum(w.subscribed for w in ws),
            "active": sum(w.state == b"active" for w in ws),
            "with_body": sum(w.with_body for w in ws),
            "notifies": self.notifies,
            "idle_s": round(time.time() - self.last_notify, 3) if self.last_notify else -1.0,
        }

    async def subscribe_all(self, rate: float) -> None:
        start = time.monotonic()
        for i in range(self.count):
            due = start + i / rate
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            self.subscribe(i)
        while True:  # retransmit unanswered ones (the gateway may drop under load)
            await asyncio.sleep(_RETRANSMIT / 2)
            now = time.monotonic()
            late = [
                i
                for i, w in enumerate(self.watchers)
                if not w.subscribed and w.tries < _TRIES and now - w.sent_at > _RETRANSMIT
            ]
            for i in late:
                self.subscribe(i)
            if all(w.subscribed or w.tries >= _TRIES for w in self.watchers):
                return

    def mark(self, text: str) -> None:
        self.marker = text.encode()
        self.marked = 0
        self.all_marked.clear()
        for w in self.watchers:
            w.marked_at = None


async def _report(ws: Watchers, every: float) -> None:
    while True:
        print(json.dumps(ws.status()), flush=True)
        await asyncio.sleep(every)


async def _measure(ws: Watchers, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ws.all_marked.wait(), timeout)
    times = sorted(w.marked_at for w in ws.watchers if w.marked_at is not None)
    out = {"marked": len(times), "times": times, "notifies": ws.notifies}
    print(json.dumps(out), flush=True)


async def run(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    host, _, port = args.gateway.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, args.port))
    for opt in (_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            if opt is not None:
                sock.setsockopt(socket.SOL_SOCKET, opt, 16 << 20)
                break
        except OSError:
            continue
    _, ws = await loop.create_datagram_endpoint(
        lambda: Watchers((host, int(port)), args.domain, args.target, args.count), sock=sock
    )
    reporter = asyncio.ensure_future(_report(ws, args.report))
    subscriber = asyncio.ensure_future(
        asyncio.sleep(0) if args.passive else ws.subscribe_all(args.rate)
    )
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    measuring: asyncio.Future[None] | None = None
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline:
        try:
            line = await asyncio.wait_for(reader.readline(), deadline - time.monotonic())
        except TimeoutError:
            break
        cmd, _, rest = line.decode().strip().partition(" ")
        if cmd == "mark":
            ws.mark(rest)
            measuring = asyncio.ensure_future(_measure(ws, args.timeout))
        elif cmd in ("quit", ""):
            break
    if measuring is not None:
        await measuring
    for task in (reporter, subscriber):
        task.cancel()
    if ws.transport is not None:
        ws.transport.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.watchers", description=__doc__)
    ap.add_argument("--gateway", required=True, help="host:port of the gateway's UDP listener")
    ap.add_argument("--port", type=int, default=0, help="our UDP port (0: any)")
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=500.0, help="SUBSCRIBEs per second")
    ap.add_argument("--domain", default="sip.localhost", help="the watchers' SIP domain")
    ap.add_argument("--target", default="sip:juliet@localhost", help="the presentity")
    ap.add_argument("--report", type=float, default=1.0, help="seconds between status lines")
    ap.add_argument("--timeout", type=float, default=120.0, help="bound of one measurement")
    ap.add_argument("--lifetime", type=float, default=900.0, help="stop after this long")
    ap.add_argument("--passive", action="store_true", help="no SUBSCRIBEs; answer NOTIFYs")
    asyncio.run(run(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

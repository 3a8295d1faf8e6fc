"""A lean XMPP load generator: raw asyncio TCP to a c2s port, SASL PLAIN, no slixmpp.

Loopback only (PLAIN over an unencrypted stream, as the bench Prosody allows). Two roles:

- `send`: log in several accounts, then write `--count` `<message/>` stanzas at `--rate`
  per second, round-robin over the connections and over `--destinations` recipients
  (`--to` with `{}` replaced by 0..D-1). Each body is `g=<gen-base + conn> s=<seq> t=<epoch>` (send
  time, wall clock, microseconds) so the receiving side can measure latency. Error stanzas
  that come back are counted. Prints one JSON line with what was sent.
- `recv`: log in several accounts with available presence, timestamp every `<message/>`
  that arrives, and write `g s sent arrival` lines to `--out` when it stops: after
  `--expect` messages, on SIGTERM, or after `--timeout`. Bodies written by sipp's
  `[timestamp]` keyword (date, time, epoch separated by tabs) are understood too.

Both print `READY` once every connection is logged in (bound, presence sent).

    python -m bench.loadgen_xmpp send --port P --account juliet0:pw ... --to romeo{}@sip.localhost \
        --destinations 100 --rate 2000 --count 10000
    python -m bench.loadgen_xmpp recv --port P --account juliet0:pw ... --expect 10000 --out arr.txt
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import re
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Arrival", "Connection", "login", "main", "parse_bodies"]

LOOPBACK = "127.0.0.1"
# g=<generator> s=<sequence> t=<epoch> (sipp: t=<date>\t<time>\t<epoch>)
_STAMP = re.compile(rb"g=(\d+) s=(\d+) t=(?:[^<]*\s)?(\d+\.\d+)")
_ERROR = re.compile(rb"<message[^>]*\btype=['\"]error['\"]")


class LoginError(RuntimeError):
    """The server refused the stream, the SASL PLAIN exchange or resource binding."""


@dataclass(frozen=True, slots=True)
class Arrival:
    generator: int
    seq: int
    sent: float  # epoch seconds written by the sender
    arrived: float  # epoch seconds when the chunk holding it was read


def parse_bodies(chunk: bytes, arrived: float) -> tuple[list[Arrival], int]:
    """The timestamped messages and the number of error stanzas in complete stanzas."""
    out: list[Arrival] = []
    errors = 0
    for stanza in chunk.split(b"</message>"):
        if _ERROR.search(stanza):
            errors += 1
            continue
        m = _STAMP.search(stanza)
        if m is not None:
            out.append(Arrival(int(m.group(1)), int(m.group(2)), float(m.group(3)), arrived))
    return out, errors


@dataclass
class Connection:
    """One logged-in c2s stream."""

    jid: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    buf: bytes = b""
    errors: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    gen_base: int = 0  # arrivals of generators below this (an earlier run) are not counted
    counted: int = 0

    async def until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        """Read until `marker` is buffered; everything up to and including it."""
        deadline = time.monotonic() + timeout
        while (i := self.buf.find(marker)) < 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoginError(
                    f"{self.jid}: no {marker!r} within {timeout}s: {self.buf[-300:]!r}"
                )
            chunk = await asyncio.wait_for(self.reader.read(65536), left)
            if not chunk:
                raise LoginError(f"{self.jid}: stream closed: {self.buf[-300:]!r}")
            self.buf += chunk
            if b"<stream:error" in self.buf or b"<failure" in self.buf:
                raise LoginError(f"{self.jid}: refused: {self.buf[-300:]!r}")
        head, self.buf = self.buf[: i + len(marker)], self.buf[i + len(marker) :]
        return head

    async def read_loop(self) -> None:
        """Collect messages (complete stanzas only) until the stream closes."""
        pending = self.buf
        self.buf = b""
        while True:
            end = pending.rfind(b"</message>")
            if end >= 0:
                done, pending = pending[: end + 10], pending[end + 10 :]
                got, errors = parse_bodies(done, time.time())
                self.arrivals.extend(got)
                self.counted += sum(1 for a in got if a.generator >= self.gen_base)
                self.errors += errors
            chunk = await self.reader.read(262144)
            if not chunk:
                return
            pending += chunk


def _header(domain: str) -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
    ).encode()


async def login(port: int, jid: str, password: str, resource: str = "bench") -> Connection:
    """Open a stream, SASL PLAIN (RFC 6120 §6, RFC 4616), bind, send available presence."""
    user, _, domain = jid.partition("@")
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    conn = Connection(jid, reader, writer)
    writer.write(_header(domain))
    features = await conn.until(b"</stream:features>")
    if b">PLAIN<" not in features:
        raise LoginError(f"{jid}: no SASL PLAIN offered: {features!r}")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    writer.write(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
    )
    await conn.until(b"<success")
    await conn.until(b">")
    writer.write(_header(domain))
    await conn.until(b"</stream:features>")
    writer.write(
        b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>" + resource.encode() + b"</resource></bind></iq>"
    )
    reply = await conn.until(b"</iq>")
    if b"type='result'" not in reply and b'type="result"' not in reply:
        raise LoginError(f"{jid}: bind failed: {reply!r}")
    writer.write(b"<presence/>")
    await writer.drain()
    return conn


def _accounts(values: Sequence[str]) -> list[tuple[str, str]]:
    return [(a.partition(":")[0], a.partition(":")[2]) for a in values]


async def _login_all(port: int, accounts: Sequence[str]) -> list[Connection]:
    conns = [
        await login(port, jid, pw, resource=f"bench{i}")
        for i, (jid, pw) in enumerate(_accounts(accounts))
    ]
    print("READY", flush=True)
    return conns


async def send(args: argparse.Namespace) -> dict[str, float]:
    conns = await _login_all(args.port, args.account)
    readers = [asyncio.ensure_future(c.read_loop()) for c in conns]
    dests = [args.to.replace("{}", str(i)).encode() for i in range(args.destinations)]
    rr_conn = itertools.cycle(range(len(conns)))
    rr_dest = itertools.cycle(dests)
    sent = 0
    start = time.monotonic()
    clock = time.time
    while sent < args.count:
        due = min(args.count, int(args.rate * (time.monotonic() - start)) + 1)
        while sent < due:
            k = next(rr_conn)
            body = f"g={args.gen_base + k} s={sent} t={clock():.6f}".encode()
            conns[k].writer.write(
                b"<message type='chat' id='m"
                + str(sent).encode()
                + b"' to='"
                + next(rr_dest)
                + b"'><body>"
                + body
                + b"</body></message>"
            )
            sent += 1
        for c in conns:
            if c.writer.transport.get_write_buffer_size() > 1 << 20:
                await c.writer.drain()
        await asyncio.sleep(0.002)
    seconds = time.monotonic() - start
    for c in conns:
        await c.writer.drain()
    await asyncio.sleep(args.linger)  # error stanzas may still come back
    for r in readers:
        r.cancel()
    for c in conns:
        c.writer.close()
    return {
        "sent": sent,
        "seconds": seconds,
        "rate": sent / max(seconds, 1e-9),
        "errors": sum(c.errors for c in conns),
    }


async def recv(args: argparse.Namespace) -> dict[str, float]:
    conns = await _login_all(args.port, args.account)
    for c in conns:
        c.gen_base = args.gen_base
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    readers = [asyncio.ensure_future(c.read_loop()) for c in conns]
    deadline = time.monotonic() + args.timeout
    while not stop.is_set() and time.monotonic() < deadline:
        if args.expect and sum(c.counted for c in conns) >= args.expect:
            break
        await asyncio.sleep(0.02)
    for r in readers:
        r.cancel()
    arrivals = [a for c in conns for a in c.arrivals]
    with open(args.out, "w", encoding="ascii") as f:
        for a in arrivals:
            f.write(f"{a.generator} {a.seq} {a.sent:.6f} {a.arrived:.6f}\n")
    for c in conns:
        c.writer.close()
    return {"received": len(arrivals), "errors": sum(c.errors for c in conns)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.loadgen_xmpp", description=__doc__)
    sub = ap.add_subparsers(dest="role", required=True)
    for role in ("send", "recv"):
        p = sub.add_parser(role)
        p.add_argument("--port", type=int, required=True, help="c2s port on 127.0.0.1")
        p.add_argument("--account", action="append", required=True, help="jid:password")
    s = sub.choices["send"]
    s.add_argument("--to", required=True, help="recipient, {} = destination number")
    s.add_argument("--destinations", type=int, default=1)
    s.add_argument("--rate", type=float, required=True, help="messages per second")
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--linger", type=float, default=1.0, help="seconds to wait for errors")
    s.add_argument("--gen-base", type=int, default=0, help="generator number of connection 0")
    r = sub.choices["recv"]
    r.add_argument("--expect", type=int, default=0, help="stop after this many (0: never)")
    r.add_argument("--gen-base", type=int, default=0, help="count only generators >= this")
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    result = asyncio.run(send(args) if args.role == "send" else recv(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

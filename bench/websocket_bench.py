"""SIP over WebSocket (issue 20): MESSAGE/s over WebSocket against UDP in the same run,
and memory per connection with N concurrent WebSocket registrations.

The system under test is a child process (`serve`): a `SipEndpoint` with a udp and a ws
listener on loopback and the real `Registrar` (in-memory store, a users file with one
user per WebSocket; 127.0.0.1 is a trusted peer over UDP, so UDP REGISTERs are not
challenged, while WebSocket clients never are trusted peers and answer a digest
challenge, as browsers do). MESSAGEs are answered 200 by a handler in that process. The
load generator is this process:

* rate: a window of `--window` outstanding MESSAGEs for `--seconds`, first over one UDP
  socket (the baseline), then over one WebSocket; rows `udp` and `ws`, `vs bare` =
  ws rate / udp rate. CPU s/1k is the server process's.
* memory: the server's RSS with nothing registered, after `-n` REGISTERs over UDP (one
  binding each, from distinct Contacts: the registrar's own cost), and after `-n`
  WebSocket connections each registering its own user (default 5,000). Rows `udp
  registrations` and `ws registrations` give the RSS growth per registration; the
  difference is the cost of a WebSocket connection (aiohttp's protocol, reader, writer
  and handler task, our `WsConnection`, the kernel socket is not in RSS).

    PYTHONPATH=<tree> .venv/bin/python -m bench.websocket_bench [-n 5000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import Row, cpu_seconds_of, dump_results, print_table, rss_bytes_of

__all__ = ["main", "parse_args", "run"]

HOST = "127.0.0.1"
DOMAIN = "sip.localhost"


# ------------------------------------------------------------------ the server process


def write_users(path: Path, n: int) -> None:
    from gateway.registrar.users import format_user, hash_password

    path.write_text(
        "".join(format_user(hash_password(f"sip:ws{i}@{DOMAIN}", None, f"pw{i}")) for i in range(n))
    )
    path.chmod(0o600)


async def serve(state_dir: Path, n: int) -> None:
    from gateway.config import (
        AdminConfig,
        ComponentConfig,
        Config,
        DnsConfig,
        GatewaySection,
        ListenerConfig,
        RateLimitsConfig,
        RegistrarConfig,
        SipConfig,
        Transport,
        XmppConfig,
    )
    from gateway.metrics import Metrics
    from gateway.registrar.service import Registrar
    from gateway.sip.transport.endpoint import SipEndpoint
    from gateway.sip.useragent import IncomingRequest
    from gateway.store.memory import MemoryStore

    listeners = (
        ListenerConfig(Transport.UDP, HOST, 0),
        ListenerConfig(Transport.WS, HOST, 0, heartbeat=300.0),
    )
    users = state_dir / "users.toml"
    write_users(users, n)
    cfg = Config(
        gateway=GatewaySection(state_dir=state_dir),
        xmpp=XmppConfig(components=(ComponentConfig(DOMAIN, "s3cret"),)),
        sip=SipConfig(listeners=listeners, hosted_domains=(DOMAIN,), trusted_peers=(HOST,)),
        registrar=RegistrarConfig(users_file=users, max_bindings=10),
        rate_limits=RateLimitsConfig(),  # REGISTER from a trusted peer never fails
        dns=DnsConfig(),
        admin=AdminConfig(enabled=False),
    )
    holder: dict[str, Registrar] = {}

    class Handler:
        def handle(self, incoming: IncomingRequest) -> Any:
            method = incoming.request.method
            if method == "REGISTER":
                return holder["registrar"].handle_register(incoming)
            if method != "ACK":
                incoming.reply(200)
            return None

    endpoint = SipEndpoint(cfg.sip, Handler(), idle_timeout=3600.0)
    registrar = Registrar(cfg, MemoryStore(), endpoint, Metrics())
    holder["registrar"] = registrar
    await registrar.start()
    await endpoint.start()
    ports = {li.transport_name: li.local[1] for li in endpoint.listeners}
    print(json.dumps(ports), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await endpoint.stop()
    await registrar.stop()


# ------------------------------------------------------------------ load generator


def message(i: int, transport: str) -> bytes:
    body = b"hello"
    branch = f"z9hG4bK{secrets.token_hex(4)}{i}"
    return (
        f"MESSAGE sip:juliet@{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {HOST}:5999;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:romeo@{DOMAIN}>;tag=r{i}\r\n"
        f"To: <sip:juliet@{DOMAIN}>\r\n"
        f"Call-ID: m{i}-{branch}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def register(user: str, transport: str, contact_host: str, auth: str = "") -> bytes:
    branch = f"z9hG4bK{secrets.token_hex(6)}"
    return (
        f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {contact_host};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{DOMAIN}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{user}@{DOMAIN}>\r\n"
        f"Call-ID: reg-{user}-{branch}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{user}@{contact_host};transport={transport.lower()}>\r\n"
        "Expires: 3600\r\n"
        + (f"Authorization: {auth}\r\n" if auth else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()


def status_of(data: bytes) -> int:
    return int(data[8:11]) if data.startswith(b"SIP/2.0 ") else 0


class Window:
    """`size` requests outstanding; counts 2xx answers and everything else as errors."""

    def __init__(self, size: int, deadline: float) -> None:
        self.free = asyncio.Semaphore(size)
        self.deadline = deadline
        self.ok = 0
        self.errors = 0

    def answered(self, data: bytes) -> None:
        if 200 <= status_of(data) < 300:
            self.ok += 1
        else:
            self.errors += 1
        self.free.release()


async def rate_udp(port: int, seconds: float, window: int) -> tuple[int, int, float]:
    loop = asyncio.get_running_loop()
    win = Window(window, loop.time() + seconds)

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            win.answered(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(HOST, port))
    start, i = loop.time(), 0
    while loop.time() < win.deadline:
        await win.free.acquire()
        transport.sendto(message(i, "UDP"))
        i += 1
    elapsed = loop.time() - start
    await asyncio.sleep(0.5)
    transport.close()
    return win.ok, win.errors, elapsed


async def rate_ws(port: int, seconds: float, window: int) -> tuple[int, int, float]:
    import aiohttp

    loop = asyncio.get_running_loop()
    win = Window(window, loop.time() + seconds)
    url = f"http://{HOST}:{port}/"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, protocols=("sip",)) as ws,
    ):

        async def reader() -> None:
            async for msg in ws:
                data = msg.data.encode() if isinstance(msg.data, str) else msg.data
                win.answered(data)

        reading = asyncio.ensure_future(reader())
        start, i = loop.time(), 0
        while loop.time() < win.deadline:
            await win.free.acquire()
            await ws.send_str(message(i, "WS").decode())
            i += 1
        elapsed = loop.time() - start
        await asyncio.sleep(0.5)
        reading.cancel()
    return win.ok, win.errors, elapsed


async def register_udp(port: int, n: int) -> int:
    """n users registered over UDP from one socket (distinct AORs and Contacts)."""
    loop = asyncio.get_running_loop()
    win = Window(64, 0)

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            win.answered(data)

    transport, _ = await loop.create_datagram_endpoint(Proto, remote_addr=(HOST, port))
    for i in range(n):
        await win.free.acquire()
        transport.sendto(register(f"udp{i}", "UDP", f"{HOST}:{6000 + i % 50000}"))
    while win.ok + win.errors < n:
        await asyncio.sleep(0.05)
    transport.close()
    return win.errors


async def register_ws(port: int, n: int, parallel: int = 100) -> tuple[list[Any], Any, int]:
    """n WebSocket connections, each registering its own user (401, then digest); kept
    open."""
    import aiohttp

    from gateway.sip.auth import build_authorization, select_challenge
    from gateway.sip.parser import parse_message

    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)
    conns: list[Any] = []
    errors = 0
    gate = asyncio.Semaphore(parallel)

    async def one(i: int) -> None:
        nonlocal errors
        async with gate:
            ws = await session.ws_connect(f"http://{HOST}:{port}/", protocols=("sip",))
            conns.append(ws)
            user, host = f"ws{i}", f"{secrets.token_hex(6)}.invalid"
            await ws.send_str(register(user, "WS", host).decode())
            msg = await ws.receive()
            challenge = parse_message(msg.data.encode())
            values = list(challenge.headers.get_all("WWW-Authenticate"))
            if not values:
                errors += 1
                return
            auth = build_authorization(
                select_challenge(values), "REGISTER", f"sip:{DOMAIN}", user, password=f"pw{i}"
            )
            await ws.send_str(register(user, "WS", host, auth).decode())
            msg = await ws.receive()
            if not (200 <= status_of(msg.data.encode()) < 300):
                errors += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    return conns, session, errors


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def measure(args: argparse.Namespace) -> list[Row]:
    state = Path(args.state_dir or f"/tmp/ws-bench-{os.getpid()}")
    state.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.websocket_bench",
            "serve",
            "--state-dir",
            str(state),
            "-n",
            str(args.n),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        rows: list[Row] = []
        results: dict[str, float] = {}
        for name, fn, port in (
            ("udp", rate_udp, ports["udp"]),
            ("ws", rate_ws, ports["ws"]),
        ):
            cpu0 = cpu_seconds_of(proc.pid)
            ok, errors, elapsed = await fn(port, args.seconds, args.window)
            cpu = cpu_seconds_of(proc.pid) - cpu0
            rate = ok / elapsed
            results[name] = rate
            rows.append(
                Row(
                    "ws-message",
                    f"MESSAGE over {name}",
                    rate=rate,
                    cpu_per_1k=1000 * cpu / max(ok, 1),
                    rss_mb=rss_bytes_of(proc.pid) / 2**20,
                    errors=errors,
                    ratio=rate / results["udp"],
                    extra={"window": args.window, "seconds": args.seconds, "answered": ok},
                )
            )
        await asyncio.sleep(1.0)
        base = rss_bytes_of(proc.pid)
        errors = await register_udp(ports["udp"], args.n)
        await asyncio.sleep(1.0)
        after_udp = rss_bytes_of(proc.pid)
        per_udp = (after_udp - base) / args.n
        rows.append(
            Row(
                "ws-memory",
                f"{args.n} udp registrations",
                rss_mb=after_udp / 2**20,
                errors=errors,
                extra={"bytes_per_registration": per_udp},
            )
        )
        start = time.monotonic()
        conns, session, errors = await register_ws(ports["ws"], args.n)
        took = time.monotonic() - start
        await asyncio.sleep(1.0)
        after_ws = rss_bytes_of(proc.pid)
        per_ws = (after_ws - after_udp) / args.n
        rows.append(
            Row(
                "ws-memory",
                f"{args.n} ws registrations",
                rate=args.n / took,
                rss_mb=after_ws / 2**20,
                errors=errors,
                ratio=per_ws / per_udp if per_udp > 0 else None,
                extra={
                    "bytes_per_registration": per_ws,
                    "bytes_per_connection": per_ws - per_udp,
                    "open": sum(1 for c in conns if not c.closed),
                },
            )
        )
        for c in conns:
            await c.close()
        await session.close()
        return rows
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run(args: argparse.Namespace) -> list[Row]:
    raise_fd_limit()
    return asyncio.run(measure(args))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.websocket_bench", description=__doc__)
    ap.add_argument("mode", nargs="?", default="bench", choices=("bench", "serve"))
    ap.add_argument("-n", type=int, default=5000, help="concurrent WebSocket registrations")
    ap.add_argument("--seconds", type=float, default=5.0, help="duration of each rate run")
    ap.add_argument("--window", type=int, default=64, help="outstanding MESSAGEs")
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--no-json", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "serve":
        raise_fd_limit()
        asyncio.run(serve(Path(args.state_dir), args.n))
        return 0
    rows = run(args)
    print_table(rows)
    for row in rows:
        if "bytes_per_registration" in row.extra:
            extra = ", ".join(f"{k}={v:,.0f}" for k, v in row.extra.items())
            print(f"  {row.name}: {extra}")
    if not args.no_json:
        params = {"n": args.n, "seconds": args.seconds, "window": args.window}
        print(dump_results("websocket", rows, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MSRP transport (issue 18): messages/s over one session and memory per session with
1,000 concurrent sessions, each against a bare asyncio baseline measured in the same run.

* rate: two `MsrpService`s in this process, one session between them over TCP loopback;
  `-n` messages of `--size` octets, `--window` outstanding; each counts when its success
  REPORT came back (the receiver accepts at once: RFC 7573's held REPORT released
  immediately). Baseline: a bare asyncio client and server exchanging the same bytes
  (the SEND, the 200 and the REPORT, pre-serialized; the server only looks for
  end-lines). `vs bare` = MSRP rate / bare rate. CPU s/1k covers both ends.
* memory: a child process per case measures its RSS growth for `--sessions` sessions:
  `msrp` = one `MsrpService`, each session bound by its own raw TCP connection that
  delivered one message (the connection's client end is in the same process);
  `msrp reuse` = two services, sessions sharing one connection (RFC 4975 §5.4; both
  ends' session objects counted); `bare` = an asyncio server with the same number of
  connections exchanging the same bytes. Per-session cost = growth / sessions.
* `--bridge` (issue 18, RFC 7573): "MSRP SEND -> XMPP over one session": the gateway
  process (`[msrp] enabled`, log level info) with Prosody; sipp sets the session up
  (tests/sipp/session_msrp_wait_bye_uac.xml), the independent MSRP test client
  (tests/harness/msrpclient.py) sends `-n` messages with `--window` outstanding, each
  counting when its success REPORT came back (`[sessions] receipt_wait = 0`: released
  once Prosody took the stanza) and the slixmpp receiver got every stanza. CPU s/1k is
  the gateway process's alone; `vs bare` against the bare asyncio row of the same run.

    PYTHONPATH=<tree> .venv/bin/python -m bench.msrp_bench [-n 5000] [--sessions 1000]
        [--bridge]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

from bench.common import Row, dump_results, print_table, rss_bytes_of
from gateway.config import MsrpConfig
from gateway.msrp.chunks import random_id
from gateway.msrp.transport import IncomingMessage, MsrpService, MsrpSession
from gateway.msrp.uri import MsrpUri

__all__ = ["main"]
HOST = "127.0.0.1"


def _config() -> MsrpConfig:
    return MsrpConfig(enabled=True, address=HOST, port=0, max_sessions=1_000_000,
                      max_connections=1_000_000)  # fmt: skip


async def _pair(a: MsrpService, b: MsrpService) -> tuple[MsrpSession, MsrpSession]:
    def accept(msg: IncomingMessage) -> None:
        msg.accept()

    sa = await a.new_session(accept)
    sb = await b.new_session(accept)
    await sb.connect(sa.local_path, "passive")
    await sa.connect(sb.local_path, "active")
    await sb.wait_connected()
    return sa, sb


async def msrp_rate(n: int, size: int, window: int) -> tuple[float, float, int]:
    a, b = MsrpService(_config()), MsrpService(_config())
    await a.start()
    await b.start()
    try:
        sa, _ = await _pair(a, b)
        body = b"x" * size
        gate = asyncio.Semaphore(window)
        errors = 0

        async def one() -> None:
            nonlocal errors
            async with gate:
                if not (await sa.send_message("text/plain", body)).ok:
                    errors += 1

        await asyncio.gather(*(one() for _ in range(min(n, 200))))  # warm up
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - t0, time.process_time() - c0, errors
    finally:
        await a.stop()
        await b.stop()


def _frames(size: int) -> tuple[bytes, bytes, bytes, bytes]:
    """SEND, 200 and REPORT as MSRP writes them, and the REPORT's end-line."""
    to = MsrpUri.make(HOST, 2855, random_id(20))
    frm = MsrpUri.make(HOST, 2856, random_id(20))
    tid, rid, mid = random_id(), random_id(), random_id()
    send = (f"MSRP {tid} SEND\r\nTo-Path: {to}\r\nFrom-Path: {frm}\r\nMessage-ID: {mid}\r\n"
            f"Byte-Range: 1-{size}/{size}\r\nSuccess-Report: yes\r\nFailure-Report: yes\r\n"
            f"Content-Type: text/plain\r\n\r\n").encode() + b"x" * size + (
            f"\r\n-------{tid}$\r\n").encode()  # fmt: skip
    ok = f"MSRP {tid} 200 OK\r\nTo-Path: {frm}\r\nFrom-Path: {to}\r\n-------{tid}$\r\n".encode()
    report = (
        f"MSRP {rid} REPORT\r\nTo-Path: {frm}\r\nFrom-Path: {to}\r\nMessage-ID: {mid}\r\n"
        f"Byte-Range: 1-{size}/{size}\r\nStatus: 000 200 OK\r\n-------{rid}$\r\n"
    ).encode()
    return send, ok, report, f"-------{rid}$\r\n".encode()


class _Counter:
    def __init__(self, marker: bytes) -> None:
        self.marker = marker
        self.tail = b""

    def count(self, data: bytes) -> int:
        buf = self.tail + data
        found = buf.count(self.marker)
        self.tail = buf[-(len(self.marker) - 1) :]
        return found


async def bare_rate(n: int, size: int, window: int) -> tuple[float, float, int]:
    send, ok, report, report_end = _frames(size)
    send_end = send[send.rindex(b"-------") :]
    reply = ok + report

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counter = _Counter(send_end)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                k = counter.count(data)
                if k:
                    writer.write(reply * k)
        writer.close()

    server = await asyncio.start_server(serve, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(HOST, port)
    counter = _Counter(report_end)
    try:

        async def run(count: int) -> None:
            sent = done = 0
            while done < count:
                while sent < count and sent - done < window:
                    writer.write(send)
                    sent += 1
                done += counter.count(await reader.read(65536))

        await run(min(n, 200))
        t0, c0 = time.perf_counter(), time.process_time()
        await run(n)
        return time.perf_counter() - t0, time.process_time() - c0, 0
    finally:
        writer.close()
        server.close()
        await server.wait_closed()


# -- memory (child processes) ---------------------------------------------------------


def _settle() -> int:
    gc.collect()
    return rss_bytes_of(os.getpid())


async def mem_msrp(sessions: int) -> tuple[int, int]:
    svc = MsrpService(_config())
    await svc.start()
    held: list[IncomingMessage] = []
    before = _settle()
    conns = []
    for i in range(sessions):
        s = await svc.new_session(held.append)
        peer = MsrpUri.make(HOST, 9, f"peer{i:06d}")
        await s.connect((peer,), "passive")
        reader, writer = await asyncio.open_connection(HOST, svc.port)
        tid, mid = random_id(), random_id()
        writer.write(
            f"MSRP {tid} SEND\r\nTo-Path: {s.local_uri}\r\nFrom-Path: {peer}\r\n"
            f"Message-ID: {mid}\r\nByte-Range: 1-5/5\r\nContent-Type: text/plain\r\n\r\n"
            f"hello\r\n-------{tid}$\r\n".encode()
        )
        conns.append((reader, writer))
        if i % 100 == 99:
            await asyncio.sleep(0)
    while len(held) < sessions:
        await asyncio.sleep(0.05)
    after = _settle()
    assert svc.sessions == sessions and svc.connections == sessions
    await svc.stop()
    return before, after


async def mem_reuse(sessions: int) -> tuple[int, int]:
    a, b = MsrpService(_config()), MsrpService(_config())
    await a.start()
    await b.start()
    before = _settle()
    pairs = [await _pair(a, b) for _ in range(sessions)]
    await asyncio.gather(*(sa.send_message("text/plain", b"hello") for sa, _ in pairs))
    after = _settle()
    assert a.connections == 1 and b.connections == 1 and b.sessions == sessions
    await a.stop()
    await b.stop()
    return before, after


async def mem_bare(sessions: int) -> tuple[int, int]:
    send, ok, report, report_end = _frames(5)
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append((reader, writer))
        data = b""
        while b"$\r\n" not in data:
            data += await reader.read(65536)
        writer.write(ok + report)
        await reader.read(65536)  # stay open

    server = await asyncio.start_server(serve, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    before = _settle()
    conns = []
    for i in range(sessions):
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(send)
        conns.append((reader, writer))
        if i % 100 == 99:
            await asyncio.sleep(0)
    for reader, _ in conns:
        got = b""
        while report_end not in got:
            got += await reader.read(65536)
    after = _settle()
    server.close()
    return before, after


async def bridge_rate(n: int, size: int, window: int) -> tuple[float, float, int]:
    """The gateway process between the MSRP test client and a Prosody user (see above)."""
    import tempfile
    from pathlib import Path

    from bench.common import cpu_seconds_of
    from tests.harness import LOOPBACK
    from tests.harness import msrpclient as mc
    from tests.harness.gateway_proc import GatewayProcess, gateway_config
    from tests.harness.ports import free_port
    from tests.harness.prosody import ProsodyServer
    from tests.harness.sipp import SCENARIO_DIR, Sipp
    from tests.harness.xmpp_client import XmppTestClient

    work = Path(tempfile.mkdtemp(prefix="bench-msrp-bridge-"))
    component, secret = "sip.localhost", "bench-secret"
    prosody = ProsodyServer(work / "prosody", components={component: secret},
                            extra_config="network_settings = { nagle = false }")  # fmt: skip
    prosody.start()
    server, accepted, mport = await mc.listen(HOST)
    gw: GatewayProcess | None = None
    try:
        jid = prosody.add_user("juliet", "pw")
        port = free_port()
        config = gateway_config(
            gateway={"state_dir": str(work / "gw-state")},
            xmpp={"port": prosody.component_port,
                  "components": [{"domain": component, "secret": secret}]},
            sip={"listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
                 "hosted_domains": [], "trusted_peers": [LOOPBACK]},
            msrp={"enabled": True, "address": LOOPBACK, "port": free_port()},
            sessions={"receipt_wait": 0},
            admin={"enabled": False},
        )  # fmt: skip
        gw = GatewayProcess(config, work / "gw", log_level="info")
        gw.start()
        gw.wait_for_log(r"xmpp link sip\.localhost up", timeout=20)
        juliet = XmppTestClient(jid, "pw", port=prosody.c2s_port)
        await juliet.connect()
        got = 0
        all_in = asyncio.Event()

        def count(_msg: Any) -> None:
            nonlocal got
            got += 1
            if got >= n + 1:
                all_in.set()

        juliet.xmpp.add_event_handler("message", count)
        text = (SCENARIO_DIR / "session_msrp_wait_bye_uac.xml").read_text()
        fields = {"MSRP_PORT": str(mport), "MSRP_PATH": f"msrp://{HOST}:{mport}/passive1;tcp",
                  "MSRP_PROTO": "TCP/MSRP", "MSRP_EXTRA": ""}  # fmt: skip
        for key, value in fields.items():
            text = text.replace(f"@@{key}@@", value)
        scenario = work / "uac.xml"
        scenario.write_text(text)
        sipp = Sipp(work / "sipp")
        keys = {"to_uri": f"sip:{jid}", "from_uri": f"sip:romeo@{component}"}
        call = asyncio.create_task(asyncio.to_thread(
            sipp.run, scenario, remote=f"{LOOPBACK}:{port}", transport="u1", keys=keys,
            timeout=600))  # fmt: skip
        client = await asyncio.wait_for(accepted.get(), 20)
        gw_path = (await client.message(timeout=20)).get("From-Path") or ""
        client.send(gw_path, b"warm up", "text/plain")
        await client.next_report(timeout=20)
        body = b"x" * size
        errors = 0
        t0, c0 = time.perf_counter(), cpu_seconds_of(gw.pid)
        sent = min(window, n)
        for _ in range(sent):
            client.send(gw_path, body, "text/plain")
        for _ in range(n):
            report = await client.next_report(timeout=60)
            if not (report.get("Status") or "").startswith("000 200"):
                errors += 1
            if sent < n:
                client.send(gw_path, body, "text/plain")
                sent += 1
        await asyncio.wait_for(all_in.wait(), 60)
        wall, cpu = time.perf_counter() - t0, cpu_seconds_of(gw.pid) - c0
        gone = "<gone xmlns='http://jabber.org/protocol/chatstates'/>"
        juliet.send_raw(f"<message to='romeo@{component}' type='chat'>{gone}</message>")
        await asyncio.wait_for(call, 30)
        await juliet.disconnect()
        await client.close()
        return wall, cpu, errors
    finally:
        server.close()
        if gw is not None and gw.running:
            gw.kill()
        prosody.stop()


def _child(case: str, sessions: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.msrp_bench", "--child", case, "--sessions", str(sessions)],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def run(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    bare_wall, bare_cpu, _ = asyncio.run(bare_rate(args.n, args.size, args.window))
    bare = args.n / bare_wall
    rows.append(Row("msrp", "bare asyncio, same bytes", rate=bare,
                    cpu_per_1k=bare_cpu * 1000 / args.n, ratio=1.0))  # fmt: skip
    wall, cpu, errors = asyncio.run(msrp_rate(args.n, args.size, args.window))
    rows.append(Row("msrp", "SEND -> delivered -> REPORT, 1 session", rate=args.n / wall,
                    cpu_per_1k=cpu * 1000 / args.n, errors=errors,
                    ratio=(args.n / wall) / bare))  # fmt: skip
    if args.bridge:
        wall, cpu, errors = asyncio.run(bridge_rate(args.n, args.size, args.window))
        rows.append(Row("msrp", "MSRP SEND -> XMPP over one session (gateway)",
                        rate=args.n / wall, cpu_per_1k=cpu * 1000 / args.n, errors=errors,
                        ratio=(args.n / wall) / bare))  # fmt: skip
    per: dict[str, float] = {}
    for case, name in (("bare", "bare asyncio connections"), ("msrp", "msrp sessions"),
                       ("reuse", "msrp sessions, one connection")):  # fmt: skip
        fig = _child(case, args.sessions)
        grow = fig["after"] - fig["before"]
        per[case] = grow / args.sessions
        rows.append(Row("msrp-mem", f"{name} x{args.sessions}", rss_mb=fig["after"] / 2**20,
                        extra={"bytes_per_session": per[case]}))  # fmt: skip
    rows[-2].extra["minus_bare"] = per["msrp"] - per["bare"]
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("-n", type=int, default=5000, help="messages for the rate rows")
    p.add_argument("--size", type=int, default=100, help="octets per message body")
    p.add_argument("--window", type=int, default=32, help="messages outstanding")
    p.add_argument("--sessions", type=int, default=1000, help="concurrent sessions (memory)")
    p.add_argument("--child", choices=("msrp", "reuse", "bare"), help=argparse.SUPPRESS)
    p.add_argument("--no-json", action="store_true")
    p.add_argument("--bridge", action="store_true", help="also MSRP -> XMPP via the gateway")
    args = p.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.child:
        fn = {"msrp": mem_msrp, "reuse": mem_reuse, "bare": mem_bare}[args.child]
        before, after = asyncio.run(fn(args.sessions))
        print(json.dumps({"before": before, "after": after}))
        return 0
    rows = run(args)
    print_table(rows)
    for row in rows:
        if row.extra:
            print(f"  {row.name}: " + ", ".join(f"{k}={v:,.0f}" for k, v in row.extra.items()))
    if not args.no_json:
        params = {"n": args.n, "size": args.size, "window": args.window,
                  "sessions": args.sessions, "bridge": args.bridge}  # fmt: skip
        print(dump_results("msrp", rows, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())

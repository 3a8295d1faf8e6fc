"""Presence at scale (issue 11): `subs-100k` (100,000 live subscriptions: RSS and restore
time after a restart).

subs-100k: the SQLite store in a scratch state directory is filled directly through
`gateway.store` (`put_subscriptions`, batches of 5,000) with N S2X subscriptions (SIP
watchers w<i>@sip.localhost of juliet<i % 100>@localhost, each its own RFC 6665 dialog,
state pending with the XMPP authorization asked, so that restoring sends nothing to
anyone). The gateway is then started against a real Prosody, stopped, and started again;
each start is timed from process start to the `gateway ready` line (the presence service
restores every record before it: `presence subscriptions restored count=N`), and its RSS
sampled at ready and after `--settle` seconds. The bare baseline is the same gateway over
an empty store, in the same run: `vs bare` is its start time / the loaded start time, and
the RSS difference is what the subscriptions cost.

    python -m bench.presence_bench subs-100k [-n 100000] [--no-json]

presence-fanout: one XMPP user (juliet@localhost, a raw c2s client that answers every
`subscribe` with `subscribed`) and N SIP watchers (`bench/watchers.py`, one UDP program:
w<i>@sip.localhost, each its own SUBSCRIBE dialog through the gateway, every NOTIFY
answered 200). Prosody keeps rosters in memory (`storage = { roster = "memory" }`), so the
N approvals do not rewrite a roster file each. Once every watcher is active with a PIDF
and no NOTIFY has flowed for longer than the gateway's `notify_interval` (so the RFC 3856
§6.2.2 per-watch throttle does not hold the change back), juliet sends one presence change
(a new <status>); the figure is the wall time from that send to the N-th NOTIFY answered
(and the first, the median), with the gateway's CPU over it and Prosody's (sampled from
/proc every 5 ms: CPU used, and when it last rose).

The bare baseline runs first in the same run, on the same Prosody and provisioned roster:
`bench.baseline --fanout` is the component (one canned NOTIFY datagram per `<presence/>`
to a watcher, no logic) and `bench.watchers --passive` only answers; juliet logs in after
them (her initial presence makes every watcher active), then sends the same change. It
also gives when the component read the first and the last of the change's stanzas, i.e.
Prosody's own fan-out time. `vs bare` = bare last-NOTIFY time / the gateway's.

    python -m bench.presence_bench presence-fanout [-n 10000] [--rate 200] [--approvals]
        [--skip-baseline] [--profile FILE] [--no-json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    Row,
    cpu_seconds_of,
    dump_results,
    percentile,
    print_table,
    rss_bytes_of,
)
from bench.loadgen_xmpp import Connection, login
from bench.pager_bench import _finish, _start, _wait_line
from gateway.store.api import SubscriptionRecord
from gateway.store.sqlite import open_store
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer

__all__ = [
    "fill_store",
    "main",
    "records",
    "run_fanout",
    "run_subs",
    "summarize_fanout",
    "summarize_subs",
]

COMPONENT = "sip.localhost"
SECRET = "bench-secret"
TARGET_SUBS = 100_000
TARGET_RSS_MB = 300.0
TARGET_RESTORE_S = 5.0
CONTACTS = 100
TARGET_WATCHERS = 10_000
TARGET_FANOUT_S = 1.0
PRESENTITY = "juliet@localhost"


def records(n: int, *, now: float, contacts: int = CONTACTS) -> Iterator[SubscriptionRecord]:
    """N distinct S2X dialogs, as the presence service writes them for a pending watch."""
    for i in range(n):
        yield SubscriptionRecord(
            direction="s2x",
            watcher=f"sip:w{i}@{COMPONENT}",
            target=f"sip:juliet{i % contacts}@localhost",
            call_id=f"bench-{i}@{LOOPBACK}",
            local_tag=f"gw{i:x}",
            remote_tag=f"w{i:x}",
            remote_target=f"sip:w{i}@{LOOPBACK}:9;transport=udp",
            local_cseq=1,
            remote_cseq=1,
            state="pending",
            expires_at=now + 86_400,
            xmpp_authorization="none",
        )


def fill_store(state_dir: Path, n: int, batch: int = 5000) -> float:
    """Write n records through the store API; the seconds it took."""
    store = open_store(state_dir)
    start = time.perf_counter()
    try:
        chunk: list[SubscriptionRecord] = []
        for rec in records(n, now=time.time()):
            chunk.append(rec)
            if len(chunk) >= batch:
                store.put_subscriptions(chunk)
                chunk = []
        if chunk:
            store.put_subscriptions(chunk)
    finally:
        store.close()
    return time.perf_counter() - start


@dataclass
class Start:
    seconds: float  # process start -> "gateway ready"
    restored: int  # from the "presence subscriptions restored" line (0 if absent)
    rss_ready: int
    rss_settled: int
    cpu: float  # CPU seconds of the gateway up to the settled sample


_RESTORED = re.compile(r"presence subscriptions restored.*?count=(\d+)")


def start_once(gw: GatewayProcess, settle: float) -> Start:
    if gw.log_path.exists():  # the ready line is looked for in the whole log: start afresh
        gw.log_path.rename(gw.log_path.with_suffix(f".{time.time_ns()}.log"))
    t0 = time.perf_counter()
    gw.start()
    seconds = time.perf_counter() - t0
    rss_ready = rss_bytes_of(gw.pid)
    time.sleep(settle)
    counts = _RESTORED.findall(gw.log_text())
    return Start(
        seconds,
        int(counts[-1]) if counts else 0,  # the last start's line
        rss_ready,
        rss_bytes_of(gw.pid),
        cpu_seconds_of(gw.pid),
    )


@contextlib.contextmanager
def _prosody(workdir: Path, extra: str = "") -> Iterator[ProsodyServer]:
    log = workdir / "prosody" / "prosody.log"
    prosody = ProsodyServer(
        workdir / "prosody",
        components={COMPONENT: SECRET},
        extra_config=(
            f'log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{log}" }} }}\n'
            + extra
        ),
    )
    prosody.start()
    try:
        yield prosody
    finally:
        prosody.stop()


def _gateway(
    prosody: ProsodyServer,
    workdir: Path,
    state_dir: Path,
    sip_port: int | None = None,
    profile: Path | None = None,
) -> GatewayProcess:
    config = gateway_config(
        gateway={"state_dir": str(state_dir)},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": SECRET, "addressing": "mirrored"}],
        },
        sip={
            "listeners": [
                {"transport": "udp", "address": LOOPBACK, "port": sip_port or free_port()}
            ],
            "hosted_domains": [],
            "trusted_peers": [LOOPBACK],
        },
        admin={"enabled": False},
    )
    argv = None
    if profile is not None:  # cProfile over the gateway's whole life, written at SIGTERM
        toml = workdir / "gateway.toml"
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "gateway", "run"]
        argv += ["--config", str(toml), "--log-level", "info"]
    return GatewayProcess(config, workdir, log_level="info", ready_timeout=120, argv=argv)


def _row(name: str, s: Start, n: int, *, ratio: float | None = None, **extra: object) -> Row:
    return Row(
        scenario="subs-100k",
        name=name,
        rate=s.restored / s.seconds if s.restored else None,
        cpu_per_1k=s.cpu * 1000 / n if n else None,
        rss_mb=s.rss_settled / 2**20,
        errors=0 if s.restored == n else abs(n - s.restored),
        ratio=ratio,
        extra={
            "start_to_ready_s": s.seconds,
            "restored": s.restored,
            "rss_ready_mb": s.rss_ready / 2**20,
            "rss_settled_mb": s.rss_settled / 2**20,
            "gateway_cpu_s": s.cpu,
            **extra,
        },
    )


def run_subs(n: int = TARGET_SUBS, settle: float = 5.0) -> list[Row]:
    """Empty-store start (bare), then fill n records, start, restart; rows for each start."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-subs-"))
    rows: list[Row] = []
    try:
        with _prosody(workdir) as prosody:
            empty = _gateway(prosody, workdir / "gw-empty", workdir / "state-empty")
            bare = start_once(empty, settle)
            empty.terminate(60)
            rows.append(_row("bare: empty store", bare, 0))
            state = workdir / "state"
            state.mkdir()
            fill_s = fill_store(state, n)
            gw = _gateway(prosody, workdir / "gw", state)
            try:
                first = start_once(gw, settle)
                gw.terminate(120)
                again = start_once(gw, settle)
            finally:
                if gw.running:
                    gw.terminate(120)
            for name, s in (("start over the filled store", first), ("restart", again)):
                rows.append(
                    _row(
                        f"{name} ({n:,} subs)",
                        s,
                        n,
                        ratio=bare.seconds / s.seconds,
                        fill_s=fill_s,
                        rss_delta_mb=(s.rss_settled - bare.rss_settled) / 2**20,
                        bytes_per_sub=(s.rss_settled - bare.rss_settled) / max(n, 1),
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        print(
            f"#   {row.name}: ready after {row.extra['start_to_ready_s']:.2f} s, "
            f"restored {row.extra['restored']}, RSS {row.rss_mb:.1f} MB",
            flush=True,
        )
    return rows


def summarize_subs(rows: Sequence[Row]) -> str:
    restart = next(r for r in rows if r.name.startswith("restart"))
    seconds = float(restart.extra["start_to_ready_s"])
    rss = restart.rss_mb or 0.0
    return (
        f"subs-100k: {restart.extra['restored']:,} restored, ready {seconds:.2f} s after a "
        f"restart ({'meets' if seconds < TARGET_RESTORE_S else 'MISSES'} < 5 s), RSS "
        f"{rss:.0f} MB ({'meets' if rss < TARGET_RSS_MB else 'MISSES'} < 300 MB)"
    )


# ---------------------------------------------------------------- presence-fanout

_SUBSCRIBE = re.compile(rb"<presence\b[^>]*\btype=['\"]subscribe['\"][^>]*>")
_FROM = re.compile(rb"\bfrom=['\"]([^'\"]+)['\"]")


async def _approve(conn: Connection, approved: list[int]) -> None:
    """The XMPP user's side: every `subscribe` is answered `subscribed` (RFC 6121 §3.1.3);
    everything else (roster pushes, presence) is read and dropped."""
    buf = b""
    while chunk := await conn.reader.read(262144):
        buf += chunk
        out = []
        for tag in _SUBSCRIBE.findall(buf):
            m = _FROM.search(tag)
            if m is not None:
                out.append(b"<presence type='subscribed' to='" + m.group(1) + b"'/>")
        if out:
            conn.writer.write(b"".join(out))
            approved[0] += len(out)
        cut = buf.rfind(b"<")
        buf = buf[cut:] if cut >= 0 and buf.find(b">", cut) < 0 else b""


def provision_roster(prosody: ProsodyServer, n: int, domain: str = COMPONENT) -> Path:
    """Write juliet's roster with the N watchers already approved (`from`) into Prosody's
    internal store (before she logs in). Each watcher's `subscribe` is then answered
    `subscribed` by Prosody itself (RFC 6121 §3.1.3: already approved), instead of N
    approvals that rewrite the roster each (2,000 took 43 s; docs/performance.md)."""
    user, _, host = PRESENTITY.partition("@")
    path = prosody.data_dir / host / "roster" / f"{user}.dat"
    path.parent.mkdir(parents=True, exist_ok=True)
    items = "".join(
        f'["w{i}@{domain}"] = {{ ["groups"] = {{}}; ["subscription"] = "from"; }};\n'
        for i in range(n)
    )
    path.write_text(f'return {{\n[false] = {{ ["version"] = 1; }};\n{items}}};\n')
    return path


@dataclass
class Fanout:
    watchers: int
    subscribe_s: float  # first SUBSCRIBE -> every watcher active with a PIDF
    approved: int
    first_s: float | None  # change sent -> first / median / last NOTIFY answered
    p50_s: float | None
    last_s: float | None
    marked: int
    gateway_cpu_s: float  # over the fan-out (the gateway's, or the bare baseline's)
    rss: int
    prosody_cpu_s: float = 0.0  # Prosody's CPU from the change to the last NOTIFY answered
    prosody_busy_s: float | None = None  # change -> Prosody's CPU last rose (10 ms samples)
    marker: str = ""  # the change's <status>
    presence_in: int = 0  # bare only: the change's <presence/> stanzas read, first, last
    first_presence_s: float | None = None
    last_presence_s: float | None = None
    notify_out: int = 0  # bare only: NOTIFY datagrams sent, 200s counted
    ok_in: int = 0
    change_at: float = 0.0  # wall clock of the change
    # NOTIFY datagrams the watchers answered from the change to the last marked one: N
    # plus retransmissions (RFC 3261 Timer E: a 200 not processed within T1 = 0.5 s)
    notifies_received: int = 0


class _CpuWatch:
    """Samples one process's CPU (/proc) every `period` s in a thread: the CPU used between
    `start` and `stop` and the wall-clock time it last rose (its clock ticks are 10 ms)."""

    def __init__(self, pid: int, period: float = 0.005) -> None:
        self.pid = pid
        self.period = period
        self.first = self.last = cpu_seconds_of(pid)
        self.rose_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> _CpuWatch:
        self.first = self.last = cpu_seconds_of(self.pid)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            cpu = cpu_seconds_of(self.pid)
            if cpu > self.last:
                self.last, self.rose_at = cpu, time.time()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        self.last = max(self.last, cpu_seconds_of(self.pid))
        return self.last - self.first


class _Watchers:
    """`bench.watchers` as a child process: status lines in, commands out."""

    def __init__(
        self, gateway_port: int, n: int, rate: float, timeout: float, *, port: int = 0
    ) -> None:
        argv = [sys.executable, "-m", "bench.watchers", "--gateway", f"{LOOPBACK}:{gateway_port}"]
        argv += ["--count", str(n), "--rate", str(rate), "--timeout", str(timeout)]
        argv += ["--lifetime", str(timeout * 4 + n / rate + 60)]
        if port:  # passive: NOTIFYs from the bare baseline to this port, no SUBSCRIBEs
            argv += ["--port", str(port), "--passive"]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )

    def line(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise RuntimeError(f"bench.watchers exited with {self.proc.wait(10)}")
        value: dict[str, Any] = json.loads(text)
        return value

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.send("quit")
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


async def _fanout(
    prosody: ProsodyServer,
    pid: int,
    sip_port: int,
    *,
    n: int,
    rate: float,
    quiet: float,
    watcher_port: int = 0,
) -> Fanout:
    """One measurement against the process `pid` answering SIP on `sip_port`: the gateway
    (watchers subscribe through it), or with `watcher_port` the bare baseline (passive
    watchers on that port; juliet logs in after them, so her initial presence fans out)."""
    loop = asyncio.get_running_loop()
    timeout = max(60.0, n / 100)
    watchers: _Watchers | None = None
    if watcher_port:
        watchers = await asyncio.to_thread(_Watchers, sip_port, n, rate, timeout, port=watcher_port)
        await asyncio.sleep(1.0)  # its socket is bound before the first NOTIFY
    conn = await login(prosody.c2s_port, PRESENTITY, "pw", resource="fanout")
    approved = [0]
    approver = asyncio.ensure_future(_approve(conn, approved))
    if watchers is None:
        watchers = await asyncio.to_thread(_Watchers, sip_port, n, rate, timeout)
    try:
        start = time.perf_counter()
        deadline = start + n / rate + timeout * 3
        while True:  # subscribed, active, with a PIDF, then quiet for longer than the throttle
            st = await loop.run_in_executor(None, watchers.line)
            ready = st["active"] >= n and st["with_body"] >= n
            if ready and st["idle_s"] >= quiet:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"watchers not ready in time: {st}, approved {approved[0]}")
        subscribe_s = time.perf_counter() - start - st["idle_s"]
        notifies0 = int(st["notifies"])
        marker = f"fanout-{time.time_ns()}"
        watchers.send(f"mark {marker}")
        await asyncio.sleep(0.5)  # the mark is read before the change can arrive
        cpu0 = cpu_seconds_of(pid)
        assert prosody.pid is not None
        pcpu = _CpuWatch(prosody.pid).start()
        t0 = time.time()
        conn.writer.write(
            f"<presence><show>away</show><status>{marker}</status></presence>".encode()
        )
        while "marked" not in (st := await loop.run_in_executor(None, watchers.line)):
            pass
        cpu = cpu_seconds_of(pid) - cpu0
        prosody_cpu = pcpu.stop()
        times = [t - t0 for t in st["times"]]
        received = int(st.get("notifies", notifies0)) - notifies0
        return Fanout(
            n,
            subscribe_s,
            approved[0],
            times[0] if times else None,
            percentile(times, 50) if times else None,
            times[-1] if times else None,
            len(times),
            cpu,
            rss_bytes_of(pid),
            prosody_cpu_s=prosody_cpu,
            prosody_busy_s=None if pcpu.rose_at is None else pcpu.rose_at - t0,
            change_at=t0,
            marker=marker,
            notifies_received=received,
        )
    finally:
        approver.cancel()
        conn.writer.close()
        await asyncio.to_thread(watchers.close)


def _bare_fanout(prosody: ProsodyServer, workdir: Path, n: int, rate: float) -> Fanout:
    """The bare baseline (`bench.baseline --fanout`) as the component, passive watchers."""
    workdir.mkdir(parents=True, exist_ok=True)
    sip_port, watcher_port = free_port(), free_port()
    argv = [sys.executable, "-m", "bench.baseline", "--fanout", "--sip-port", str(sip_port)]
    argv += ["--component-port", str(prosody.component_port), "--domain", COMPONENT]
    argv += ["--secret", SECRET, "--sip-target", f"{LOOPBACK}:{watcher_port}"]
    argv += ["--seconds", str(max(600.0, n / 10))]
    proc = _start(argv, workdir / "baseline.log")
    try:
        _wait_line(proc, "baseline ready", 30)
        got = asyncio.run(
            _fanout(
                prosody, proc.pid, sip_port, n=n, rate=rate, quiet=1.5, watcher_port=watcher_port
            )
        )
    finally:
        proc.terminate()
        out = _finish(proc, 15)
    line = next((x for x in reversed(out.splitlines()) if " fanout=" in x), "")
    counts = json.loads(line.partition(" fanout=")[2] or "{}")
    got.notify_out = int(counts.get("notify_out", 0))  # initial presence + the change
    got.ok_in = int(counts.get("ok", 0))
    seen = counts.get("notes", {}).get(got.marker)
    if seen:  # the change's stanzas: wall clock, like the change's send time
        got.presence_in = int(seen[0])
        got.first_presence_s = float(seen[1]) - got.change_at
        got.last_presence_s = float(seen[2]) - got.change_at
    return got


def _fanout_row(name: str, got: Fanout, *, ratio: float | None = None, **extra: object) -> Row:
    n = got.watchers
    return Row(
        scenario="presence-fanout",
        name=name,
        rate=got.marked / got.last_s if got.last_s else None,
        p50_ms=None if got.p50_s is None else got.p50_s * 1000,
        max_ms=None if got.last_s is None else got.last_s * 1000,
        cpu_per_1k=got.gateway_cpu_s * 1000 / max(n, 1),
        rss_mb=got.rss / 2**20,
        errors=n - got.marked,
        ratio=ratio,
        extra={
            "watchers": n,
            "notified": got.marked,
            "first_s": got.first_s,
            "p50_s": got.p50_s,
            "last_s": got.last_s,
            "cpu_s": got.gateway_cpu_s,
            "prosody_cpu_s": got.prosody_cpu_s,
            "prosody_busy_s": got.prosody_busy_s,
            "notifies_received": got.notifies_received,
            "setup_s": got.subscribe_s,
            **extra,
        },
    )


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def run_fanout(
    n: int = TARGET_WATCHERS,
    rate: float = 200.0,
    profile: Path | None = None,
    *,
    approvals: bool = False,
    baseline: bool = True,
) -> list[Row]:
    """N watchers of one XMPP user through Prosody and the gateway; one presence change.
    The roster is provisioned with the N watchers approved, unless `approvals`: then the
    XMPP user approves each `subscribe` as it comes (Prosody rewrites her roster each).

    With `baseline` (and a provisioned roster), first the bare baseline in the same run,
    on the same Prosody and roster: `bench.baseline --fanout` is the component (one canned
    NOTIFY per `<presence/>` to a watcher), the watchers only answer. `vs bare` = the bare
    last-NOTIFY time / the gateway's."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    bare: Fanout | None = None
    try:
        # Approvals one by one: rosters in memory (no file rewritten per approval); else the
        # roster file written by `provision_roster` (Prosody's default internal store).
        extra = 'storage = { roster = "memory" }' if approvals else ""
        with _prosody(workdir, extra) as prosody:
            prosody.add_user(PRESENTITY, "pw")
            if not approvals:
                provision_roster(prosody, n)
                if baseline:
                    print("# presence-fanout: bare baseline", flush=True)
                    bare = _bare_fanout(prosody, workdir / "bare", n, rate)
            sip_port = free_port()
            gw = _gateway(prosody, workdir / "gw", workdir / "state", sip_port, profile)
            print("# presence-fanout: gateway", flush=True)
            gw.start()
            try:
                quiet = 5.0 + 1.0  # the gateway's notify_interval (default) + margin
                assert gw.pid is not None
                got = asyncio.run(_fanout(prosody, gw.pid, sip_port, n=n, rate=rate, quiet=quiet))
            finally:
                gw.terminate(60)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows: list[Row] = []
    if bare is not None:
        rows.append(
            _fanout_row(
                f"bare: one XMPP change -> {n:,} watchers",
                bare,
                presence_in=bare.presence_in,
                first_presence_s=bare.first_presence_s,
                last_presence_s=bare.last_presence_s,
                notify_out=bare.notify_out,
                ok_in=bare.ok_in,
            )
        )
    ratio = None
    if bare is not None and bare.last_s and got.last_s:
        ratio = bare.last_s / got.last_s
    rows.append(
        _fanout_row(
            f"one XMPP change -> {n:,} SIP watchers",
            got,
            ratio=ratio,
            gateway_cpu_s=got.gateway_cpu_s,
            approved=got.approved,
            subscribe_rate=rate,
            roster="approved one by one" if approvals else "provisioned",
        )
    )
    for row, f in zip(rows, [*([bare] if bare else []), got], strict=True):
        print(
            f"#   {row.name}: first/median/last NOTIFY {_fmt(f.first_s)}/{_fmt(f.p50_s)}/"
            f"{_fmt(f.last_s)} s after the change; its CPU {f.gateway_cpu_s:.2f} s; Prosody "
            f"CPU {f.prosody_cpu_s:.2f} s, busy until {_fmt(f.prosody_busy_s)} s; "
            f"{f.notifies_received} NOTIFYs received (retransmissions included)"
            + (
                ""
                if f.last_presence_s is None
                else f"; the change's {f.presence_in} <presence/> read from "
                f"{_fmt(f.first_presence_s)} to {f.last_presence_s:.3f} s"
            ),
            flush=True,
        )
    print(
        f"#   setup {got.subscribe_s:.1f} s ({got.approved} approvals by the user); change -> "
        f"{got.marked} NOTIFYs answered, last after {got.last_s} s",
        flush=True,
    )
    return rows


def summarize_fanout(rows: Sequence[Row]) -> str:
    row = rows[-1]
    last = row.extra.get("last_s")
    n = row.extra["watchers"]
    if last is None:
        return f"presence-fanout: no NOTIFY of the change reached the {n:,} watchers"
    verdict = "meets" if last < TARGET_FANOUT_S and n >= TARGET_WATCHERS else "MISSES"
    text = (
        f"presence-fanout: {row.extra['notified']:,}/{n:,} watchers notified, last "
        f"{float(last):.2f} s after the change ({verdict} 10,000 in < 1 s)"
    )
    if len(rows) > 1 and rows[0].extra.get("last_s") is not None:
        text += f"; bare baseline last {float(rows[0].extra['last_s']):.2f} s"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.presence_bench", description=__doc__)
    ap.add_argument("scenario", choices=["subs-100k", "presence-fanout"])
    ap.add_argument("-n", type=int, help="subscriptions (100,000) / watchers (10,000)")
    ap.add_argument("--settle", type=float, default=5.0, help="subs-100k: RSS sampled after")
    ap.add_argument("--rate", type=float, default=200.0, help="fanout: SUBSCRIBEs per second")
    ap.add_argument("--profile", type=Path, help="fanout: cProfile the gateway into this file")
    ap.add_argument(
        "--approvals", action="store_true", help="fanout: approve each watcher (no roster file)"
    )
    ap.add_argument("--skip-baseline", action="store_true", help="fanout: no bare baseline run")
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    if args.scenario == "subs-100k":
        rows = run_subs(args.n or TARGET_SUBS, args.settle)
        summary = summarize_subs(rows)
    else:
        rows = run_fanout(
            args.n or TARGET_WATCHERS,
            args.rate,
            args.profile,
            approvals=args.approvals,
            baseline=not args.skip_baseline,
        )
        summary = summarize_fanout(rows)
    print_table(rows)
    print(summary)
    if not args.no_json:
        params = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        print(f"results: {dump_results(args.scenario, rows, params)}")
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

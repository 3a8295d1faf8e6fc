"""Pager IM through a real Prosody (issue 11): `pager-s2x` (SIP -> XMPP) and `pager-x2s`.

For each direction, in one run, with the same generators and the same Prosody:

1. the gateway process (generated config, log level info) is ramped to its sustained rate
   (bench.ramp: no errors, every message delivered, throughput >= 90 % of the offered
   rate, p99 <= 200 ms), then measured at half that rate (the latency row);
2. the bare baseline (bench/baseline.py: the same I/O without logic) is ramped the same way
   and measured at the gateway's half rate, so `vs bare` = gateway / baseline sustained
   rate and the added latency = gateway p99 - baseline p99 at the same offered rate.

SIP -> XMPP: sipp UACs (bench/sipp/message_uac.xml, one per 4,000 msg/s) -> the system
under test -> Prosody -> `loadgen_xmpp recv` (latency from the body's send time to the
arrival of the stanza). XMPP -> SIP: `loadgen_xmpp send` -> Prosody -> the system under
test -> a sipp UAS (bench/sipp/message_uas.xml, logs arrivals).

Every process's CPU (gateway or baseline, Prosody, sipp, the XMPP generator) is sampled
from /proc during each step; any that used >= 85 % of a core is named as saturated.

    python -m bench.pager_bench [s2x|x2s ...] [--step-seconds 4] [--max-steps 9]
        [--profile DIR] [--skip-baseline] [--skip-kamailio] [--event-loop uvloop] [--no-json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Row, cpu_seconds_of, dump_results, print_table, rss_bytes_of
from bench.kamailio_bench import KamailioProcess, KamailioUnavailable, build_module, descendants
from bench.ramp import Criteria, Ramp, StepResult, latency_ms, saturated, throughput
from tests.harness import LOOPBACK, kill_group, stop_group
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port, free_port_block
from tests.harness.prosody import ProsodyServer

__all__ = ["main", "run_s2x", "run_x2s", "summarize"]

COMPONENT = "sip.localhost"
SECRET = "bench-secret"
SIPP_DIR = Path(__file__).resolve().parent / "sipp"
ROOT = Path(__file__).resolve().parents[1]
TARGET_RATE = 10_000
TARGET_RATIO = 0.40
TARGET_P99_MS = 5.0
SIPP_RATE_PER_PROCESS = 4000.0
RECEIVERS = 2  # XMPP accounts receiving (s2x)
SENDERS = 2  # XMPP accounts sending (x2s)
# SIP users the XMPP senders write to (one outstanding MESSAGE each, RFC 3428 §8)
DESTINATIONS = 200
GEN_SPAN = 1000  # generator numbers per step: g in [step * GEN_SPAN, (step + 1) * GEN_SPAN)
# seconds after an overloaded step before the next: the gateway's overload control is back
# to admitting everything ([overload] hold + recovery, 2 s each by default)
OVERLOAD_CLEAR = 4.5


@dataclass
class Options:
    step_seconds: float = 4.0
    max_steps: int = 9
    start_rate: float = 1000.0
    profile: Path | None = None  # write gateway cProfile stats here
    baseline: bool = True
    kamailio: bool = True  # Kamailio as the third system (bench/kamailio_bench.py)
    event_loop: str = "asyncio"  # the gateway's [runtime] event_loop (issue 27: uvloop)
    keep: bool = False  # keep the scratch directory (logs) for a post-mortem
    criteria: Criteria = field(default_factory=Criteria)


# ---------------------------------------------------------------- processes


class CpuSampler:
    """Polls /proc for named pids every `period` s; keeps the last CPU seen of each pid
    (so processes that exit during the step still count) and the peak RSS."""

    def __init__(self, period: float = 0.2) -> None:
        self.period = period
        self.pids: dict[int, str] = {}
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.peak_rss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def watch(self, name: str, pid: int | None, *, fresh: bool = False) -> None:
        """Start counting `pid` under `name`; `fresh`: it was just started (count from 0)."""
        if pid is None:
            return
        self.pids[pid] = name
        self.first[pid] = 0.0 if fresh else cpu_seconds_of(pid)
        self.last[pid] = self.first[pid]

    def __enter__(self) -> CpuSampler:
        self.wall0 = time.monotonic()
        self.drops0 = udp_rcvbuf_errors()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._poll()
        self._stop.set()
        self._thread.join(2)
        self.wall = time.monotonic() - self.wall0
        self.udp_drops = udp_rcvbuf_errors() - self.drops0

    def _poll(self) -> None:
        for pid in list(self.pids):
            cpu = cpu_seconds_of(pid)
            if cpu > 0:
                self.last[pid] = max(self.last[pid], cpu)
            self.peak_rss[pid] = max(self.peak_rss.get(pid, 0), rss_bytes_of(pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._poll()

    def cpu_by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, name in self.pids.items():
            out[name] = out.get(name, 0.0) + self.last[pid] - self.first[pid]
        return out


def udp_rcvbuf_errors() -> int:
    """Machine-wide UDP receive-buffer drops (/proc/net/snmp RcvbufErrors)."""
    try:
        with open("/proc/net/snmp", encoding="ascii") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return 0


def _python() -> str:
    return sys.executable


def _start(argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=out,
            cwd=log.parent,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )


def _wait_line(proc: subprocess.Popen[bytes], text: str, timeout: float) -> None:
    """Read the child's stdout until a line contains `text` (bounded)."""
    assert proc.stdout is not None
    result: list[bool] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            if text.encode() in line:
                result.append(True)
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(timeout)
    if not result:
        kill_group(proc)
        raise RuntimeError(f"{proc.args!r}: no {text!r} within {timeout}s")


def _finish(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """Wait for the child (SIGTERM then SIGKILL after `timeout`); the rest of its stdout."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_group(proc, 5)
        out, _ = proc.communicate(timeout=5)
    return out.decode(errors="replace")


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            doc: dict[str, Any] = json.loads(line)
            return doc
    return {}


def _sipp_stats(path: Path) -> dict[str, str]:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except FileNotFoundError:
        return {}
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    return dict(zip(header, lines[-1].rstrip(";").split(";"), strict=False))


class Sipp:
    """One lean sipp process (no per-message traces: they would make sipp the bottleneck)."""

    def __init__(
        self,
        workdir: Path,
        scenario: str,
        *,
        remote: str | None,
        port: int,
        calls: int,
        rate: float | None,
        keys: dict[str, str],
        timeout: float,
        log_file: Path | None = None,
    ) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sipp-", dir=workdir))
        args = [shutil.which("sipp") or "sipp", "-sf", str(SIPP_DIR / scenario)]
        if remote:
            args.append(remote)
        args += ["-i", LOOPBACK, "-p", str(port), "-t", "u1", "-m", str(calls), "-nostdin"]
        args += ["-timeout", f"{int(timeout)}s", "-timeout_error", "-buff_size", "4194304"]
        args += ["-mp", str(free_port_block((0, 2))), "-cp", str(free_port())]
        args += ["-trace_stat", "-stf", "stats.csv", "-fd", "3600"]
        if rate is not None:
            args += ["-r", f"{rate:g}", "-l", str(max(int(rate * 5), 1000))]
        if log_file is not None:
            args += ["-trace_logs", "-log_file", str(log_file)]
        for k, v in keys.items():
            args += ["-key", k, v]
        self.args = args
        with (self.workdir / "out.txt").open("wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.timeout = timeout

    def wait(self, extra: float = 10.0) -> dict[str, int]:
        try:
            self.proc.wait(self.timeout + extra)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
        return self.counts()

    def stop(self) -> dict[str, int]:
        if self.proc.poll() is None:
            stop_group(self.proc, 5)
        return self.counts()

    def counts(self) -> dict[str, int]:
        stats = _sipp_stats(self.workdir / "stats.csv")

        def num(key: str) -> int:
            try:
                return int(stats.get(key, "0") or 0)
            except ValueError:
                return 0

        return {
            "ok": num("SuccessfulCall(C)"),
            "failed": num("FailedCall(C)"),
            "retrans": num("Retransmissions(C)"),
            "rc": self.proc.returncode if self.proc.returncode is not None else -1,
        }


# ---------------------------------------------------------------- systems under test


class Sut:
    """The gateway process, the bare baseline or Kamailio, answering SIP on `sip_port`."""

    name: str
    sip_port: int
    pid: int | None

    def stop(self) -> None: ...

    def all_pids(self) -> list[int]:
        """Every process whose CPU counts as this system's."""
        return [] if self.pid is None else [self.pid]


class GatewaySut(Sut):
    name = "gateway"

    def __init__(self, prosody: ProsodyServer, workdir: Path, uas_port: int, opts: Options):
        self.sip_port = free_port()
        config = gateway_config(
            gateway={"state_dir": str(workdir / "gw-state")},
            xmpp={
                "port": prosody.component_port,
                "components": [{"domain": COMPONENT, "secret": SECRET, "addressing": "mirrored"}],
            },
            sip={
                "listeners": [{"transport": "udp", "address": LOOPBACK, "port": self.sip_port}],
                "hosted_domains": [],
                "trusted_peers": [LOOPBACK],
                "routes": [{"domain": COMPONENT, "target": f"sip:{LOOPBACK}:{uas_port}"}],
            },
            admin={"enabled": False},
            runtime={"event_loop": opts.event_loop},
        )
        argv = None
        if opts.profile is not None:
            opts.profile.mkdir(parents=True, exist_ok=True)
            self.profile_path: Path | None = (
                opts.profile / f"gateway-{os.getpid()}-{time.time_ns()}.prof"
            )
            cfg = workdir / "gateway" / "gateway.toml"
            argv = [
                _python(),
                "-m",
                "cProfile",
                "-o",
                str(self.profile_path),
                "-m",
                "gateway",
                "run",
                "--config",
                str(cfg),
                "--log-level",
                "info",
            ]
        else:
            self.profile_path = None
        self.proc = GatewayProcess(config, workdir / "gateway", log_level="info", argv=argv)
        self.proc.start()
        self.proc.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc.running:
            self.proc.terminate(30)


class BaselineSut(Sut):
    name = "bare"

    def __init__(self, prosody: ProsodyServer, workdir: Path, uas_port: int):
        self.sip_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = _start(
            [
                _python(),
                "-m",
                "bench.baseline",
                "--sip-port",
                str(self.sip_port),
                "--component-port",
                str(prosody.component_port),
                "--domain",
                COMPONENT,
                "--secret",
                SECRET,
                "--sip-target",
                f"{LOOPBACK}:{uas_port}",
                "--seconds",
                "900",
            ],
            workdir / "baseline.log",
        )
        _wait_line(self.proc, "baseline ready", 20)
        self.pid = self.proc.pid

    def stop(self) -> None:
        stop_group(self.proc, 10)
        _finish(self.proc, 5)


class KamailioSut(Sut):
    """Kamailio with the patched xmpp module (bench/kamailio_bench.py); all its processes."""

    name = "kamailio"

    def __init__(self, prosody: ProsodyServer, workdir: Path, uas_port: int, module: Path):
        self.kamailio = KamailioProcess(
            workdir,
            module=module,
            component_port=prosody.component_port,
            domain=COMPONENT,
            secret=SECRET,
            uas_port=uas_port,
        )
        self.kamailio.wait_ready()
        self.sip_port = self.kamailio.sip_port
        self.pid = self.kamailio.proc.pid

    def all_pids(self) -> list[int]:
        return descendants(self.pid) if self.pid is not None else []

    def stop(self) -> None:
        self.kamailio.stop()


# ---------------------------------------------------------------- the rig


@dataclass
class Rig:
    workdir: Path
    prosody: ProsodyServer
    receivers: list[str]  # jid:password
    senders: list[str]
    uas_port: int
    opts: Options
    steps: int = 0

    def next_generation(self) -> int:
        """A generator-number base for the next step, so late arrivals of an earlier step
        (retransmissions, queued messages) are never counted in this one."""
        self.steps += 1
        return self.steps * GEN_SPAN

    def loadgen(self, args: Sequence[str], log: str) -> subprocess.Popen[bytes]:
        return _start([_python(), "-m", "bench.loadgen_xmpp", *args], self.workdir / log)


@contextlib.contextmanager
def rig(opts: Options) -> Iterator[Rig]:
    """Prosody (warn-level log to a file), accounts, scratch directory; all torn down."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-pager-"))
    log = workdir / "prosody" / "prosody.log"
    prosody = ProsodyServer(
        workdir / "prosody",
        components={COMPONENT: SECRET},
        extra_config=(
            f'log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{log}" }} }}'
            # Prosody's default Nagle holds small writes until the reader's delayed ACK
            # (40 ms on Linux): the p99 of ~42 ms seen with and without the gateway
            # (docs/performance.md, round 4); deploy/prosody/component.cfg.lua sets the same.
            "\nnetwork_settings = { nagle = false }"
        ),
    )
    prosody.start()
    try:
        receivers = [f"{prosody.add_user(f'juliet{i}', 'pw')}:pw" for i in range(RECEIVERS)]
        senders = [f"{prosody.add_user(f'nurse{i}', 'pw')}:pw" for i in range(SENDERS)]
        yield Rig(workdir, prosody, receivers, senders, free_port(), opts)
    finally:
        prosody.stop()
        if opts.keep:
            print(f"# scratch directory kept: {workdir}", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class Measured:
    step: StepResult
    cpu: dict[str, float]
    wall: float
    rss: int  # peak RSS of the system under test
    extra: dict[str, Any] = field(default_factory=dict)


def _active(result: StepResult, sampler: CpuSampler) -> float:
    """The seconds the load was on (first send to last arrival): CPU shares are taken over
    this window, not over the set-up and drain waits around it."""
    if result.delivered and result.throughput > 0:
        return min(result.delivered / result.throughput, sampler.wall)
    return sampler.wall


def _result(
    offered: float, sent: int, pairs: dict[tuple[int, int], tuple[float, float]], errors: int
) -> StepResult:
    values = list(pairs.values())
    p50, p99, mx = latency_ms(values)
    missing = max(sent - len(values), 0)
    return StepResult(
        offered=offered,
        sent=sent,
        delivered=len(values),
        errors=errors + missing,
        throughput=throughput(values),
        p50_ms=p50,
        p99_ms=p99,
        max_ms=mx,
    )


def step_s2x(r: Rig, sut: Sut, rate: float) -> Measured:
    """sipp UACs -> sut -> Prosody -> XMPP receivers, `step_seconds` at `rate`."""
    count = max(int(rate * r.opts.step_seconds), 1)
    gen = r.next_generation()
    out = r.workdir / f"arrivals-{time.time_ns()}.txt"
    accounts = [a for acc in r.receivers for a in ("--account", acc)]
    recv = r.loadgen(
        [
            "recv",
            "--port",
            str(r.prosody.c2s_port),
            *accounts,
            "--expect",
            str(count),
            "--gen-base",
            str(gen),
            "--timeout",
            str(r.opts.step_seconds + 40),
            "--out",
            str(out),
        ],
        "recv.log",
    )
    _wait_line(recv, "READY", 20)
    n = max(1, math.ceil(rate / SIPP_RATE_PER_PROCESS))
    with CpuSampler() as sampler:
        for pid in sut.all_pids():
            sampler.watch(sut.name, pid)
        sampler.watch("prosody", r.prosody.pid)
        sampler.watch("xmpp-recv", recv.pid, fresh=True)
        sipps = []
        for i in range(n):
            calls = count // n + (1 if i < count % n else 0)
            to = r.receivers[i % len(r.receivers)].partition(":")[0]
            s = Sipp(
                r.workdir,
                "message_uac.xml",
                remote=f"{LOOPBACK}:{sut.sip_port}",
                port=free_port(),
                calls=calls,
                rate=rate / n,
                keys={
                    "to_uri": f"sip:{to}",
                    "from_uri": f"sip:romeo@{COMPONENT}",
                    "inst": str(gen + i),
                },
                timeout=r.opts.step_seconds + 30,
            )
            sampler.watch("sipp", s.proc.pid, fresh=True)
            sipps.append(s)
        counts = [s.wait() for s in sipps]
        deadline = time.monotonic() + 10
        while recv.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if recv.poll() is None:
            stop_group(recv, 10)
    got = _last_json(_finish(recv, 10))
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in out.read_text().splitlines():
            g, seq, sent_at, arrived_at = line.split()
            if gen <= int(g) < gen + GEN_SPAN:
                pairs.setdefault((int(g), int(seq)), (float(sent_at), float(arrived_at)))
        if not r.opts.keep:
            out.unlink()
    failed = sum(c["failed"] for c in counts)
    sent = sum(c["ok"] + c["failed"] for c in counts) or count
    errors = failed + int(got.get("errors", 0))
    result = _result(rate, max(sent, count), pairs, errors)
    return Measured(
        result,
        sampler.cpu_by_name(),
        _active(result, sampler),
        sampler.peak_rss.get(sut.pid or -1, 0),
        {
            "sipp": n,
            "retransmissions": sum(c["retrans"] for c in counts),
            "sipp_failed": failed,
            "udp_rcvbuf_drops": sampler.udp_drops,
            "error_stanzas": int(got.get("errors", 0)),
        },
    )


_UAS_LINE = re.compile(r"^(\d+) (\d+) ([\d.]+) .*\t([\d.]+)\s*$")


def step_x2s(r: Rig, sut: Sut, rate: float) -> Measured:
    """XMPP sender -> Prosody -> sut -> sipp UAS, `step_seconds` at `rate`."""
    count = max(int(rate * r.opts.step_seconds), 1)
    gen = r.next_generation()
    log = r.workdir / f"uas-{time.time_ns()}.log"
    uas = Sipp(
        r.workdir,
        "message_uas.xml",
        remote=None,
        port=r.uas_port,
        calls=count,  # it exits (and flushes its log) after this step's messages
        rate=None,
        keys={},
        timeout=r.opts.step_seconds + 40,
        log_file=log,
    )
    time.sleep(0.3)  # sipp binds in a few ms; nothing is sent before the sender logs in
    accounts = [a for acc in r.senders for a in ("--account", acc)]
    send = r.loadgen(
        [
            "send",
            "--port",
            str(r.prosody.c2s_port),
            *accounts,
            "--to",
            f"romeo{{}}@{COMPONENT}",
            "--destinations",
            str(DESTINATIONS),
            "--rate",
            f"{rate:g}",
            "--count",
            str(count),
            "--linger",
            "1.0",
            "--gen-base",
            str(gen),
        ],
        "send.log",
    )
    with CpuSampler() as sampler:
        for pid in sut.all_pids():
            sampler.watch(sut.name, pid)
        sampler.watch("prosody", r.prosody.pid)
        sampler.watch("sipp", uas.proc.pid, fresh=True)
        sampler.watch("xmpp-send", send.pid, fresh=True)
        _wait_line(send, "READY", 20)
        got = _last_json(_finish(send, r.opts.step_seconds + 60))
        deadline = time.monotonic() + 15  # sipp ends by itself after `count` MESSAGEs
        while uas.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        counts = uas.stop()
    pairs = _uas_arrivals(log, gen)
    if not r.opts.keep:
        log.unlink(missing_ok=True)
    errors = int(got.get("errors", 0))
    sent = int(got.get("sent", 0))
    result = _result(rate, sent, pairs, errors)
    return Measured(
        result,
        sampler.cpu_by_name(),
        _active(result, sampler),
        sampler.peak_rss.get(sut.pid or -1, 0),
        {
            "sender_rate": got.get("rate"),
            "error_stanzas": errors,
            "uas_ok": counts["ok"],
            "udp_rcvbuf_drops": sampler.udp_drops,
        },
    )


def _uas_arrivals(log: Path, gen: int) -> dict[tuple[int, int], tuple[float, float]]:
    """(generator, sequence) -> (sent, arrived) from the UAS log, this step's generators."""
    pairs: dict[tuple[int, int], tuple[float, float]] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in log.read_text(errors="replace").splitlines():
            m = _UAS_LINE.match(line)
            if m and gen <= int(m.group(1)) < gen + GEN_SPAN:
                key = (int(m.group(1)), int(m.group(2)))
                pairs.setdefault(key, (float(m.group(3)), float(m.group(4))))
    return pairs


def settle(sut: Sut, timeout: float = 30.0) -> float:
    """Wait until the system under test is idle (< 2 % of a core over 0.5 s): queued work
    of an overloaded step must not land in the next one. The seconds waited."""
    start = time.monotonic()
    pids = sut.all_pids()
    if not pids:
        return 0.0
    last = sum(cpu_seconds_of(p) for p in pids)
    while time.monotonic() - start < timeout:
        time.sleep(0.5)
        now = sum(cpu_seconds_of(p) for p in pids)
        if now - last < 0.01:
            break
        last = now
    return time.monotonic() - start


Step = Callable[[Rig, Sut, float], Measured]


def _describe(m: Measured) -> str:
    s = m.step
    cpu = " ".join(f"{k}={v / max(m.wall, 1e-9):.0%}" for k, v in sorted(m.cpu.items()))
    return (
        f"offered {s.offered:,.0f}/s: delivered {s.delivered}/{s.sent}, {s.throughput:,.0f}/s, "
        f"p50 {s.p50_ms:.1f} p99 {s.p99_ms:.1f} max {s.max_ms:.1f} ms, errors {s.errors}, "
        f"udp drops {m.extra.get('udp_rcvbuf_drops', 0)}; cpu {cpu}"
    )


def ramp(r: Rig, sut: Sut, step: Step) -> tuple[float, Measured | None, list[Measured]]:
    """Ramp `sut` to its sustained rate; (rate, the best passing step, every step)."""
    rp = Ramp(start=r.opts.start_rate, max_steps=r.opts.max_steps)
    best: Measured | None = None
    steps: list[Measured] = []
    while (rate := rp.next_rate()) is not None:
        m = step(r, sut, rate)
        settle(sut)
        ok = m.step.passes(r.opts.criteria)
        if not ok and sut.name == "gateway":
            time.sleep(OVERLOAD_CLEAR)  # its overload control admits all again (issue 27)
        rp.record(rate, ok)
        steps.append(m)
        print(f"#   {sut.name} {'pass' if ok else 'FAIL'} {_describe(m)}", flush=True)
        if ok and (best is None or rate >= best.step.offered):
            best = m
    return rp.sustained, best, steps


def _sut_cpu(cpu: dict[str, float]) -> float:
    """CPU seconds of the system under test (whichever of the three it was)."""
    return next((cpu[n] for n in ("gateway", "bare", "kamailio") if n in cpu), 0.0)


def _row(
    scenario: str,
    name: str,
    m: Measured,
    *,
    ratio: float | None = None,
    rate: float | None = None,
    extra: dict[str, Any] | None = None,
) -> Row:
    s = m.step
    busy = saturated(m.cpu, m.wall)
    ops = max(s.delivered, 1)
    return Row(
        scenario=scenario,
        name=name,
        rate=s.throughput if rate is None else rate,
        p50_ms=s.p50_ms,
        p99_ms=s.p99_ms,
        max_ms=s.max_ms,
        cpu_per_1k=_sut_cpu(m.cpu) * 1000 / ops,
        rss_mb=m.rss / 2**20,
        errors=s.errors,
        ratio=ratio,
        extra={
            "offered": s.offered,
            "delivered": s.delivered,
            "sent": s.sent,
            "wall": m.wall,
            "cpu_share": {k: v / max(m.wall, 1e-9) for k, v in m.cpu.items()},
            "saturated": busy,
            **m.extra,
            **(extra or {}),
        },
    )


def _direction(scenario: str, step: Step, opts: Options) -> list[Row]:
    rows: list[Row] = []
    with rig(opts) as r:
        print(f"# {scenario}: gateway ramp", flush=True)
        gw = GatewaySut(r.prosody, r.workdir, r.uas_port, opts)
        try:
            gw_rate, gw_best, gw_steps = ramp(r, gw, step)
            half = gw_rate / 2 if gw_rate > 0 else opts.start_rate / 4
            print(f"# {scenario}: gateway at half its sustained rate ({half:,.0f}/s)", flush=True)
            gw_half = step(r, gw, half)
            print(f"#   gateway {_describe(gw_half)}", flush=True)
        finally:
            gw.stop()
        if gw.profile_path is not None:
            print(f"# gateway profile: {gw.profile_path}", flush=True)
        bare_rate = math.nan
        bare_half: Measured | None = None
        bare_best: Measured | None = None
        if opts.baseline:
            print(f"# {scenario}: bare baseline ramp", flush=True)
            bare = BaselineSut(r.prosody, r.workdir / "bare", r.uas_port)
            try:
                bare_rate, bare_best, _ = ramp(r, bare, step)
                bare_half = step(r, bare, half)
                print(f"#   bare {_describe(bare_half)}", flush=True)
            finally:
                bare.stop()
        kam_rate, kam_best, kam_half = _kamailio(r, scenario, step, opts, half)
        ratio = gw_rate / bare_rate if bare_rate and bare_rate > 0 else None
        last = gw_steps[-1] if gw_steps else gw_half
        rows.append(
            _row(
                scenario,
                "gateway sustained",
                gw_best or last,
                ratio=ratio,
                rate=gw_rate,
                extra={"ramp": [(m.step.offered, m.step.passes(opts.criteria)) for m in gw_steps]},
            )
        )
        added = None
        if bare_half is not None:
            added = gw_half.step.p99_ms - bare_half.step.p99_ms
        rows.append(
            _row(scenario, f"gateway @ {half:,.0f}/s", gw_half, extra={"added_p99_ms": added})
        )
        if bare_best is not None or bare_half is not None:
            rows.append(
                _row(
                    scenario,
                    "bare sustained",
                    bare_best or bare_half,  # type: ignore[arg-type]
                    rate=bare_rate,
                )
            )
        if bare_half is not None:
            rows.append(_row(scenario, f"bare @ {half:,.0f}/s", bare_half))
        if kam_best is not None or kam_half is not None:
            kam_ratio = gw_rate / kam_rate if kam_rate > 0 else None
            rows.append(
                _row(
                    scenario,
                    "kamailio sustained",
                    kam_best or kam_half,  # type: ignore[arg-type]
                    rate=kam_rate,
                    extra={"gateway_ratio": kam_ratio},
                )
            )
        if kam_half is not None:
            rows.append(_row(scenario, f"kamailio @ {half:,.0f}/s", kam_half))
    return rows


def _kamailio(
    r: Rig, scenario: str, step: Step, opts: Options, half: float
) -> tuple[float, Measured | None, Measured | None]:
    """Kamailio's ramp and its step at the gateway's half rate, or nothing (with a
    message) when the patched module is not available outside CI."""
    if not opts.kamailio:
        return math.nan, None, None
    try:
        module = build_module()
        print(f"# {scenario}: kamailio ramp (xmpp module {module})", flush=True)
        kam = KamailioSut(r.prosody, r.workdir / "kamailio", r.uas_port, module)
    except KamailioUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        print(f"# {scenario}: kamailio SKIPPED: {exc}", flush=True)
        return math.nan, None, None
    try:
        rate, best, _ = ramp(r, kam, step)
        at_half = step(r, kam, half)
        print(f"#   kamailio {_describe(at_half)}", flush=True)
    finally:
        kam.stop()
    return rate, best, at_half


def run_s2x(opts: Options | None = None) -> list[Row]:
    return _direction("pager-s2x", step_s2x, opts or Options())


def run_x2s(opts: Options | None = None) -> list[Row]:
    return _direction("pager-x2s", step_x2s, opts or Options())


def summarize(rows: Sequence[Row]) -> str:
    """Verdict lines against issue 11's targets."""
    sustained = next(r for r in rows if r.name == "gateway sustained")
    half = next(r for r in rows if r.name.startswith("gateway @"))
    rate, ratio = sustained.rate or 0.0, sustained.ratio
    added = half.extra.get("added_p99_ms")
    rate_ok = "meets" if rate >= TARGET_RATE else "MISSES"
    ratio_txt = (
        "no baseline"
        if ratio is None
        else (f"{ratio:.2f} of bare ({'meets' if ratio >= TARGET_RATIO else 'MISSES'} 0.40)")
    )
    lat = "n/a" if added is None else f"{added:.2f} ms"
    lat_ok = (
        ""
        if added is None
        else (" (meets < 5 ms)" if added < TARGET_P99_MS else " (MISSES < 5 ms)")
    )
    busy = sustained.extra.get("saturated") or []
    where = ", ".join(f"{n} {s:.0%}" for n, s in busy) or "no process at a full core"
    verdict = (
        f"{sustained.scenario}: sustained {rate:,.0f} msg/s ({rate_ok} {TARGET_RATE:,}), "
        f"{ratio_txt}; p99 at half rate {half.p99_ms or 0:.2f} ms, "
        f"added vs bare {lat}{lat_ok}; at the sustained step: {where}"
    )
    ratios = _ratios(rows)
    return f"{ratios}\n{verdict}" if ratios else verdict


def _ratios(rows: Sequence[Row]) -> str:
    """gateway/Kamailio and gateway/bare: delivered rate and CPU s per 1,000 messages
    (at the sustained step, and at the gateway's half rate, the same offered load)."""
    by = {r.name.split(" ")[0] + (" half" if "@" in r.name else ""): r for r in rows}
    out = []
    for other in ("kamailio", "bare"):
        sus, half = by.get(f"{other}"), by.get(f"{other} half")
        gw, gw_half = by.get("gateway"), by.get("gateway half")
        if sus is None or gw is None or not sus.rate:
            continue
        parts = [f"rate {gw.rate / sus.rate:.2f}" if gw.rate else "rate n/a"]
        if sus.cpu_per_1k:
            parts.append(f"CPU/1k at sustained {gw.cpu_per_1k / sus.cpu_per_1k:.2f}")
        if half is not None and gw_half is not None and half.cpu_per_1k:
            parts.append(f"CPU/1k at {half.extra['offered']:,.0f}/s "
                         f"{gw_half.cpu_per_1k / half.cpu_per_1k:.2f}")  # fmt: skip
        out.append(f"gateway/{other}: " + ", ".join(parts))
    return "; ".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pager_bench", description=__doc__)
    ap.add_argument("directions", nargs="*", choices=["s2x", "x2s"], default=[])
    ap.add_argument("--step-seconds", type=float, default=4.0)
    ap.add_argument("--max-steps", type=int, default=9)
    ap.add_argument("--start-rate", type=float, default=1000.0)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile the gateway into DIR")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-kamailio", action="store_true", help="no Kamailio rows")
    ap.add_argument("--event-loop", choices=["asyncio", "uvloop", "auto"], default="asyncio")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    opts = Options(
        step_seconds=args.step_seconds,
        max_steps=args.max_steps,
        start_rate=args.start_rate,
        profile=args.profile,
        baseline=not args.skip_baseline,
        kamailio=not args.skip_kamailio,
        event_loop=args.event_loop,
        keep=args.keep,
    )
    status = 0
    for d in args.directions or ["s2x", "x2s"]:
        rows = run_s2x(opts) if d == "s2x" else run_x2s(opts)
        print_table(rows)
        print(summarize(rows), flush=True)
        if not args.no_json:
            print(f"results: {dump_results(f'pager-{d}', rows, vars(args))}")
        status |= 1 if any(r.errors for r in rows if r.name.startswith("gateway @")) else 0
    return status


if __name__ == "__main__":
    sys.exit(main())

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

Presence fan-out (one XMPP presence change -> 10,000 SIP watchers) is not built yet:
see docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import Row, cpu_seconds_of, dump_results, print_table, rss_bytes_of
from gateway.store.api import SubscriptionRecord
from gateway.store.sqlite import open_store
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer

__all__ = ["fill_store", "main", "records", "run_subs", "summarize_subs"]

COMPONENT = "sip.localhost"
SECRET = "bench-secret"
TARGET_SUBS = 100_000
TARGET_RSS_MB = 300.0
TARGET_RESTORE_S = 5.0
CONTACTS = 100


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
def _prosody(workdir: Path) -> Iterator[ProsodyServer]:
    log = workdir / "prosody" / "prosody.log"
    prosody = ProsodyServer(
        workdir / "prosody",
        components={COMPONENT: SECRET},
        extra_config=(
            f'log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{log}" }} }}'
        ),
    )
    prosody.start()
    try:
        yield prosody
    finally:
        prosody.stop()


def _gateway(prosody: ProsodyServer, workdir: Path, state_dir: Path) -> GatewayProcess:
    config = gateway_config(
        gateway={"state_dir": str(state_dir)},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": SECRET, "addressing": "mirrored"}],
        },
        sip={
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}],
            "hosted_domains": [],
            "trusted_peers": [LOOPBACK],
        },
        admin={"enabled": False},
    )
    return GatewayProcess(config, workdir, log_level="info", ready_timeout=120)


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


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.presence_bench", description=__doc__)
    ap.add_argument("scenario", choices=["subs-100k"])
    ap.add_argument("-n", type=int, default=TARGET_SUBS)
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    rows = run_subs(args.n, args.settle)
    print_table(rows)
    print(summarize_subs(rows))
    if not args.no_json:
        print(f"results: {dump_results(args.scenario, rows, vars(args))}")
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

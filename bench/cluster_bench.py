"""Aggregate pager throughput and CPU per message of a cluster (issue 21, docs/cluster.md).

Three cases in one run, each behind Kamailio's dispatcher (deploy/kamailio/dispatcher.cfg)
with the same ejabberd and the same load: `sqlite x1` (one process, the default store,
no `[cluster]`; the baseline), `postgresql x1` (one cluster instance) and `postgresql x2`
(two instances, the dispatcher hashing Call-IDs over both). The load: `-n` SIP MESSAGEs
to an XMPP user (a raw c2s client counts arrivals), `--window` outstanding, from the lean
UAC of scripts/soak.py. rate/s: 2xx per second of wall time; cpu s/1k: CPU seconds of
all the gateway processes per 1,000 MESSAGEs (Kamailio, ejabberd and PostgreSQL not
counted); vs bare: rate / the sqlite x1 rate. A 2-core machine shared with the load
generator, ejabberd and Kamailio: the figures say what one machine gives, not a scale-out.

    PYTHONPATH=<tree> .venv/bin/python -m bench.cluster_bench [-n 3000] [--window 32]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from bench.common import Row, cpu_seconds_of, dump_results, print_table
from scripts.soak import LeanUac, RawXmpp, body_seq
from tests.harness.dispatcher import Dispatcher
from tests.harness.ejabberd import EjabberdServer
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.integration.test_cluster import COMPONENT, SECRET, confirm_domain, instance_config

SCENARIO = "cluster"
ROOT = Path(__file__).resolve().parents[1]


async def _load(target: tuple[str, int], c2s_port: int, n: int, window: int) -> tuple[float, int]:
    arrivals: set[int] = set()

    def on_stanza(_c: RawXmpp, elem: ET.Element) -> None:
        seq = body_seq(elem) if elem.tag.endswith("}message") else None
        if seq is not None:
            arrivals.add(seq)

    juliet = await RawXmpp(c2s_port, "juliet@localhost", "pw", on_stanza=on_stanza).start()
    uac = await LeanUac(target, from_uri=f"sip:romeo@{COMPONENT}").start()
    try:
        t0 = time.monotonic()
        for seq in range(n):
            while len(uac.pending) >= window:
                await asyncio.sleep(0.001)
            uac.send(seq, "sip:juliet@localhost")
        await uac.drain(120)
        wall = time.monotonic() - t0
        await asyncio.sleep(1)
    finally:
        uac.close()
        await juliet.stop()
    ok = sum(1 for st in uac.outcomes.values() if 200 <= st < 300)
    errors = n - ok + len({s for s, st in uac.outcomes.items() if 200 <= st < 300} - arrivals)
    return ok / wall, errors


def _case(
    label: str,
    names: Sequence[str],
    *,
    ej: EjabberdServer,
    dsn: str | None,
    work: Path,
    n: int,
    window: int,
) -> Row:
    ports = {name: free_port() for name in names}
    gws = []
    for name in names:
        toml = instance_config(name, ports[name], ej, dsn, work / f"{label}-{name}", free_port())
        if dsn is None:  # one process: the shared domain alone, no confirm_domain
            toml = toml.replace(f'confirm_domain = "{confirm_domain(name)}"\n', "")
        gw = GatewayProcess(
            toml, work / f"gw-{label}-{name}", log_level="info",
            env={"PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        gws.append(gw.start())
        gw.wait_for_log(r"xmpp link \S+ up", timeout=30)
    disp = Dispatcher(work / f"kamailio-{label}", list(ports.values())).start()
    try:
        time.sleep(2)  # links up, probes answered
        before = sum(cpu_seconds_of(g.pid) for g in gws)
        rate, errors = asyncio.run(_load((disp.address, disp.port), ej.c2s_port, n, window))
        cpu = sum(cpu_seconds_of(g.pid) for g in gws) - before
    finally:
        disp.stop()
        for g in gws:
            g.terminate()
    return Row(
        SCENARIO, label, rate=rate, cpu_per_1k=cpu / n * 1000, errors=errors,
        extra={"instances": len(names), "store": "sqlite" if dsn is None else "postgresql"},
    )  # fmt: skip


def run(n: int = 3000, window: int = 32) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="cpim-cluster-bench-"))
    pg = PostgresServer().start()
    ej = EjabberdServer(
        work / "ejabberd",
        components={COMPONENT: SECRET},
        extra_listeners=[{COMPONENT: SECRET, confirm_domain(x): SECRET} for x in "ab"],
    )
    try:
        ej.start()
        ej.add_user("juliet", "pw")
        rows = [_case("sqlite x1", ["a"], ej=ej, dsn=None, work=work, n=n, window=window)]
        rows.append(
            _case(
                "postgresql x1",
                ["a"],
                ej=ej,
                dsn=pg.create_database(),
                work=work,
                n=n,
                window=window,
            )
        )
        rows.append(_case("postgresql x2", ["a", "b"], ej, pg.create_database(), work, n, window))
    finally:
        ej.stop()
        pg.close()
    base = rows[0].rate
    for r in rows:
        r.ratio = None if not base or r.rate is None else r.rate / base
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster_bench", description=__doc__)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.n, args.window)
    print_table(rows)
    if not args.no_json:
        dump_results(SCENARIO, rows, {"n": args.n, "window": args.window})
    return 0


if __name__ == "__main__":
    sys.exit(main())

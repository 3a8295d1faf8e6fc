"""Run benchmark scenarios and print one table: `python -m bench.run [scenario ...]`.

With no names, every registered scenario runs, in registration order. Each scenario is
bounded (it stops by itself), measures its own bare baseline in the same run, and writes
its rows to bench/results/<scenario>-<time>.json. Scenarios needing peers (Prosody, the
gateway, load generators) start and stop them inside their `run`.

To add a scenario: a module `bench/<name>_bench.py` with `run() -> list[Row]`, and one
`register(...)` line below.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import (
    lists_bench,
    offline_bench,
    pager_bench,
    parser_bench,
    presence_bench,
    websocket_bench,
)
from bench.common import Row, dump_results, machine_description, print_table

__all__ = ["SCENARIOS", "Scenario", "main", "register"]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    run: Callable[[], list[Row]]  # a bounded run with the scenario's default parameters
    summarize: Callable[[list[Row]], str] | None = None  # verdict against the target


SCENARIOS: dict[str, Scenario] = {}


def register(
    name: str,
    description: str,
    run: Callable[[], list[Row]],
    summarize: Callable[[list[Row]], str] | None = None,
) -> None:
    if name in SCENARIOS:
        raise ValueError(f"scenario {name!r} registered twice")
    SCENARIOS[name] = Scenario(name, description, run, summarize)


register(
    "parser",
    "SIP parser/serializer microbenchmark on typical messages vs a bare split (one core)",
    parser_bench.run,
    parser_bench.summarize,
)
register(
    "pager-s2x",
    "pager IM SIP->XMPP through Prosody: ramp to the sustained rate, latency at half, "
    "vs bare and vs Kamailio",
    pager_bench.run_s2x,
    pager_bench.summarize,
)
register(
    "pager-x2s",
    "pager IM XMPP->SIP through Prosody: ramp to the sustained rate, latency at half, "
    "vs bare and vs Kamailio",
    pager_bench.run_x2s,
    pager_bench.summarize,
)
register(
    "subs-100k",
    "100,000 S2X subscriptions in the store: gateway RSS, restore time at start and restart",
    presence_bench.run_subs,
    presence_bench.summarize_subs,
)
register(
    "presence-fanout",
    "one XMPP presence change -> 10,000 SIP watchers (NOTIFYs answered) through Prosody",
    presence_bench.run_fanout,
    presence_bench.summarize_fanout,
)
register(
    "lists",
    "RLS: 500 users x 200-contact lists, initial full state and one change's fan-out vs single",
    lists_bench.run,
)
register(
    "websocket",
    "SIP over WebSocket: MESSAGE/s over ws vs udp (same run), RSS per WebSocket registration",
    lambda: websocket_bench.run(websocket_bench.parse_args([])),
)

register(
    "offline",
    "10,000 offline messages for 100 users: store rate vs a bare insert, drain when all register",
    offline_bench.run,
    offline_bench.summarize,
)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    ap.add_argument("scenarios", nargs="*", metavar="scenario", help="default: all")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    args = ap.parse_args(argv)
    if args.list:
        for s in SCENARIOS.values():
            print(f"{s.name:12s} {s.description}")
        return 0
    unknown = [n for n in args.scenarios if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; try --list")
    names = args.scenarios or list(SCENARIOS)
    machine = machine_description()
    print(
        f"# {machine['cpu']} x{machine['nproc']}, {machine['mem_mb']} MB, {machine['python']}, "
        f"load {' '.join(f'{x:.2f}' for x in machine['loadavg'])}",
        flush=True,
    )
    rows: list[Row] = []
    summaries: list[str] = []
    for name in names:
        print(f"# running {name} ...", flush=True)
        scenario = SCENARIOS[name]
        got = scenario.run()
        rows.extend(got)
        if scenario.summarize is not None:
            summaries.append(scenario.summarize(got))
        if not args.no_json:
            print(f"# results: {dump_results(name, got, {'via': 'bench.run'})}", flush=True)
    print_table(rows)
    for line in summaries:
        print(line)
    return 1 if any(r.errors for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

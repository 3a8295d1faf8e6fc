"""Pure Python against the mypyc build (issue 27), in the same run: the parser, hot-path and
SIP-stack benchmarks (bench/parser_bench.py, bench/hotpath_bench.py, bench/endpoint_bench.py
as a rate from its best round) run in child processes, one on the checkout's `.py` sources,
one with the compiled build (build/mypyc) first on the path, alternating round by round so
machine load hits both alike.

Each child checks that it imports the build it is labelled with (gateway.compiled), so a
missing build cannot pass for the compiled figures; run `make compiled` first (it rebuilds
what changed, so the build matches the sources). Rates come from the child's CPU time; the
table shows the median over rounds of each child's figure, the range over rounds, and
compiled / pure.

    python -m bench.compiled_bench [-n 5000] [--repeat 3] [--rounds 3] [--cpu 1]
        [--build build/mypyc]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
BUILDS = ("pure", "compiled")
# parser_bench rows kept (its bare rows measure no gateway code)
PARSER_ROWS = (
    "parse typical mix",
    "serialize typical mix",
    "parse+serialize typical mix",
    "parse MESSAGE",
    "parse 200 OK",
)


def _child(n: int, repeat: int, expect: str) -> int:
    """Measure in this process and print one JSON object {case: rate}."""
    from bench import endpoint_bench, hotpath_bench, parser_bench
    from gateway import compiled

    wrong = compiled.compiled_modules() if expect == "pure" else compiled.not_compiled()
    if wrong:
        print(f"expected a {expect} build, but: {', '.join(wrong)}", file=sys.stderr)
        return 2
    rates: dict[str, float] = {}
    for row in parser_bench.run(n, repeat):
        if row.name in PARSER_ROWS and row.rate:
            rates[f"parser: {row.name}"] = row.rate
    for name, _bare, rate in hotpath_bench.run(n, repeat):
        rates[f"hotpath: {name}"] = rate
    # the SIP stack end to end without sockets (bench/endpoint_bench.py): datagram -> 200
    per_message = asyncio.run(endpoint_bench.run(n))["us_per_message_best_round"]
    rates["endpoint: MESSAGE datagram -> 200 sent"] = 1e6 / per_message
    print(json.dumps(rates))
    return 0


def _run_child(build: str, args: argparse.Namespace) -> dict[str, float]:
    path = [str(ROOT)] if build == "pure" else [str(Path(args.build).resolve()), str(ROOT)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    cmd = [sys.executable, "-P", "-m", "bench.compiled_bench", "--child", build]
    cmd += ["-n", str(args.n), "--repeat", str(args.repeat)]
    if args.cpu is not None:
        cmd = ["taskset", "-c", str(args.cpu), *cmd]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{build} child failed ({out.returncode}):\n{out.stderr}")
    rates: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return rates


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.compiled_bench", description=__doc__)
    ap.add_argument("-n", type=int, default=5_000, help="calls per repeat (default 5000)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats per child (median)")
    ap.add_argument("--rounds", type=int, default=3, help="pure/compiled child pairs")
    ap.add_argument("--cpu", type=int, default=None, help="pin the children to this CPU")
    ap.add_argument("--build", default=str(ROOT / "build" / "mypyc"), help="compiled tree")
    ap.add_argument("--child", choices=BUILDS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.n, args.repeat, args.child)

    runs: dict[str, list[dict[str, float]]] = {b: [] for b in BUILDS}
    load = [os.getloadavg()[0]]
    for i in range(args.rounds):
        order = BUILDS if i % 2 == 0 else BUILDS[::-1]  # alternate who goes first
        for build in order:
            runs[build].append(_run_child(build, args))
        load.append(os.getloadavg()[0])
    print(
        f"n={args.n}, repeat={args.repeat}, rounds={args.rounds}; load average "
        f"{min(load):.2f}-{max(load):.2f} (noisy: a shared machine)"
    )
    print(
        f"{'case (rate /s, CPU time; median [range])':<48} {'pure':>25} {'compiled':>25} {'x':>5}"
    )
    for case in runs["pure"][0]:
        cells = [[r[case] for r in runs[build]] for build in BUILDS]
        pure, comp = (statistics.median(v) for v in cells)
        shown = (f"{statistics.median(v):,.0f} [{min(v):,.0f}-{max(v):,.0f}]" for v in cells)
        print(f"{case[:48]:<48} {next(shown):>25} {next(shown):>25} {comp / pure:>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

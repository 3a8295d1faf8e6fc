"""Shared benchmark plumbing: timing, resource sampling, percentiles, tables, JSON results.

Linux only for RSS of other processes (/proc); the own-process figures use `resource`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "Clock",
    "Row",
    "Sample",
    "cpu_seconds_of",
    "dump_results",
    "format_table",
    "machine_description",
    "percentile",
    "print_table",
    "rss_bytes_of",
    "self_sample",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# ---------------------------------------------------------------- sampling


@dataclass(frozen=True)
class Sample:
    """Wall clock and CPU seconds (user + system) at one instant, with RSS in bytes."""

    wall: float
    cpu: float
    rss: int


def self_sample() -> Sample:
    """This process: CPU from `resource`, RSS from /proc/self/statm (peak if unavailable)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return Sample(time.perf_counter(), ru.ru_utime + ru.ru_stime, rss_bytes_of(os.getpid()))


def rss_bytes_of(pid: int) -> int:
    """Resident set size of `pid` from /proc/<pid>/statm (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        if pid == os.getpid():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return 0


def cpu_seconds_of(pid: int) -> float:
    """utime + stime of `pid` from /proc/<pid>/stat (0.0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            # the command name may contain spaces: fields start after the last ')'
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


class Clock:
    """Measure one bounded run: `with Clock() as c: ...`, then `c.wall`, `c.cpu`, `c.rss`."""

    def __enter__(self) -> Clock:
        self._start = self_sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self_sample()
        self.wall = end.wall - self._start.wall
        self.cpu = end.cpu - self._start.cpu
        self.rss = end.rss


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100) of `values`; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------- results


@dataclass
class Row:
    """One line of a scenario's table. Unused columns stay None and print as '-'.

    rate: operations per second; latencies in milliseconds; cpu_per_1k: CPU seconds of the
    measured process per 1,000 operations; ratio: rate / baseline rate of the same run.
    """

    scenario: str
    name: str
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_per_1k: float | None = None
    rss_mb: float | None = None
    errors: int = 0
    ratio: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("scenario", "scenario", str),
    ("name", "case", str),
    ("rate", "rate/s", lambda v: f"{v:,.0f}"),
    ("p50_ms", "p50 ms", lambda v: f"{v:.3f}"),
    ("p99_ms", "p99 ms", lambda v: f"{v:.3f}"),
    ("max_ms", "max ms", lambda v: f"{v:.3f}"),
    ("cpu_per_1k", "cpu s/1k", lambda v: f"{v:.4f}"),
    ("rss_mb", "RSS MB", lambda v: f"{v:.1f}"),
    ("errors", "errors", str),
    ("ratio", "vs bare", lambda v: f"{v:.2f}"),
)


def format_table(rows: Iterable[Row]) -> str:
    """A plain-text table, right-aligned numbers, '-' for missing figures."""
    cells = [[title for _, title, _ in _COLUMNS]]
    for row in rows:
        data = asdict(row)
        cells.append(["-" if data[key] is None else fmt(data[key]) for key, _, fmt in _COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    lines = []
    for n, r in enumerate(cells):
        parts = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_table(rows: Iterable[Row]) -> None:
    print(format_table(rows), flush=True)


def machine_description() -> dict[str, Any]:
    """CPU model, core count, memory and Python build, for the results file."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            mem_kb = int(f.readline().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "mem_mb": mem_kb // 1024,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "loadavg": os.getloadavg(),
    }


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def dump_results(
    scenario: str, rows: Sequence[Row], params: Mapping[str, Any], directory: Path = RESULTS_DIR
) -> Path:
    """Write rows, parameters, machine and commit to results/<scenario>-<utc time>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{scenario}-{stamp}.json"
    doc = {
        "scenario": scenario,
        "time": stamp,
        "commit": _git_commit(),
        "params": dict(params),
        "machine": machine_description(),
        "rows": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return path

"""Pure pieces of the end-to-end benchmarks: step verdicts, the rate ramp, latency figures,
and naming the saturated process. No I/O, no clock: bench/*_bench.py feed them.

The ramp finds the highest offered rate the system sustains within a bounded number of
steps: it multiplies the rate while steps pass, then bisects (geometrically) between the
last pass and the first failure until they are within `precision` of each other.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bench.common import percentile

__all__ = [
    "Criteria",
    "Ramp",
    "StepResult",
    "latency_ms",
    "saturated",
    "throughput",
]


@dataclass(frozen=True, slots=True)
class Criteria:
    """What 'sustained' means for one step."""

    min_share: float = 0.9  # delivered throughput / offered rate
    max_p99_ms: float = 200.0  # latency stays bounded (no queue building up)


@dataclass(frozen=True, slots=True)
class StepResult:
    """One bounded step at an offered rate."""

    offered: float  # messages/s the generators were asked for
    sent: int  # messages the generators sent
    delivered: int  # distinct messages that reached the far side
    errors: int  # failed transactions, error stanzas, missing messages
    throughput: float  # delivered / (last arrival - first send)
    p50_ms: float
    p99_ms: float
    max_ms: float

    def passes(self, criteria: Criteria = Criteria()) -> bool:
        return (
            self.errors == 0
            and self.sent > 0
            and self.delivered >= self.sent
            and self.throughput >= criteria.min_share * self.offered
            and self.p99_ms <= criteria.max_p99_ms
        )


@dataclass
class Ramp:
    """Offered rates to try, one after another: `next_rate()`, run it, `record(rate, ok)`."""

    start: float = 1000.0
    factor: float = 1.7
    precision: float = 1.15  # stop bisecting when fail / pass <= precision
    max_steps: int = 9
    floor: float = 50.0  # give up going down below this rate
    history: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def best_pass(self) -> float:
        return max((r for r, ok in self.history if ok), default=0.0)

    @property
    def lowest_fail(self) -> float:
        fails = [r for r, ok in self.history if not ok and r > self.best_pass]
        return min(fails, default=math.inf)

    @property
    def sustained(self) -> float:
        """The highest offered rate that passed (0 if none did)."""
        return self.best_pass

    def record(self, rate: float, ok: bool) -> None:
        self.history.append((rate, ok))

    def next_rate(self) -> float | None:
        """The next offered rate, or None when the ramp is done."""
        if len(self.history) >= self.max_steps:
            return None
        if not self.history:
            return self.start
        passed, failed = self.best_pass, self.lowest_fail
        if failed == math.inf:
            return passed * self.factor
        if passed == 0.0:
            lower = failed / self.factor
            return None if lower < self.floor else lower
        if failed / passed <= self.precision:
            return None
        return math.sqrt(passed * failed)


def latency_ms(pairs: Iterable[tuple[float, float]]) -> tuple[float, float, float]:
    """(p50, p99, max) in ms of (sent, arrived) epoch-second pairs; NaN when empty."""
    values = [(arrived - sent) * 1000.0 for sent, arrived in pairs]
    if not values:
        return math.nan, math.nan, math.nan
    return percentile(values, 50), percentile(values, 99), max(values)


def throughput(pairs: Sequence[tuple[float, float]]) -> float:
    """Delivered messages per second from the first send to the last arrival."""
    if not pairs:
        return 0.0
    first = min(s for s, _ in pairs)
    last = max(a for _, a in pairs)
    return len(pairs) / max(last - first, 1e-6)


def saturated(
    cpu_seconds: Mapping[str, float], wall: float, threshold: float = 0.85
) -> list[tuple[str, float]]:
    """Processes that used at least `threshold` of one core over `wall` seconds
    (single-threaded: one core is their ceiling), busiest first, with their share."""
    if wall <= 0:
        return []
    shares = [(name, cpu / wall) for name, cpu in cpu_seconds.items()]
    return sorted(((n, s) for n, s in shares if s >= threshold), key=lambda x: -x[1])

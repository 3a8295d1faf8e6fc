"""Transaction timers as data (RFC 3261 Table 4, §17; Timers L and M from RFC 6026 §8.4/§8.5).

Timer durations are pure functions of `TimerConfig` and of whether the transport is
reliable. Retransmission timers (A, E, G) are not started at all over reliable transports
(§17.1.1.2, §17.1.2.2, §17.2.1); the "wait" timers (D, I, J, K) are 0 there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TIMERS", "TimerConfig", "TimerName", "duration", "next_retransmit_interval"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    t1: float = 0.5  # RTT estimate (§17.1.1.1)
    t2: float = 4.0  # cap on non-INVITE request and INVITE response retransmit interval
    t4: float = 5.0  # maximum lifetime of a message in the network
    timer_d: float = 32.0  # "> 32s for UDP" (§17.1.1.2)
    # The INVITE server transaction sends 100 Trying if the TU has not answered within
    # this delay (§17.2.1: "more than 200 ms"); 0 sends it at once.
    trying_delay: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise ValueError("need 0 < T1 <= T2")
        if self.t4 < 0 or self.timer_d < 0 or self.trying_delay < 0:
            raise ValueError("timer values must not be negative")


class TimerName(enum.Enum):
    A = "A"  # INVITE client: request retransmit (unreliable only)
    B = "B"  # INVITE client: transaction timeout
    D = "D"  # INVITE client: wait for response retransmits in Completed
    E = "E"  # non-INVITE client: request retransmit (unreliable only)
    F = "F"  # non-INVITE client: transaction timeout
    G = "G"  # INVITE server: response retransmit (unreliable only)
    H = "H"  # INVITE server: wait for ACK
    I = "I"  # INVITE server: wait for ACK retransmits in Confirmed  # noqa: E741
    J = "J"  # non-INVITE server: wait for request retransmits
    K = "K"  # non-INVITE client: wait for response retransmits
    L = "L"  # INVITE server Accepted: wait for 2xx/ACK (RFC 6026 §8.5)
    M = "M"  # INVITE client Accepted: wait for 2xx retransmits (RFC 6026 §8.4)
    TRYING = "100"  # INVITE server: send 100 Trying if the TU is silent (§17.2.1)


_Dur = Callable[[TimerConfig], float]


def _t1(c: TimerConfig) -> float:
    return c.t1


def _64t1(c: TimerConfig) -> float:
    return 64 * c.t1


def _t4(c: TimerConfig) -> float:
    return c.t4


def _zero(c: TimerConfig) -> float:
    return 0.0


# name -> (RFC section, duration over unreliable transport, over reliable (None: not started))
TIMERS: dict[TimerName, tuple[str, _Dur, _Dur | None]] = {
    TimerName.A: ("3261 §17.1.1.2", _t1, None),
    TimerName.B: ("3261 §17.1.1.2", _64t1, _64t1),
    TimerName.D: ("3261 §17.1.1.2", lambda c: c.timer_d, _zero),
    TimerName.E: ("3261 §17.1.2.2", _t1, None),
    TimerName.F: ("3261 §17.1.2.2", _64t1, _64t1),
    TimerName.G: ("3261 §17.2.1", _t1, None),
    TimerName.H: ("3261 §17.2.1", _64t1, _64t1),
    TimerName.I: ("3261 §17.2.1", _t4, _zero),
    TimerName.J: ("3261 §17.2.2", _64t1, _zero),
    TimerName.K: ("3261 §17.1.2.2", _t4, _zero),
    TimerName.L: ("6026 §8.5", _64t1, _64t1),
    TimerName.M: ("6026 §8.4", _64t1, _64t1),
    TimerName.TRYING: ("3261 §17.2.1", lambda c: c.trying_delay, lambda c: c.trying_delay),
}


def duration(name: TimerName, config: TimerConfig, reliable: bool) -> float | None:
    """Initial duration of timer `name`, or None if it is not used on this transport."""
    _, unreliable, reliable_dur = TIMERS[name]
    if reliable:
        return None if reliable_dur is None else reliable_dur(config)
    return unreliable(config)


def next_retransmit_interval(name: TimerName, previous: float, config: TimerConfig) -> float:
    """Interval after a retransmission: A doubles without cap (§17.1.1.2); E and G double
    up to T2 (§17.1.2.2, §17.2.1)."""
    if name is TimerName.A:
        return 2 * previous
    return min(2 * previous, config.t2)

"""The overload policy (issue 27): measured load in, admit or reject(Retry-After) out.

Pure: the glue (`gateway.overload.monitor`) samples the load every `interval` and calls
`observe(now, load)`; the SIP core asks `admit(pending)` for every new request and the
pager `admit_stanza(clients)` for every message stanza. Time is an input.

States and hysteresis (no flapping between the marks):

* admitting -> overloaded when ANY signal reaches its high mark;
* while overloaded, a share `admitted` of the new requests is admitted (AIMD, like the
  loss-based scheme of SIP overload control, RFC 7339): one half at the sample that
  entered, halved again by a sample with a signal at its high mark once `recovery / 4`
  seconds passed since the last cut (the queue needs that long to show its effect;
  cutting at every sample starved the gateway in the pager ramp), grown by
  `interval / recovery` per sample otherwise (full admission `recovery` seconds after the
  last high sample), so the gateway serves what it can and refuses the rest, instead of
  alternating between all and nothing;
* overloaded -> admitting when the share is back to 1 and EVERY signal stayed at or under
  its low mark for `hold` seconds of consecutive samples (a signal between the marks keeps
  the state).

Refused requests get 503 with Retry-After (RFC 3261 §21.5.4), refused message stanzas
resource-constraint, type wait (RFC 6120 §8.3.3.18). The share is applied without
randomness: a credit grows by the share per request and admits when it reaches 1.
Independently of the state, a SIP request arriving while `pending_high` requests are
being handled, or a stanza while `clients_high` XMPP -> SIP messages are being bridged,
is refused too: those bounds hold between two samples, where a burst could otherwise queue
up unboundedly.
Refusals are counted here; the glue logs state changes only (`Transition`).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import OverloadConfig

__all__ = ["Load", "OverloadPolicy", "Transition"]


@dataclass(frozen=True, slots=True)
class Load:
    """One sample of what the gateway carries."""

    lag: float = 0.0  # seconds the sampling timer fired late (event-loop lag)
    pending: int = 0  # SIP requests being handled (their handlers still running)
    clients: int = 0  # our SIP requests awaiting answers + XMPP -> SIP messages being bridged
    xmpp_backlog: int = 0  # bytes written to the fullest XMPP link, not yet sent
    udp_backlog: float = 0.0  # share of the fullest UDP receive buffer in use (0..1)
    stream_backlog: int = 0  # bytes received on TCP/TLS connections, not read yet


@dataclass(frozen=True, slots=True)
class Transition:
    """The state changed at `at`: `overloaded` is the new state, `reasons` the signals at
    or over their high mark (entering), `rejected` the refusals of the period that ended
    (leaving: SIP requests and XMPP stanzas)."""

    at: float
    overloaded: bool
    reasons: tuple[str, ...]
    load: Load
    rejected_requests: int = 0
    rejected_stanzas: int = 0


class OverloadPolicy:
    """The state machine above; `rejected_*` count every refusal since creation."""

    def __init__(self, cfg: OverloadConfig) -> None:
        self.cfg = cfg
        self.overloaded = False
        self.since: float | None = None  # when the current state began (None: never changed)
        self.load = Load()
        self.rejected_requests = 0
        self.rejected_stanzas = 0
        self.admitted = 1.0  # share of new requests admitted (below 1 only when overloaded)
        self._credit = 0.0
        self._last: float | None = None  # time of the previous sample
        self._calm_since: float | None = None  # first of the consecutive calm samples
        self._last_cut: float | None = None  # when the share was last halved
        self._period_requests = 0  # at the start of the current overloaded period
        self._period_stanzas = 0

    # -- sampling -----------------------------------------------------------------------

    def high(self, load: Load) -> tuple[str, ...]:
        """The signals at or over their high mark."""
        c = self.cfg
        out = []
        if load.lag >= c.lag_high:
            out.append("lag")
        if load.pending >= c.pending_high:
            out.append("pending")
        if load.clients >= c.clients_high:
            out.append("clients")
        if load.xmpp_backlog >= c.xmpp_backlog_high:
            out.append("xmpp_backlog")
        if load.udp_backlog >= c.udp_backlog_high:
            out.append("udp_backlog")
        if load.stream_backlog >= c.stream_backlog_high:
            out.append("stream_backlog")
        return tuple(out)

    def calm(self, load: Load) -> bool:
        """Every signal at or under its low mark."""
        c = self.cfg
        return (
            load.lag <= c.lag_low
            and load.pending <= c.pending_low
            and load.clients <= c.clients_low
            and load.xmpp_backlog <= c.xmpp_backlog_low
            and load.udp_backlog <= c.udp_backlog_low
            and load.stream_backlog <= c.stream_backlog_low
        )

    def observe(self, now: float, load: Load) -> Transition | None:
        """A new sample; the transition it causes, if any."""
        self.load = load
        step = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        if not self.cfg.enabled:
            return None
        reasons = self.high(load)
        if not self.overloaded:
            if not reasons:
                return None
            self.overloaded, self.since, self._calm_since = True, now, None
            self.admitted, self._credit, self._last_cut = 0.5, 0.0, now
            self._period_requests = self.rejected_requests
            self._period_stanzas = self.rejected_stanzas
            return Transition(now, True, reasons, load)
        if reasons:  # multiplicative decrease, once the previous cut had time to act
            if self._last_cut is None or now - self._last_cut >= self.cfg.recovery / 4:
                self.admitted /= 2
                self._last_cut = now
        else:  # additive increase
            self.admitted = min(1.0, self.admitted + step / self.cfg.recovery)
        if not self.calm(load):
            self._calm_since = None
            return None
        if self._calm_since is None or now < self._calm_since:  # a clock step back restarts
            self._calm_since = now
        if now - self._calm_since < self.cfg.hold or self.admitted < 1.0:
            return None
        self.overloaded, self.since, self._calm_since = False, now, None
        return Transition(
            now,
            False,
            (),
            load,
            self.rejected_requests - self._period_requests,
            self.rejected_stanzas - self._period_stanzas,
        )

    def _shed(self, at_bound: bool) -> bool:
        """True to refuse the next request: at its bound, or beyond the share."""
        if at_bound:
            return True
        if not self.overloaded:
            return False
        self._credit += self.admitted
        if self._credit >= 1.0:
            self._credit -= 1.0
            return False
        return True

    # -- decisions ------------------------------------------------------------------------

    def admit(self, pending: int) -> int | None:
        """A new SIP request while `pending` are being handled: None to admit it, else the
        Retry-After (seconds) of its 503."""
        if not self.cfg.enabled:
            return None
        if self._shed(pending >= self.cfg.pending_high):
            self.rejected_requests += 1
            return self.cfg.retry_after
        return None

    def admit_stanza(self, clients: int) -> bool:
        """A message stanza to bridge while `clients` XMPP -> SIP messages are being
        bridged (queued or awaiting their answer): False to refuse it (resource-constraint,
        wait)."""
        if not self.cfg.enabled:
            return True
        if self._shed(clients >= self.cfg.clients_high):
            self.rejected_stanzas += 1
            return False
        return True

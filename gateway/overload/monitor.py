"""The asyncio side of overload control (issue 27): sample the load, feed the policy.

Every `interval` seconds a `loop.call_at` timer samples: its own lateness (event-loop
lag), the SIP requests being handled, our SIP requests awaiting answers, the largest
XMPP link backlog, the fullest UDP receive buffer and the unread bytes of the TCP/TLS
connections (callables given by the composition root), and hands them to
`OverloadPolicy.observe`. A state change is one log line (entering: which signals;
leaving: how many requests and stanzas were refused meanwhile), never one per refusal:
those are counted in the metrics (`cpim_overload_refused_total`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge

from gateway.logs import event
from gateway.metrics import Metrics
from gateway.overload.policy import Load, OverloadPolicy, Transition

__all__ = ["LoadSources", "OverloadMonitor"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadSources:
    """Where the load is read, each a cheap call (no I/O but one getsockopt)."""

    pending: Callable[[], int]
    clients: Callable[[], int]
    xmpp_backlog: Callable[[], int]
    udp_backlog: Callable[[], float]
    stream_backlog: Callable[[], int] = lambda: 0


class OverloadMonitor:
    """The sampling timer around one `OverloadPolicy`; `start`/`stop` as a service."""

    def __init__(self, policy: OverloadPolicy, sources: LoadSources, metrics: Metrics) -> None:
        self.policy = policy
        self.sources = sources
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._counted = (0, 0)
        r = metrics.registry
        self._state = Gauge("cpim_overload_active", "1 while overload control refuses", registry=r)
        self._lag = Gauge(
            "cpim_overload_event_loop_lag_seconds", "Lateness of the last load sample", registry=r
        )
        self._pending = Gauge("cpim_overload_pending", "SIP requests being handled", registry=r)
        self._clients = Gauge(
            "cpim_overload_clients",
            "Our SIP requests awaiting answers plus XMPP -> SIP messages being bridged",
            registry=r,
        )
        self._xmpp = Gauge(
            "cpim_overload_xmpp_backlog_bytes",
            "Bytes written to the fullest XMPP link, not yet sent",
            registry=r,
        )
        self._udp = Gauge(
            "cpim_overload_udp_backlog_ratio",
            "Share of the fullest UDP receive buffer in use",
            registry=r,
        )
        self._stream = Gauge(
            "cpim_overload_stream_backlog_bytes",
            "Bytes received on TCP/TLS connections, not read yet",
            registry=r,
        )
        self._refused = Counter(
            "cpim_overload_refused",
            "New work refused by overload control (sip: 503, xmpp: resource-constraint)",
            ["side"],
            registry=r,
        )
        self._transitions = Counter(
            "cpim_overload_transitions",
            "Overload state changes, by the state entered",
            ["state"],
            registry=r,
        )

    @property
    def ready(self) -> bool:
        return True

    async def start(self) -> None:
        if not self.policy.cfg.enabled:
            log.info("overload control disabled")
            return
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.policy.cfg.interval
        self._handle = loop.call_at(self._due, self._tick)

    async def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def sample(self, now: float) -> Load:
        s = self.sources
        return Load(
            lag=max(0.0, now - self._due),
            pending=s.pending(),
            clients=s.clients(),
            xmpp_backlog=s.xmpp_backlog(),
            udp_backlog=s.udp_backlog(),
            stream_backlog=s.stream_backlog(),
        )

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        try:
            load = self.sample(now)
            change = self.policy.observe(now, load)
            self._publish(load, change)
        except Exception:  # a bug here must not stop the sampling
            log.exception("overload sample failed")
        self._due = loop.time() + self.policy.cfg.interval
        self._handle = loop.call_at(self._due, self._tick)

    def _publish(self, load: Load, change: Transition | None) -> None:
        self._lag.set(load.lag)
        self._pending.set(load.pending)
        self._clients.set(load.clients)
        self._xmpp.set(load.xmpp_backlog)
        self._udp.set(load.udp_backlog)
        self._stream.set(load.stream_backlog)
        p = self.policy
        sip, xmpp = p.rejected_requests, p.rejected_stanzas
        if sip > self._counted[0]:
            self._refused.labels("sip").inc(sip - self._counted[0])
        if xmpp > self._counted[1]:
            self._refused.labels("xmpp").inc(xmpp - self._counted[1])
        self._counted = (sip, xmpp)
        self._state.set(1 if p.overloaded else 0)
        if change is None:
            return
        fields = {
            "lag_ms": round(load.lag * 1000, 1),
            "pending": load.pending,
            "clients": load.clients,
            "xmpp_backlog": load.xmpp_backlog,
            "udp_backlog": round(load.udp_backlog, 3),
            "stream_backlog": load.stream_backlog,
        }
        if change.overloaded:
            self._transitions.labels("overloaded").inc()
            event(log, logging.WARNING, "overload: refusing new work",
                  signals=",".join(change.reasons), retry_after=p.cfg.retry_after,
                  **fields)  # fmt: skip
        else:
            self._transitions.labels("admitting").inc()
            event(log, logging.WARNING, "overload over: admitting again",
                  refused_requests=change.rejected_requests,
                  refused_stanzas=change.rejected_stanzas, **fields)  # fmt: skip

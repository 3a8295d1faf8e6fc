"""Prometheus metrics (prometheus-client), one registry per gateway process.

Modules record through `Metrics` (passed explicitly, never a global), so tests
can build their own and read the values back. The admin API exposes
`Metrics.registry` at /metrics (docs/admin-api.md lists every family).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

Direction = Literal["sip_to_xmpp", "xmpp_to_sip"]

# Handling latency buckets: 100 us .. 5 s.
_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.messages = Counter(
            "cpim_messages",
            "Pager messages by direction and outcome (delivered, rejected, failed, timeout)",
            ["direction", "outcome"],
            registry=r,
        )
        self.message_latency = Histogram(
            "cpim_message_handling_seconds",
            "Time from receiving a message on one side to its final answer from the other",
            ["direction"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.presence_notifications = Counter(
            "cpim_presence_notifications",
            "Presence notifications translated, by direction",
            ["direction"],
            registry=r,
        )
        self.subscriptions = Gauge(
            "cpim_subscriptions_active",
            "Live presence subscriptions by direction",
            ["direction"],
            registry=r,
        )
        self.registrations = Gauge(
            "cpim_registrations_active", "Live SIP registration bindings", registry=r
        )
        self.component_reconnects = Counter(
            "cpim_component_reconnects",
            "XEP-0114 link (re)connections after a loss",
            ["domain"],
            registry=r,
        )
        self.sip_requests_refused = Counter(
            "cpim_sip_requests_refused",
            "SIP requests refused by the trust model or rate limits, by reason",
            ["reason"],
            registry=r,
        )

        self.sessions = Gauge(
            "cpim_sessions_active",
            "Live INVITE message sessions (MSRP, RFC 7573), either direction",
            registry=r,
        )
        self.session_ends = Counter(
            "cpim_sessions_ended",
            "Message sessions ended, by reason (bye-received, bye-sent, cancelled, no-ack,"
            " refused, rejected, fallback, failed)",
            ["reason"],
            registry=r,
        )

    def gauge_fn(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        """A gauge read at scrape time (transactions in flight, connections...)."""
        Gauge(name, doc, registry=self.registry).set_function(fn)

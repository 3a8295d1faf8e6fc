"""How often a list subscription may be notified (RFC 4662 §4.8, RFC 6446 §5).

`notify_interval(min_interval, max_rate, remaining)` is the least time between two
NOTIFYs of one list subscription:

* the local policy `min_interval` (RFC 4662 §4.8 leaves the rate to the RLS; RFC 6446
  §5.2: a local maximum rate applies even when the subscriber asks for none);
* the subscriber's `max-rate` Event parameter (RFC 6446 §5.2: no NOTIFY before
  1/max-rate seconds since the last one), read by `max_rate_of`;
* but never more than the time left in the subscription (RFC 6446 §5.3: a rate that
  would allow no NOTIFY before expiry is raised to 1/remaining).

`reflected_max_rate` is the value echoed in Subscription-State (RFC 6446 §5.2: the notifier
MUST reflect the possibly adjusted max-rate). The NOTIFYs that are never held back are
those answering a SUBSCRIBE and the final one (RFC 6446 §5.2); the glue only paces
state changes. Pure: time is an argument.
"""

from __future__ import annotations

import re

from gateway.sip.headers import Event

__all__ = ["MAX_RATE", "due", "max_rate_of", "notify_interval", "reflected_max_rate"]

# RFC 6446 §9.2: max-rate = 1*2DIGIT ["." 1*10DIGIT], between 1e-10 and 99.9999999999.
MAX_RATE = re.compile(r"[0-9]{1,2}(?:\.[0-9]{1,10})?")


def max_rate_of(event: Event) -> float | None:
    """The `max-rate` Event parameter (notifications per second); None when absent or not
    in the RFC 6446 §9.2 grammar (such a value is ignored) or zero."""
    raw = event.params.get("max-rate")
    if raw is None or not MAX_RATE.fullmatch(raw):
        return None
    rate = float(raw)
    return rate if rate > 0 else None


def notify_interval(min_interval: float, max_rate: float | None, remaining: float) -> float:
    interval = max(min_interval, 0.0 if max_rate is None else 1.0 / max_rate)
    if remaining > 0 and interval > remaining:
        interval = remaining  # RFC 6446 §5.3
    return interval


def reflected_max_rate(interval: float) -> str | None:
    """The max-rate to reflect for `interval` (None: no pacing at all)."""
    if interval <= 0:
        return None
    rate = min(1.0 / interval, 99.9999999999)
    text = f"{rate:.10f}".rstrip("0").rstrip(".")
    if "." not in text and len(text) > 2:
        text = "99"
    return text if float(text) > 0 else "0.0000000001"


def due(last: float, interval: float, now: float) -> float | None:
    """None when a NOTIFY may go at `now` (its last went at `last`); else when it may."""
    at = last + interval
    return None if now >= at else at

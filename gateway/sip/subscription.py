"""Shared vocabulary of RFC 6665 subscriptions: the actions the two machines emit.

`gateway.sip.subscriber` (we watch a SIP resource: the X2S gateway) and
`gateway.sip.notifier` (a SIP watcher subscribes to us: the S2X gateway) are pure state
machines; what they ask the glue to do comes out as these frozen dataclasses.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.status import check_status_code

__all__ = [
    "Action",
    "AnswerNotify",
    "Authorized",
    "NotifierAction",
    "Pending",
    "Removed",
    "ScheduleRefresh",
    "SendNotify",
    "SendResponse",
    "SendSubscribe",
    "StateDocument",
    "SubscribeOutcome",
    "Terminated",
    "TerminationCause",
    "new_id",
    "refresh_delay",
    "retry_after",
    "subscribe_response_outcome",
]


def refresh_delay(remaining: float, timer_n: float) -> float:
    """Seconds from now until a refresh SUBSCRIBE is due, for `remaining` seconds left.

    The refresh must get its NOTIFY before the old expiry, and Timer N (64*T1) bounds that
    wait, so it goes out Timer N early; but never before half-time, so that short
    intervals do not refresh in a storm (RFC 6665 §4.1.2.2 leaves the choice open)."""
    return max(0.0, remaining - timer_n, remaining / 2)


class TerminationCause(enum.Enum):
    NOTIFY = "notify"  # Subscription-State: terminated
    RESPONSE = "response"  # a failure response to (re)SUBSCRIBE
    TIMER_N = "timer-n"  # no NOTIFY within 64*T1 of sending SUBSCRIBE
    EXPIRED = "expired"  # not refreshed in time
    UNSUBSCRIBED = "unsubscribed"  # we ended it before any dialog existed


# ---------------------------------------------------------------------------- responses

SubscribeOutcome = Literal[
    "ok",
    "permanent",
    "transient-retry-min-expires",
    "transient-new-dialog",
    "terminated",
    "retry-later",
]

# RFC 8048 §5.2 (R8048-06) overrides RFC 6665 §4.1.2.2 for 489: permanent, not "terminated".
_SUBSCRIBE_OUTCOMES: Mapping[int, SubscribeOutcome] = MappingProxyType(
    {
        403: "permanent",
        489: "permanent",
        603: "permanent",
        423: "transient-retry-min-expires",
        481: "transient-new-dialog",
        # RFC 6665 §4.1.2.2: these terminate the subscription; re-subscribe on a new dialog.
        **dict.fromkeys((404, 405, 410, 416, 480, 482, 483, 484, 485, 501, 604), "terminated"),
    }
)


def subscribe_response_outcome(code: int) -> SubscribeOutcome:
    """Classify a final response to a (re)SUBSCRIBE we sent (drives `gateway.sip.subscriber`).

    2xx (202 treated as 200, RFC 6665 §8.3.1) -> ok; 403/489/603 -> permanent (R8048-06);
    423 -> retry with Min-Expires; 481 -> new dialog; the RFC 6665 §4.1.2.2 list ->
    terminated; anything else -> the subscription stands until it expires (retry later).
    """
    check_status_code(code)
    if code < 200:
        raise ValueError(f"not a final response: {code}")
    if code < 300:
        return "ok"
    return _SUBSCRIBE_OUTCOMES.get(code, "retry-later")


# ---------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class SendSubscribe:
    """Send `request` (no Via yet). `new_dialog`: fresh Call-ID and From tag (re-index)."""

    request: SipRequest
    expires: int
    new_dialog: bool


@dataclass(frozen=True)
class AnswerNotify:
    status: int
    response: SipResponse


@dataclass(frozen=True)
class Authorized:
    """First `Subscription-State: active` (XMPP `subscribed`, RFC 8048 §5.2)."""


@dataclass(frozen=True)
class Pending:
    """Subscription pending authorization: nothing goes to XMPP (R8048-03)."""


@dataclass(frozen=True)
class StateDocument:
    """A NOTIFY body to deliver (only non-empty bodies; an empty NOTIFY means "no change",
    RFC 3856 §6.6; after `Authorized` with no document the state is unknown/closed)."""

    body: bytes
    content_type: str | None


@dataclass(frozen=True)
class Terminated:
    """The subscription ended: the protocol facts only. What a gateway makes of them (tell
    the watcher, subscribe again) is its own policy (`mappings.errors.subscription_end`)."""

    cause: TerminationCause
    reason: str | None = None  # Subscription-State reason (RFC 6665 §4.1.3)
    status: int | None = None  # failure response code
    # Retry-After of the failure response (RFC 3261 §20.33), or the Subscription-State
    # retry-after parameter (RFC 6665 §4.1.3)
    retry_after: int | None = None
    established: bool = False  # a NOTIFY had made it pending or active (RFC 6665 §4.1.2.4)
    unsubscribing: bool = False  # we had asked to end it (Expires: 0, RFC 6665 §4.1.2.3)


@dataclass(frozen=True)
class ScheduleRefresh:
    at: float


SubAction = SendSubscribe | AnswerNotify | Authorized | Pending | StateDocument | Terminated
Action = SubAction | ScheduleRefresh


def new_id() -> str:
    """A random Call-ID / tag (RFC 3261 §8.1.1.4, §19.3: cryptographically random)."""
    return secrets.token_hex(8)


def retry_after(msg: SipResponse) -> int | None:
    """Leading delta-seconds of Retry-After (RFC 3261 §20.33), None if absent/malformed."""
    raw = msg.headers.get("Retry-After")
    if raw is None:
        return None
    digits = raw.strip().split(";")[0].split("(")[0].strip()
    return int(digits) if digits.isdigit() and len(digits) <= 10 else None


# ---------------------------------------------------------------------------- notifier side


@dataclass(frozen=True)
class SendResponse:
    """Answer the SUBSCRIBE with `response` (200 with Expires, or 423/489/406...)."""

    response: SipResponse


@dataclass(frozen=True)
class SendNotify:
    """Send `request` (no Via yet); `state` is its Subscription-State value."""

    request: SipRequest
    state: str


@dataclass(frozen=True)
class Removed:
    """The subscription is gone (RFC 6665 §4.2.2): drop it from tables and the store."""

    reason: str
    status: int | None = None


NotifierAction = SendResponse | SendNotify | Removed

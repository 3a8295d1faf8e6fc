"""Error tables as data: RFC 7247 §7 (XMPP <-> SIP), RFC 6120 §8.3.3 types, RFC 8048 outcomes.

Everything here is a lookup over a table; the two edges (SIP endpoint, XMPP component) turn a
`MappingError` into a final SIP response or an XMPP error stanza with `to_sip()` / `to_xmpp()`.

Choices where RFC 7247 offers two codes (documented in docs/addressing.md):

* ``service-unavailable`` -> **403** (never 503, RFC 7247 §7.1 note 5). 405 would need an
  ``Allow`` header (RFC 3261 §21.4.6) and tells the peer the method exists elsewhere; 403 also
  keeps the "do not disclose whether the account exists" meaning.
* ``remote-server-not-found`` -> **404** (note 4 case (a)); we cannot tell "does not exist" from
  "cannot be resolved" at this layer.
* ``unexpected-request`` -> **400**: 491 tells a UAC to retry a re-INVITE after a random delay
  (RFC 3261 §14.1), which is meaningless for MESSAGE/SUBSCRIBE.
* SIP 301 without a new address cannot become ``<gone/>`` (note 1 MUST) -> class default
  ``redirect``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, get_args

from gateway.sip.status import REASON_PHRASES, check_status_code
from gateway.sip.subscription import (
    Terminated,
    TerminationCause,
    subscribe_response_outcome,
)

XmppErrorType = Literal["auth", "cancel", "continue", "modify", "wait"]

# RFC 6120 §8.3.3: each defined condition with its usual error type (R6120-err). Where the RFC
# allows two types the first listed in DIGEST R6120-err is used.
_ERROR_TYPES: Mapping[str, XmppErrorType] = MappingProxyType(
    {
        "bad-request": "modify",
        "conflict": "cancel",
        "feature-not-implemented": "cancel",
        "forbidden": "auth",
        "gone": "cancel",
        "internal-server-error": "cancel",
        "item-not-found": "cancel",
        "jid-malformed": "modify",
        "not-acceptable": "modify",
        "not-allowed": "cancel",
        "not-authorized": "auth",
        "policy-violation": "modify",
        "recipient-unavailable": "wait",
        "redirect": "modify",
        "registration-required": "auth",
        "remote-server-not-found": "cancel",
        "remote-server-timeout": "wait",
        "resource-constraint": "wait",
        "service-unavailable": "cancel",
        "subscription-required": "auth",
        "undefined-condition": "modify",  # §8.3.3.21 example uses modify
        "unexpected-request": "wait",
    }
)

XMPP_CONDITIONS: frozenset[str] = frozenset(_ERROR_TYPES)
_ERROR_TYPE_NAMES: frozenset[str] = frozenset(get_args(XmppErrorType))


def xmpp_error_type(condition: str) -> XmppErrorType:
    """RFC 6120 §8.3.3 error type for a defined stanza error condition."""
    try:
        return _ERROR_TYPES[condition]
    except KeyError:
        raise ValueError(f"not an RFC 6120 stanza error condition: {condition!r}") from None


# RFC 7247 §7.1 Table 2: condition -> (code for a full JID, code for a bare JID). Rows with
# note (1)/(2) differ (4xx about one endpoint, 6xx/501 about the user); `gone` is special-cased.
XMPP_TO_SIP: Mapping[str, tuple[int, int]] = MappingProxyType(
    {
        "bad-request": (400, 400),
        "conflict": (400, 400),
        "feature-not-implemented": (405, 501),  # note (1)
        "forbidden": (403, 603),  # note (2)
        "gone": (410, 410),  # note (3): 301 when a new address is given
        "internal-server-error": (500, 500),
        "item-not-found": (404, 604),  # note (2)
        "jid-malformed": (400, 400),
        "not-acceptable": (406, 606),  # note (2)
        "not-allowed": (403, 403),
        "not-authorized": (401, 401),
        "policy-violation": (403, 403),
        "recipient-unavailable": (480, 600),  # note (2)
        "redirect": (302, 302),
        "registration-required": (407, 407),
        "remote-server-not-found": (404, 404),  # note (4), case (a)
        "remote-server-timeout": (408, 408),
        "resource-constraint": (500, 500),
        "service-unavailable": (403, 403),  # note (5): never 503
        "subscription-required": (400, 400),
        "undefined-condition": (400, 400),
        "unexpected-request": (400, 400),  # "491 or 400": see module docstring
    }
)

# RFC 7247 §7.2 Table 3: SIP code -> condition. Unlisted codes use SIP_CLASS_DEFAULTS.
SIP_TO_XMPP: Mapping[int, str] = MappingProxyType(
    {
        300: "redirect",
        301: "gone",  # note (1): with the new address as character data
        302: "redirect",
        305: "redirect",
        380: "not-acceptable",
        400: "bad-request",
        401: "not-authorized",
        402: "bad-request",  # note (2): payment-required removed in RFC 6120
        403: "forbidden",  # note (3)
        404: "item-not-found",  # note (4)
        405: "feature-not-implemented",
        406: "not-acceptable",
        407: "registration-required",
        408: "remote-server-timeout",  # note (5)
        410: "gone",  # note (1): without character data
        413: "policy-violation",
        414: "policy-violation",
        415: "not-acceptable",
        416: "not-acceptable",
        420: "feature-not-implemented",
        421: "not-acceptable",
        423: "resource-constraint",
        430: "recipient-unavailable",  # RFC 5626
        439: "feature-not-implemented",  # RFC 5626
        440: "policy-violation",  # RFC 5393
        480: "recipient-unavailable",
        481: "item-not-found",
        482: "not-acceptable",
        483: "not-acceptable",
        484: "item-not-found",
        485: "item-not-found",
        486: "recipient-unavailable",
        487: "recipient-unavailable",
        488: "not-acceptable",
        489: "policy-violation",  # RFC 6665
        491: "unexpected-request",
        493: "bad-request",
        500: "internal-server-error",
        501: "feature-not-implemented",
        502: "remote-server-not-found",
        503: "internal-server-error",  # note (9)
        504: "remote-server-timeout",
        505: "not-acceptable",
        513: "policy-violation",
        600: "recipient-unavailable",
        603: "recipient-unavailable",
        604: "item-not-found",
        606: "not-acceptable",
    }
)

# RFC 7247 §7.2: "3xx -> redirect, 4xx -> bad-request, 5xx -> internal-server-error,
# 6xx -> recipient-unavailable" for codes not in Table 3.
SIP_CLASS_DEFAULTS: Mapping[int, str] = MappingProxyType(
    {3: "redirect", 4: "bad-request", 5: "internal-server-error", 6: "recipient-unavailable"}
)

_CLASS_PHRASES: Mapping[int, str] = MappingProxyType(
    {
        1: "Provisional",
        2: "Success",
        3: "Redirection",
        4: "Request Failure",
        5: "Server Failure",
        6: "Global Failure",
    }
)


def reason_phrase(code: int) -> str:
    """The standard reason phrase for `code`, or a generic one for its class."""
    _check_code(code)
    return REASON_PHRASES.get(code) or _CLASS_PHRASES[code // 100]


_check_code = check_status_code  # the SIP core's (RFC 3261 §7.2)


def _check_phrase(text: str) -> None:
    # Reason-Phrase = *(reserved / unreserved / escaped / UTF8-NONASCII / UTF8-CONT / SP / HTAB)
    if any(ch in "\r\n\0" for ch in text):
        raise ValueError("reason phrase must not contain CR, LF or NUL")


@dataclass(frozen=True)
class SipStatus:
    """A final SIP status to answer with; `contact` carries the new address of a 3xx."""

    code: int
    reason: str
    contact: str | None = None

    def __post_init__(self) -> None:
        _check_code(self.code)
        _check_phrase(self.reason)
        if self.contact is not None and self.code // 100 != 3:
            raise ValueError("only a 3xx response carries a new address (Contact)")

    @classmethod
    def of(cls, code: int, reason: str | None = None, contact: str | None = None) -> SipStatus:
        """Build with the standard reason phrase when `reason` is None."""
        return cls(code, reason if reason is not None else reason_phrase(code), contact)


@dataclass(frozen=True)
class XmppErrorInfo:
    """An XMPP stanza error: condition, RFC 6120 type, optional <text/>, optional new address.

    `new_address` is the character data of ``<gone/>`` or ``<redirect/>`` (RFC 6120 §8.3.3.5,
    §8.3.3.14) and is refused on any other condition.
    """

    condition: str
    type: XmppErrorType
    text: str | None = None
    new_address: str | None = None

    def __post_init__(self) -> None:
        if self.condition not in XMPP_CONDITIONS:
            raise ValueError(f"not an RFC 6120 stanza error condition: {self.condition!r}")
        if self.type not in _ERROR_TYPE_NAMES:
            raise ValueError(f"not an RFC 6120 error type: {self.type!r}")
        if self.new_address is not None and self.condition not in ("gone", "redirect"):
            raise ValueError("only <gone/> and <redirect/> carry a new address")
        if self.new_address == "":
            raise ValueError("new address must not be empty")

    @classmethod
    def of(
        cls, condition: str, text: str | None = None, new_address: str | None = None
    ) -> XmppErrorInfo:
        """Build with the RFC 6120 type of `condition`."""
        return cls(condition, xmpp_error_type(condition), text, new_address)


class MappingError(Exception):
    """An operation that cannot be mapped; carries the answer for both protocol edges.

    The SIP endpoint answers with `sip_status`; the XMPP component with `xmpp_condition`.
    """

    def __init__(self, reason: str, *, sip_status: int, xmpp_condition: str) -> None:
        _check_code(sip_status)
        if sip_status < 300:
            raise ValueError("a mapping error needs a failure status (>= 300)")
        if xmpp_condition not in XMPP_CONDITIONS:
            raise ValueError(f"not an RFC 6120 stanza error condition: {xmpp_condition!r}")
        super().__init__(reason)
        self.reason = reason
        self.sip_status = sip_status
        self.xmpp_condition = xmpp_condition

    def to_sip(self) -> SipStatus:
        """The final SIP response for this error (standard reason phrase)."""
        return SipStatus.of(self.sip_status)

    def to_xmpp(self) -> XmppErrorInfo:
        """The XMPP stanza error for this error, with the reason as <text/>."""
        return XmppErrorInfo.of(self.xmpp_condition, text=self.reason)


def xmpp_to_sip(
    condition: str,
    *,
    full_jid: bool,
    text: str | None = None,
    new_address: str | None = None,
) -> SipStatus:
    """RFC 7247 §7.1 Table 2: an XMPP error about a full or bare JID -> a SIP status.

    `text` (the XMPP <text/>) becomes the reason phrase when given; `new_address` is the
    character data of <gone/> / <redirect/> and becomes the Contact of the 3xx.
    """
    try:
        full_code, bare_code = XMPP_TO_SIP[condition]
    except KeyError:
        raise ValueError(f"not an RFC 6120 stanza error condition: {condition!r}") from None
    code = full_code if full_jid else bare_code
    contact = None
    if condition == "gone" and new_address:  # note (3): MUST 301 with a new address
        code, contact = 301, new_address
    elif condition == "redirect" and new_address:
        contact = new_address
    phrase = " ".join(text.split()) if text else None  # fold CR/LF/tabs into one line
    return SipStatus.of(code, phrase or None, contact)


def sip_to_xmpp(
    code: int, reason: str | None = None, *, new_address: str | None = None
) -> XmppErrorInfo:
    """RFC 7247 §7.2 Table 3: a SIP failure response (3xx-6xx) -> an XMPP stanza error.

    `reason` (the Reason-Phrase) becomes <text/>; `new_address` (the Contact of a 3xx) becomes
    the character data of <gone/> (301, MUST) or <redirect/>. A 410 never carries it (MUST NOT).
    """
    _check_code(code)
    if code < 300:
        raise ValueError(f"RFC 7247 §7 maps no 1xx/2xx response: {code}")
    condition = SIP_TO_XMPP.get(code) or SIP_CLASS_DEFAULTS[code // 100]
    address = new_address or None
    if code == 301 and address is None:
        condition = SIP_CLASS_DEFAULTS[3]  # <gone/> without the address would break note (1)
    if condition not in ("gone", "redirect") or code == 410:
        address = None
    return XmppErrorInfo.of(condition, text=reason or None, new_address=address)


# --- RFC 8048 / RFC 6665 subscription outcomes (DIGEST §7.3) ---------------------------------


class XmppNotice(enum.Enum):
    """What the X2S gateway tells the XMPP watcher when a SIP subscription ends."""

    NONE = "none"
    UNAVAILABLE = "unavailable"  # presence type='unavailable' from the contact
    UNSUBSCRIBED = "unsubscribed"  # authorization cancelled (RFC 6121 §3.2)


def refresh_failure_notice(code: int) -> XmppNotice:
    """DIGEST §7.3 design note for a `terminated`/`permanent` outcome: what XMPP sees.

    404/604 (no such user) and the permanent codes cancel the authorization; other
    terminating codes only make the contact unavailable until a later retry.
    """
    outcome = subscribe_response_outcome(code)
    if outcome == "permanent" or code in (404, 604):
        return XmppNotice.UNSUBSCRIBED
    if outcome == "terminated":
        return XmppNotice.UNAVAILABLE
    return XmppNotice.NONE


class Resubscribe(enum.Enum):
    """When to send a new SUBSCRIBE after NOTIFY `Subscription-State: terminated`."""

    NOW = "now"
    AFTER_RETRY_AFTER = "after-retry-after"  # honour retry-after if present, else any time
    IF_STILL_WANTED = "if-still-wanted"  # probe the XMPP user first (R8048-08)
    NEVER = "never"


@dataclass(frozen=True)
class TerminationAction:
    """The X2S reaction to a terminated subscription: when to retry, what XMPP is told.

    `notice` applies when no re-SUBSCRIBE happens (for IF_STILL_WANTED: when the probe says
    the user no longer wants presence).
    """

    resubscribe: Resubscribe
    notice: XmppNotice


# RFC 6665 §4.1.3 reason codes (R6665-09) -> action (DIGEST §7.3).
TERMINATION_ACTIONS: Mapping[str, TerminationAction] = MappingProxyType(
    {
        "deactivated": TerminationAction(Resubscribe.NOW, XmppNotice.NONE),
        "probation": TerminationAction(Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE),
        "giveup": TerminationAction(Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE),
        "timeout": TerminationAction(Resubscribe.IF_STILL_WANTED, XmppNotice.UNAVAILABLE),
        "rejected": TerminationAction(Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),
        "noresource": TerminationAction(Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),
        "invariant": TerminationAction(Resubscribe.NEVER, XmppNotice.UNSUBSCRIBED),
    }
)

# "No or unknown reason: MAY retry any time, honouring retry-after" (RFC 6665 §4.1.3).
_DEFAULT_TERMINATION = TerminationAction(Resubscribe.AFTER_RETRY_AFTER, XmppNotice.NONE)


def termination_action(reason: str | None) -> TerminationAction:
    """Action for NOTIFY `Subscription-State: terminated;reason=<reason>` (case-insensitive)."""
    if reason is None:
        return _DEFAULT_TERMINATION
    return TERMINATION_ACTIONS.get(reason.lower(), _DEFAULT_TERMINATION)


@dataclass(frozen=True)
class SubscriptionEnd:
    """The X2S decision when a SIP subscription ends: when to subscribe again, what the
    XMPP watcher is told, and the retry-after to honour (None: none that applies)."""

    resubscribe: Resubscribe
    notice: XmppNotice = XmppNotice.NONE
    retry_after: int | None = None

    @property
    def permanent(self) -> bool:
        return self.resubscribe is Resubscribe.NEVER


_NO_MORE = SubscriptionEnd(Resubscribe.NEVER)


def subscription_end(ended: Terminated) -> SubscriptionEnd:
    """DIGEST §7.3: the policy for a `gateway.sip.subscription.Terminated` event.

    Ended by us -> never again, nothing to say (an expiry still follows the ``timeout`` row).
    NOTIFY -> `termination_action` of its reason, retry-after only where that row honours it.
    Failure response -> `refresh_failure_notice` (no UNAVAILABLE before anything was
    available); never again where the watcher is told `unsubscribed`. Timer N -> retry, the
    contact unavailable if the subscription was established.
    """
    if ended.cause is TerminationCause.EXPIRED:
        t = termination_action("timeout")
        return SubscriptionEnd(t.resubscribe, t.notice)
    if ended.unsubscribing:
        return _NO_MORE
    if ended.cause is TerminationCause.NOTIFY:
        t = termination_action(ended.reason)
        honour = t.resubscribe is Resubscribe.AFTER_RETRY_AFTER
        return SubscriptionEnd(t.resubscribe, t.notice, ended.retry_after if honour else None)
    if ended.cause is TerminationCause.RESPONSE and ended.status is not None:
        notice = refresh_failure_notice(ended.status)
        outcome = subscribe_response_outcome(ended.status)
        if outcome in ("permanent", "terminated") and notice is XmppNotice.UNSUBSCRIBED:
            resubscribe = Resubscribe.NEVER
        else:
            resubscribe = Resubscribe.AFTER_RETRY_AFTER
        if not ended.established and notice is XmppNotice.UNAVAILABLE:
            notice = XmppNotice.NONE  # nothing was ever available
        return SubscriptionEnd(resubscribe, notice, ended.retry_after)
    if ended.cause is TerminationCause.TIMER_N:
        notice = XmppNotice.UNAVAILABLE if ended.established else XmppNotice.NONE
        return SubscriptionEnd(Resubscribe.AFTER_RETRY_AFTER, notice)
    return _NO_MORE  # UNSUBSCRIBED (we ended it before any dialog existed)

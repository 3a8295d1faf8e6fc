"""The neutral model: CPIM operations (RFC 3860 IM, RFC 3859 presence) as frozen dataclasses.

RFC 7247 §1 notes that interworking is done by direct protocol mappings, so these events are a
*superset* of the abstract CPIM model (DIGEST §0, §23.1): they carry what RFC 7572 / RFC 8048
need to restore on the far side (thread, subject languages, XMPP message type, GRUU/resource,
chat state, receipts, subscription state with reason).

Every event validates itself in ``__post_init__``: an invalid one cannot be built.

Addresses are `Address` values in the canonical form of DIGEST §23.4: the *decoded* Unicode
user (no %-encoding, no XEP-0106 escaping), the domain, and the instance (GRUU ``gr`` value /
XMPP resource). mappings.addresses converts them to and from SIP URIs and JIDs.

Presence documents: `NotifyOp.document` is typed ``object`` so this module does not depend on
mappings.pidf (written separately); the bridge narrows it with ``isinstance(doc,
PresenceDocument)``. `NotifyOp.body` keeps the raw bytes so a gateway can relay a PIDF body
unmodified (RFC 3859 §3.3 / R3859-04).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace

from mappings.errors import XMPP_CONDITIONS, MappingError

# RFC 3261 §8.1.1.6: a UAC SHOULD start Max-Forwards at 70.
DEFAULT_MAX_FORWARDS = 70
# RFC 3860 §3.2 / RFC 3859 §3.2: gateways should handle TransIDs and SubscriptIDs of up to 40
# bytes. Longer ids (SIP Call-IDs, XMPP ids) are kept verbatim; `fits_cpim_limit` tells.
CPIM_ID_LIMIT = 40

# BCP 47 language tag, loosely (RFC 5646 §2.1): 1*8ALPHA *("-" 1*8alphanum)
_LANG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
# RFC 2045 §5.1: type "/" subtype, both tokens; parameters follow ";".
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?:\s*;.*)?", re.DOTALL)


# Unicode general category Cc is exactly C0, DEL and C1 (fixed by Unicode's stability policy);
# one compiled search replaces a per-character `unicodedata.category` loop (issue 11).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # re parses the escapes (mypyc refuses surrogates)
_E164 = re.compile(r"\+[0-9]+")


def _check_text(value: str, name: str) -> None:
    """Non-empty, no control characters (ids, users, instances), encodable as UTF-8."""
    if not value:
        raise ValueError(f"{name} must not be empty")
    if _CONTROL.search(value) is not None:
        raise ValueError(f"{name} must not contain control characters")
    _check_encodable(value, name)


def _check_encodable(value: str, name: str) -> None:
    """No lone surrogates: the SIP parser keeps undecodable octets as surrogate escapes,
    which no XML stream can carry (XML 1.0 §2.2 Char) and UTF-8 cannot encode."""
    if not value.isascii() and _SURROGATE.search(value) is not None:  # ASCII: none
        raise ValueError(f"{name} is not valid UTF-8 text")


def _check_lang(lang: str | None) -> None:
    if lang is not None and not _LANG.fullmatch(lang):
        raise ValueError(f"not a language tag: {lang!r}")


def fits_cpim_limit(identifier: str) -> bool:
    """Whether an id fits the 40-byte TransID/SubscriptID size of RFC 3860/3859 §3.2."""
    return len(identifier.encode("utf-8")) <= CPIM_ID_LIMIT


@dataclass(frozen=True)
class Address:
    """Canonical identity (DIGEST §23.4): decoded user, domain, optional instance.

    `domain` is None only for a global telephone number (``tel:+15551234567``), whose user is
    then the number (``+`` and digits). The domain keeps its case but compares
    case-insensitively; user and instance compare exactly.
    """

    user: str | None
    domain: str | None = field(compare=False)  # compared through _domain_key
    instance: str | None = None
    _domain_key: str | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if self.user is not None:
            _check_text(self.user, "user")
        if self.domain is not None:
            _check_text(self.domain, "domain")
            object.__setattr__(self, "_domain_key", self.domain.casefold())
        elif self.user is None or not _E164.fullmatch(self.user):
            raise ValueError("an address without a domain must be a global number (+digits)")
        if self.instance is not None:
            _check_text(self.instance, "instance")

    @property
    def bare(self) -> Address:
        """The address without its instance (the AOR / bare JID)."""
        return Address(self.user, self.domain) if self.instance is not None else self


class ChatState(enum.Enum):
    """XEP-0085 §2 chat states."""

    ACTIVE = "active"
    COMPOSING = "composing"
    PAUSED = "paused"
    INACTIVE = "inactive"
    GONE = "gone"


class XmppMessageType(enum.Enum):
    """RFC 6121 §5.2.2 message types worth restoring (`error` is not an IM operation)."""

    NORMAL = "normal"
    CHAT = "chat"
    HEADLINE = "headline"
    GROUPCHAT = "groupchat"


@dataclass(frozen=True)
class Subject:
    """A subject with its language (RFC 3922 §4: lang MUST be mapped)."""

    text: str
    lang: str | None = None

    def __post_init__(self) -> None:
        _check_lang(self.lang)
        _check_encodable(self.text, "subject")


@dataclass(frozen=True)
class BodyPart:
    """One body part: media type (with parameters), raw content, optional language."""

    content_type: str
    content: bytes
    lang: str | None = None

    def __post_init__(self) -> None:
        if not _MEDIA_TYPE.fullmatch(self.content_type):
            raise ValueError(f"not a media type: {self.content_type!r}")
        _check_lang(self.lang)

    @property
    def media_type(self) -> str:
        """``type/subtype`` in lowercase, parameters removed."""
        return self.content_type.split(";", 1)[0].strip().lower()

    @classmethod
    def plain(cls, text: str, lang: str | None = None) -> BodyPart:
        """A ``text/plain; charset=utf-8`` part."""
        return cls("text/plain; charset=utf-8", text.encode("utf-8"), lang)


class ResponseKind(enum.Enum):
    """RFC 3860 §3.4.1 / RFC 3859 §3.4.1 response status ("indeterminant" sic)."""

    SUCCESS = "success"
    FAILURE = "failure"
    INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class ResponseStatus:
    """Outcome of an operation. A failure carries a SIP code and/or an XMPP condition."""

    kind: ResponseKind
    sip_code: int | None = None
    xmpp_condition: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        failure = self.kind is ResponseKind.FAILURE
        if failure != (self.sip_code is not None or self.xmpp_condition is not None):
            raise ValueError("exactly the failures carry a SIP code or an XMPP condition")
        if self.sip_code is not None and not 300 <= self.sip_code <= 699:
            raise ValueError(f"failure SIP code out of range 300..699: {self.sip_code}")
        if self.xmpp_condition is not None and self.xmpp_condition not in XMPP_CONDITIONS:
            raise ValueError(f"not an RFC 6120 stanza error condition: {self.xmpp_condition!r}")

    @classmethod
    def success(cls) -> ResponseStatus:
        return cls(ResponseKind.SUCCESS)

    @classmethod
    def indeterminate(cls) -> ResponseStatus:
        """Delegated without a future authoritative indication (SIP 202)."""
        return cls(ResponseKind.INDETERMINATE)

    @classmethod
    def failure(
        cls,
        sip_code: int | None = None,
        xmpp_condition: str | None = None,
        reason: str | None = None,
    ) -> ResponseStatus:
        return cls(ResponseKind.FAILURE, sip_code, xmpp_condition, reason)

    @classmethod
    def from_error(cls, error: MappingError) -> ResponseStatus:
        return cls.failure(error.sip_status, error.xmpp_condition, error.reason)


class TooManyHops(MappingError):
    """MaxForwards reached 0 (RFC 3860 §3.4.2): discard and fail; SIP 483."""

    def __init__(self) -> None:
        super().__init__("too many hops", sip_status=483, xmpp_condition="not-acceptable")


@dataclass(frozen=True)
class MessageOp:
    """RFC 3860 ``message`` operation, extended for RFC 7572 / XEP-0085 / XEP-0184 / IMDN.

    `trans_id` is the SIP transaction / XMPP stanza id, kept verbatim even beyond 40 bytes.
    `cpim_raw` is a signed message/cpim relayed without modification (RFC 3862 §9); when set,
    `parts` may be empty. `receipt_for` marks a delivery receipt acknowledging that message id.
    `markable` asks for a display notification (XEP-0333 ``<markable/>``, IMDN ``display``);
    `displayed_for` is the XEP-0333 displayed marker / IMDN ``displayed`` for that message id.
    At least one of parts, subjects, cpim_raw, chat_state, receipt_for or displayed_for
    must be present.
    """

    source: Address
    destination: Address
    trans_id: str
    parts: tuple[BodyPart, ...] = ()
    subjects: tuple[Subject, ...] = ()
    thread: str | None = None
    lang: str | None = None
    max_forwards: int = DEFAULT_MAX_FORWARDS
    xmpp_type: XmppMessageType | None = None
    cpim_raw: bytes | None = None
    receipt_request: bool = False
    receipt_for: str | None = None
    chat_state: ChatState | None = None
    markable: bool = False
    displayed_for: str | None = None

    def __post_init__(self) -> None:
        _check_text(self.trans_id, "trans_id")
        if self.thread is not None:
            _check_text(self.thread, "thread")
        if self.receipt_for is not None:
            _check_text(self.receipt_for, "receipt_for")
        if self.displayed_for is not None:
            _check_text(self.displayed_for, "displayed_for")
        _check_lang(self.lang)
        if self.max_forwards < 0:
            raise ValueError("max_forwards must not be negative")
        langs = [s.lang for s in self.subjects]
        if len(set(langs)) != len(langs):
            raise ValueError("subjects must have distinct languages (RFC 6121 §5.2.4)")
        if not (
            self.parts
            or self.subjects
            or self.cpim_raw is not None
            or self.chat_state is not None
            or self.receipt_for is not None
            or self.displayed_for is not None
        ):
            raise ValueError("a message carries content, a chat state, a receipt or a marker")

    def forwarded(self) -> MessageOp:
        """The operation relayed one hop further (RFC 3860 §3.4.2); TooManyHops at 0."""
        if self.max_forwards == 0:
            raise TooManyHops
        return replace(self, max_forwards=self.max_forwards - 1)

    def text(self) -> str | None:
        """The first text/plain part decoded as UTF-8, if any (charset other than UTF-8/ASCII
        is not decoded: RFC 3922 §4 SHOULD NOT map them)."""
        for part in self.parts:
            if part.media_type == "text/plain":
                charset = _charset(part.content_type)
                if charset in (None, "utf-8", "us-ascii"):
                    return part.content.decode("utf-8", errors="replace")
        return None


def _charset(content_type: str) -> str | None:
    m = re.search(r";\s*charset\s*=\s*\"?([^\";\s]+)", content_type, re.IGNORECASE)
    return m.group(1).lower() if m else None


@dataclass(frozen=True)
class MessageResponse:
    """RFC 3860 ``response(TransID, status)``: the TransID MUST equal the request's."""

    trans_id: str
    status: ResponseStatus

    def __post_init__(self) -> None:
        _check_text(self.trans_id, "trans_id")


# --- presence (RFC 3859) ------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscribeOp:
    """RFC 3859 ``subscribe(watcher, target, duration, SubscriptID, TransID)``.

    `duration` is seconds (SIP Expires), or None for a long-lived XMPP authorization that the
    X2S side refreshes itself (R8048-05). A duration of 0 is not a subscribe: use
    `UnsubscribeOp` (same SubscriptID) or `ProbeOp` (fetch, new SubscriptID).
    """

    watcher: Address
    target: Address
    subscript_id: str
    duration: int | None = None
    trans_id: str | None = None

    def __post_init__(self) -> None:
        _check_text(self.subscript_id, "subscript_id")
        if self.trans_id is not None:
            _check_text(self.trans_id, "trans_id")
        if self.duration is not None and self.duration <= 0:
            raise ValueError("duration must be positive (0 is unsubscribe or fetch)")


@dataclass(frozen=True)
class UnsubscribeOp:
    """Cancel: RFC 3859 subscribe with duration 0 and the *same* SubscriptID."""

    watcher: Address
    target: Address
    subscript_id: str
    trans_id: str | None = None

    def __post_init__(self) -> None:
        _check_text(self.subscript_id, "subscript_id")
        if self.trans_id is not None:
            _check_text(self.trans_id, "trans_id")


@dataclass(frozen=True)
class ProbeOp:
    """Fetch: RFC 3859 subscribe with duration 0 and a *new* SubscriptID (XMPP probe)."""

    watcher: Address
    target: Address
    trans_id: str | None = None

    def __post_init__(self) -> None:
        if self.trans_id is not None:
            _check_text(self.trans_id, "trans_id")


class SubState(enum.Enum):
    """RFC 6665 §8.2.3 substate-value."""

    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class SubscriptionState:
    """A ``Subscription-State`` value (RFC 6665 §4.1.3, §8.2.3).

    `expires` belongs to active/pending only (a receiver MUST ignore it on terminated, so the
    parser drops it); `reason` belongs to terminated only. `retry_after` is seconds.
    """

    state: SubState
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None

    def __post_init__(self) -> None:
        terminated = self.state is SubState.TERMINATED
        if self.expires is not None and (terminated or self.expires < 0):
            raise ValueError("expires is a non-negative count, on active/pending only")
        if self.reason is not None and (not terminated or not re.fullmatch(_TOKEN, self.reason)):
            raise ValueError("reason is a token, on terminated only")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must not be negative")


@dataclass(frozen=True)
class NotifyOp:
    """RFC 3859 ``notify(watcher, target, TransID, content)``.

    `document` is the parsed presence document (mappings.pidf.PresenceDocument, typed
    ``object`` to keep the modules independent) or None when the body is empty (RFC 8048:
    unknown/closed); `body`/`content_type` keep the raw body for unmodified relay.
    `state` is the SIP subscription state when the notify comes from or goes to SIP.
    """

    watcher: Address
    target: Address
    document: object | None = None
    body: bytes | None = None
    content_type: str | None = None
    state: SubscriptionState | None = None
    trans_id: str | None = None

    def __post_init__(self) -> None:
        if (self.body is None) != (self.content_type is None):
            raise ValueError("body and content_type go together")
        if self.content_type is not None and not _MEDIA_TYPE.fullmatch(self.content_type):
            raise ValueError(f"not a media type: {self.content_type!r}")
        if self.trans_id is not None:
            _check_text(self.trans_id, "trans_id")


@dataclass(frozen=True)
class SubscribeResponse:
    """RFC 3859 ``response(status, TransID, duration)``; duration may be shortened."""

    status: ResponseStatus
    trans_id: str | None = None
    duration: int | None = None

    def __post_init__(self) -> None:
        if self.duration is not None and self.duration < 0:
            raise ValueError("duration must not be negative")
        if self.duration is not None and self.status.kind is ResponseKind.FAILURE:
            raise ValueError("a failed subscribe has no duration")

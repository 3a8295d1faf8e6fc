"""RFC 6665 §4.2 notifier: the S2X gateway serving XMPP presence to one SIP watcher.

Sans-I/O: `check_subscribe` vets a SUBSCRIBE (489, 406, 423, shortened Expires);
`Notifier.accept` creates the subscription from it and returns the 200 and the immediate
NOTIFY (RFC 6665 §4.2.1.2). Transitions live in `TRANSITIONS`,
`(state, input) -> (next state, action kinds)`; a missing row absorbs the input.

    decision = check_subscribe(request, PACKAGES)      # SubscribeDecision | SipResponse
    sub, actions = Notifier.accept(request, decision, local_tag=t, contact=c, now=now)
    sub.authorize(now, document) / sub.update(now, document) / sub.reject(now)
    sub.receive_subscribe(refresh, now)                # in-dialog refresh or Expires: 0
    sub.receive_notify_response(resp, now) / sub.notify_timeout(now)
    sub.handle_timer(now)                              # expiry: final NOTIFY reason=timeout

Never 202 (R6665-14): every accepted SUBSCRIBE gets 200 with `Expires` <= the request's.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.sip.dialog import Dialog
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import ContentType, Event, NameAddr, parse_event
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.subscription import (
    NotifierAction,
    Removed,
    SendNotify,
    SendResponse,
    StateDocument,
)

__all__ = [
    "NOTIFY_REMOVAL_CODES",
    "PRESENCE",
    "TRANSITIONS",
    "NInput",
    "NState",
    "Notifier",
    "PackageConfig",
    "SubscribeDecision",
    "check_subscribe",
]


@dataclass(frozen=True)
class PackageConfig:
    """One event package we serve. Presence: RFC 3856 §6.1, §6.3, §6.4."""

    event: str = "presence"
    content_types: tuple[str, ...] = ("application/pidf+xml",)
    default_expires: int = 3600
    min_expires: int = 60
    max_expires: int = 86400

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        if not self.content_types:
            raise ValueError("a package needs at least one content type")


PRESENCE = MappingProxyType({"presence": PackageConfig()})

# A NOTIFY answered with one of these removes the subscription (RFC 6665 §4.2.2, R6665-20).
NOTIFY_REMOVAL_CODES = frozenset({404, 405, 410, 416, *range(480, 486), 489, 501, 604})


@dataclass(frozen=True)
class SubscribeDecision:
    """An acceptable SUBSCRIBE: the granted Expires (0 = fetch or unsubscribe) and the body
    type NOTIFYs will use (the first of ours that the Accept allows, RFC 3856 §6.8)."""

    package: PackageConfig
    event: Event
    expires: int
    content_type: str


def _accepts(ranges: tuple[ContentType, ...] | None, mime: str) -> bool:
    """Does Accept allow `mime`? Absent Accept means the package default (RFC 3856 §6.3);
    parameters other than q are ignored; q=0 means "not acceptable" (RFC 2616 §14.1)."""
    if ranges is None:
        return True
    return any(r.matches(mime) and not _q_zero(r.params.get("q")) for r in ranges)


def _q_zero(q: str | None) -> bool:
    return q is not None and q.replace("0", "").replace(".", "") == ""


def check_subscribe(
    request: SipRequest, packages: Mapping[str, PackageConfig] = PRESENCE
) -> SubscribeDecision | SipResponse:
    """RFC 6665 §4.2.1.1 checks, in order: Event missing or unknown -> 489 with
    Allow-Events; Accept without any of the package's types -> 406; 0 < Expires < 3600 and
    below the minimum -> 423 with Min-Expires; Expires above the maximum is shortened;
    absent -> the package default."""
    event = request.event
    package = None if event is None else packages.get(event.package)
    if event is None or package is None:
        allow = ("Allow-Events", ", ".join(sorted(packages)))
        return make_response(request, 489, headers=[allow])
    usable = [t for t in package.content_types if _accepts(request.accept, t)]
    if not usable:
        return make_response(request, 406)
    asked = request.expires
    if asked is None:
        asked = package.default_expires
    if 0 < asked < 3600 and asked < package.min_expires:
        return make_response(request, 423, headers=[("Min-Expires", str(package.min_expires))])
    return SubscribeDecision(package, event, min(asked, package.max_expires), usable[0])


class NState(enum.Enum):
    INIT = "init"
    PENDING = "pending"
    ACTIVE = "active"
    TERMINATED = "terminated"  # final NOTIFY sent, waiting for its answer
    REMOVED = "removed"


class NInput(enum.Enum):
    SUBSCRIBE = "subscribe"  # initial, authorization pending
    SUBSCRIBE_AUTHORIZED = "subscribe-authorized"
    REFRESH = "refresh"
    UNSUBSCRIBE = "unsubscribe"  # Expires: 0 (also an initial fetch)
    AUTHORIZE = "authorize"
    REJECT = "reject"  # policy ends it (rejected, noresource, deactivated...)
    UPDATE = "update"  # new state document
    EXPIRE = "expire"
    NOTIFY_OK = "notify-2xx"
    NOTIFY_REMOVE = "notify-removal"  # R6665-20 codes, or the transaction timed out
    NOTIFY_OTHER = "notify-other-failure"


class NDo(enum.Enum):
    RESPOND_200 = "200"
    NOTIFY = "notify"  # current state, expires=remaining
    NOTIFY_FINAL = "notify-final"  # terminated;reason=...
    REMOVE = "remove"


S, I = NState, NInput  # noqa: E741
_LIVE = (S.PENDING, S.ACTIVE)
_rows: dict[tuple[NState, NInput], tuple[NState, tuple[NDo, ...]]] = {
    (S.INIT, I.SUBSCRIBE): (S.PENDING, (NDo.RESPOND_200, NDo.NOTIFY)),
    (S.INIT, I.SUBSCRIBE_AUTHORIZED): (S.ACTIVE, (NDo.RESPOND_200, NDo.NOTIFY)),
    (S.INIT, I.UNSUBSCRIBE): (S.TERMINATED, (NDo.RESPOND_200, NDo.NOTIFY_FINAL)),  # fetch
    (S.PENDING, I.AUTHORIZE): (S.ACTIVE, (NDo.NOTIFY,)),  # RFC 3856 §6.6.2
    (S.PENDING, I.UPDATE): (S.PENDING, ()),  # kept for later; nothing leaks while pending
    (S.ACTIVE, I.UPDATE): (S.ACTIVE, (NDo.NOTIFY,)),
    **{
        (s, i): row
        for s in _LIVE
        for i, row in (
            (I.REFRESH, (s, (NDo.RESPOND_200, NDo.NOTIFY))),  # R6665-15
            (I.UNSUBSCRIBE, (S.TERMINATED, (NDo.RESPOND_200, NDo.NOTIFY_FINAL))),
            (I.REJECT, (S.TERMINATED, (NDo.NOTIFY_FINAL,))),
            (I.EXPIRE, (S.TERMINATED, (NDo.NOTIFY_FINAL,))),  # R6665-19
            (I.NOTIFY_OK, (s, ())),
            (I.NOTIFY_OTHER, (s, ())),  # other failures leave it in place
            (I.NOTIFY_REMOVE, (S.REMOVED, (NDo.REMOVE,))),  # R6665-20
        )
    },
    **{
        (S.TERMINATED, i): (S.REMOVED, (NDo.REMOVE,))
        for i in (I.NOTIFY_OK, I.NOTIFY_REMOVE, I.NOTIFY_OTHER)
    },
}
TRANSITIONS = MappingProxyType(_rows)
del S, I


@dataclass
class _Ctx:
    now: float
    request: SipRequest | None = None  # the SUBSCRIBE being answered
    expires: int = 0
    reason: str = "timeout"
    retry_after: int | None = None
    final_document: StateDocument | None = None
    status: int | None = None


@dataclass(slots=True)  # 100,000 of them are held at once (docs/performance.md)
class Notifier:
    """One subscription we serve. Mutate only through the methods."""

    dialog: Dialog
    event: Event
    content_type: str
    package: PackageConfig
    state: NState = NState.INIT
    expires_at: float = 0.0
    document: StateDocument | None = None
    final_cseq: int | None = None  # CSeq of the terminated NOTIFY
    removed_reason: str | None = field(default=None)

    @classmethod
    def accept(
        cls,
        request: SipRequest,
        decision: SubscribeDecision,
        *,
        local_tag: str,
        contact: NameAddr,
        now: float,
        authorized: bool = False,
        document: StateDocument | None = None,
        tls: bool = False,
    ) -> tuple[Notifier, list[NotifierAction]]:
        """Create the subscription from an initial SUBSCRIBE that passed `check_subscribe`:
        the 200 (To tag `local_tag`, Contact, Expires) and the first NOTIFY (pending, or
        active when `authorized`), or for Expires 0 a fetch: 200 + NOTIFY terminated."""
        dialog = Dialog.as_uas(request, local_tag, contact=contact, tls=tls)
        sub = cls(dialog, decision.event, decision.content_type, decision.package)
        sub.document = document
        if decision.expires == 0:
            kind = NInput.UNSUBSCRIBE
        else:
            kind = NInput.SUBSCRIBE_AUTHORIZED if authorized else NInput.SUBSCRIBE
        ctx = _Ctx(now, request=request, expires=decision.expires, final_document=document)
        return sub, sub._step(kind, ctx)

    # ------------------------------------------------------------ inputs

    def receive_subscribe(
        self, request: SipRequest, now: float, *, final_document: StateDocument | None = None
    ) -> list[NotifierAction]:
        """An in-dialog SUBSCRIBE: refresh (200 + NOTIFY with the current state) or
        Expires 0 (200 + final NOTIFY terminated;reason=timeout with `final_document`).
        Out-of-order CSeq -> 500, other event -> 489, too short -> 423 (RFC 6665
        §4.2.1.4), after the subscription ended -> 481."""
        if self.state not in (NState.PENDING, NState.ACTIVE):
            return [SendResponse(make_response(request, 481))]
        try:
            self.dialog.accept_remote_request(request)
        except RemoteProtocolError as exc:
            return [SendResponse(make_response(request, exc.status))]
        decision = check_subscribe(request, {self.package.event: self.package})
        if isinstance(decision, SipResponse):
            return [SendResponse(decision)]
        if not decision.event.matches(self.event):
            return [SendResponse(make_response(request, 489))]
        self.content_type = decision.content_type
        kind = NInput.UNSUBSCRIBE if decision.expires == 0 else NInput.REFRESH
        ctx = _Ctx(now, request=request, expires=decision.expires, final_document=final_document)
        return self._step(kind, ctx)

    def authorize(self, now: float, document: StateDocument | None = None) -> list[NotifierAction]:
        """The XMPP contact approved (`subscribed`, R8048-10): NOTIFY active."""
        if document is not None:
            self.document = document
        return self._step(NInput.AUTHORIZE, _Ctx(now))

    def update(self, now: float, document: StateDocument) -> list[NotifierAction]:
        """New state: NOTIFY at once when active; kept (not sent) while pending."""
        self.document = document
        return self._step(NInput.UPDATE, _Ctx(now))

    def reject(
        self,
        now: float,
        reason: str = "rejected",
        *,
        retry_after: int | None = None,
        document: StateDocument | None = None,
    ) -> list[NotifierAction]:
        """End it by policy: NOTIFY terminated;reason=`reason` (R8048-11: `rejected`)."""
        ctx = _Ctx(now, reason=reason, retry_after=retry_after, final_document=document)
        return self._step(NInput.REJECT, ctx)

    def handle_timer(
        self, now: float, *, final_document: StateDocument | None = None
    ) -> list[NotifierAction]:
        """Expiry without refresh: final NOTIFY terminated;reason=timeout (R6665-19)."""
        if self.state in (NState.PENDING, NState.ACTIVE) and now >= self.expires_at:
            return self._step(NInput.EXPIRE, _Ctx(now, final_document=final_document))
        return []

    def next_deadline(self) -> float | None:
        return self.expires_at if self.state in (NState.PENDING, NState.ACTIVE) else None

    def receive_notify_response(self, response: SipResponse, now: float) -> list[NotifierAction]:
        """The final answer to one of our NOTIFYs (RFC 6665 §4.2.2)."""
        if response.is_provisional:
            return []
        cseq = response.cseq
        if self.state is NState.TERMINATED and (cseq is None or cseq.seq != self.final_cseq):
            return []  # an earlier NOTIFY's answer; we wait for the final one
        if response.is_success:
            kind = NInput.NOTIFY_OK
        elif response.status in NOTIFY_REMOVAL_CODES:
            kind = NInput.NOTIFY_REMOVE
        else:
            kind = NInput.NOTIFY_OTHER
        return self._step(kind, _Ctx(now, status=response.status))

    def notify_timeout(self, now: float) -> list[NotifierAction]:
        """The NOTIFY transaction timed out (Timer F): remove (RFC 6665 §4.2.2)."""
        return self._step(NInput.NOTIFY_REMOVE, _Ctx(now, reason="notify-timeout"))

    # ------------------------------------------------------------ the engine

    def _step(self, kind: NInput, ctx: _Ctx) -> list[NotifierAction]:
        row = TRANSITIONS.get((self.state, kind))
        if row is None:
            return []
        self.state, todo = row
        out: list[NotifierAction] = []
        for do in todo:
            _HANDLERS[do](self, ctx, out)
        return out

    def _do_respond_200(self, ctx: _Ctx, out: list[NotifierAction]) -> None:
        assert ctx.request is not None
        self.expires_at = ctx.now + ctx.expires
        headers = [("Expires", str(ctx.expires))]
        if self.dialog.local_target is not None:
            headers.append(("Contact", str(self.dialog.local_target)))
        response = make_response(ctx.request, 200, to_tag=self.dialog.id.local_tag, headers=headers)
        out.append(SendResponse(response))

    def _notify(self, state: str, document: StateDocument | None) -> SendNotify:
        """NOTIFY (RFC 6665 §8.1.2 / §4.2.2): Event as subscribed, Subscription-State,
        Content-Type when there is a body."""
        headers = [("Event", str(self.event)), ("Subscription-State", state)]
        body = b""
        if document is not None and document.body:
            body = document.body
            headers.append(("Content-Type", document.content_type or self.content_type))
        request = self.dialog.new_request("NOTIFY", headers=headers, body=body)
        return SendNotify(request, state)

    def _do_notify(self, ctx: _Ctx, out: list[NotifierAction]) -> None:
        remaining = max(0, int(self.expires_at - ctx.now))  # never lengthened (R6665-18)
        doc = self.document if self.state is NState.ACTIVE else None
        out.append(self._notify(f"{self.state.value};expires={remaining}", doc))

    def _do_notify_final(self, ctx: _Ctx, out: list[NotifierAction]) -> None:
        state = f"terminated;reason={ctx.reason}"
        if ctx.retry_after is not None:
            state += f";retry-after={ctx.retry_after}"
        note = self._notify(state, ctx.final_document)
        self.final_cseq = self.dialog.local_cseq
        self.removed_reason = ctx.reason
        out.append(note)

    def _do_remove(self, ctx: _Ctx, out: list[NotifierAction]) -> None:
        if self.removed_reason is not None:  # our final NOTIFY went out
            reason = self.removed_reason
        elif ctx.status is not None:
            reason = "notify-failed"
        else:
            reason = ctx.reason
        out.append(Removed(reason, ctx.status))

    # ------------------------------------------------------------ persistence

    def to_record(self) -> dict[str, Any]:
        """JSON-compatible state; `expires_at` is absolute in the caller's clock."""
        return {
            "dialog": self.dialog.to_record(),
            "event": str(self.event),
            "content_type": self.content_type,
            "package": self.package.event,
            "state": self.state.value,
            "expires_at": self.expires_at,
            "last_notify_cseq": self.dialog.local_cseq,
            "document": None if self.document is None else _doc_record(self.document),
            "final_cseq": self.final_cseq,
            "removed_reason": self.removed_reason,
        }

    @classmethod
    def from_record(
        cls, record: dict[str, Any], packages: Mapping[str, PackageConfig] = PRESENCE
    ) -> Notifier:
        doc = record["document"]
        return cls(
            dialog=Dialog.from_record(record["dialog"]),
            event=parse_event(record["event"]),
            content_type=record["content_type"],
            package=packages[record["package"]],
            state=NState(record["state"]),
            expires_at=record["expires_at"],
            document=None if doc is None else _doc_from_record(doc),
            final_cseq=record["final_cseq"],
            removed_reason=record["removed_reason"],
        )


def _doc_record(doc: StateDocument) -> dict[str, Any]:
    return {"body": base64.b64encode(doc.body).decode("ascii"), "content_type": doc.content_type}


def _doc_from_record(record: dict[str, Any]) -> StateDocument:
    return StateDocument(base64.b64decode(record["body"]), record["content_type"])


_Handler = Callable[[Notifier, _Ctx, list[NotifierAction]], None]
_HANDLERS: MappingProxyType[NDo, _Handler] = MappingProxyType(
    {do: getattr(Notifier, f"_do_{do.name.lower()}") for do in NDo}
)

"""RFC 6665 §4.1 subscriber: the X2S gateway watching one SIP presentity (RFC 3856).

Sans-I/O (STYLE.md): every method takes `now` and returns a list of actions (frozen
dataclasses); the transitions are one table, `TRANSITIONS`, of
`(state, input) -> (next state, action kinds)`. A missing row means the input is absorbed.

    sub = Subscriber(target, local=watcher, remote=presentity, contact=our_contact)
    actions = sub.subscribe(now)               # [SendSubscribe(...)]
    actions = sub.receive_response(resp, now)  # final response to the last SUBSCRIBE
    actions = sub.receive_notify(notify, now)  # always holds one AnswerNotify
    actions = sub.handle_timer(now)            # when now >= sub.next_deadline()
    actions = sub.unsubscribe(now)

Decisions (docs/sip-stack.md, "Dialogs and subscriptions"):

* The dialog usage is created by the first NOTIFY (RFC 6665 §4.4.1), never by the 2xx,
  which may come before or after it and only tells the granted Expires.
* Forking: presence allows one dialog per SUBSCRIBE (RFC 3856 §6.9). The first NOTIFY wins;
  a NOTIFY from any other dialog gets 481 (RFC 6665 §5.4.9), as does every NOTIFY after
  Timer N fired or after the subscription ended.
* Refresh: at `now + max(remaining - 64*T1, remaining / 2)` (`subscription.refresh_delay`).
* 423 retries with Min-Expires only if that is larger than what we asked (no loop); 481 to a
  refresh starts a new dialog at once (transient, RFC 8048 §5.2); other failures follow
  `subscription.subscribe_response_outcome`.
* `Terminated` reports what happened (cause, reason, status, retry-after, whether the
  subscription was established, whether we were ending it); what to tell XMPP and whether
  to subscribe again is gateway policy (`mappings.errors.subscription_end`).
* An XMPP `unsubscribe` before the first NOTIFY ends the attempt locally; a later NOTIFY gets
  481, which makes the notifier remove its subscription (RFC 6665 §4.2.2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gateway.sip.dialog import MAX_FORWARDS, Dialog
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import Event, NameAddr, parse_name_addr
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.subscriber_table import (
    OUTCOME_INPUTS,
    SUBSTATE_INPUTS,
    TRANSITIONS,
    Do,
    SubInput,
    SubState,
)
from gateway.sip.subscription import (
    Action,
    AnswerNotify,
    Authorized,
    Pending,
    ScheduleRefresh,
    SendSubscribe,
    StateDocument,
    Terminated,
    TerminationCause,
    new_id,
    refresh_delay,
    retry_after,
    subscribe_response_outcome,
)
from gateway.sip.timers import TimerConfig
from gateway.sip.uri import Uri, parse_uri

__all__ = ["TRANSITIONS", "Do", "SubInput", "SubState", "Subscriber", "SubscriberConfig"]


@dataclass(frozen=True)
class SubscriberConfig:
    event: str = "presence"  # RFC 3856 §6.1
    accept: tuple[str, ...] = ("application/pidf+xml",)  # RFC 3856 §6.3 (MUST list it)
    expires: int = 3600  # requested duration (RFC 3856 §6.4 default)
    timers: TimerConfig = field(default_factory=TimerConfig)
    headers: tuple[tuple[str, str], ...] = ()  # the caller's own, on every SUBSCRIBE

    @property
    def timer_n(self) -> float:
        return 64 * self.timers.t1  # RFC 6665 §4.1.2.4

    def __post_init__(self) -> None:
        if self.expires <= 0:
            raise ValueError("expires must be positive")


@dataclass
class _Ctx:
    """What the action kinds of one step need to see."""

    now: float
    response: SipResponse | None = None
    notify: SipRequest | None = None
    terminated: Terminated | None = None


class Subscriber:
    """One subscription from the gateway (as `local`) to `remote` at `target`."""

    def __init__(
        self,
        target: Uri,
        *,
        local: NameAddr,
        remote: NameAddr,
        contact: NameAddr,
        config: SubscriberConfig | None = None,
        ids: Callable[[], str] = new_id,
    ) -> None:
        self.config = config or SubscriberConfig()
        self.target = target
        self.local = local
        self.remote = remote
        self.contact = contact
        self._new_id = ids
        self.state = SubState.INIT
        self.call_id = ids()
        self.local_tag = ids()
        self.cseq = 0  # out-of-dialog CSeq for this Call-ID
        self.dialog: Dialog | None = None
        self.requested = self.config.expires  # what the next SUBSCRIBE asks for
        self.expires_at: float | None = None
        self.refresh_at: float | None = None
        self.timer_n_at: float | None = None
        self.authorized = False  # sticky: `Authorized` is reported once
        self.unsubscribing = False
        self.last_request: SipRequest | None = None

    # ------------------------------------------------------------ inputs

    def subscribe(self, now: float) -> list[Action]:
        """Send the initial SUBSCRIBE (or, after termination, a new one on a new dialog)."""
        return self._step(SubInput.SUBSCRIBE, _Ctx(now))

    def unsubscribe(self, now: float) -> list[Action]:
        """SUBSCRIBE Expires: 0 in the dialog (RFC 6665 §4.1.2.3); the final NOTIFY ends it."""
        return self._step(SubInput.UNSUBSCRIBE, _Ctx(now))

    def send_with_credentials(
        self, credentials: Sequence[tuple[str, str]], now: float
    ) -> list[Action]:
        """Resend the last SUBSCRIBE with (Proxy-)Authorization after a 401/407 (RFC 3261
        §22.2; next CSeq, Timer N restarted). The glue answers challenges with
        `gateway.sip.auth` and does not pass the 401/407 to `receive_response`."""
        last = self.last_request
        if last is None or self.state is SubState.TERMINATED:
            return []
        out: list[Action] = []
        self._send(_Ctx(now), out, last.expires or 0, extra=credentials)
        return out

    @property
    def key(self) -> tuple[str, str]:
        """(Call-ID, local tag): the half dialog key NOTIFYs are routed by (`DialogTable`)."""
        return self.call_id, self.local_tag

    def receive_response(self, response: SipResponse, now: float) -> list[Action]:
        """A final response to the last SUBSCRIBE we sent; others are ignored."""
        last = self.last_request
        if (
            response.is_provisional
            or last is None
            or response.call_id != last.call_id
            or response.cseq != last.cseq
        ):
            return []
        if (
            response.is_success
            and self.dialog is not None
            and response.to_tag != self.dialog.id.remote_tag
        ):
            return []  # a 2xx from another fork than the NOTIFY's: ignored (§5.4.9)
        outcome = subscribe_response_outcome(response.status)
        kind = OUTCOME_INPUTS[outcome]
        if kind is SubInput.MIN_EXPIRES and (response.min_expires or 0) <= self.requested:
            kind = SubInput.RETRY_LATER  # no usable Min-Expires: do not loop
        if self.unsubscribing and kind is not SubInput.OK:
            kind = SubInput.FAILED  # we wanted out anyway
        if response.is_success and self.dialog is not None:
            self.dialog.accept_response(response)
        ctx = _Ctx(now, response=response)
        if not response.is_success:
            ctx.terminated = self._ended(
                TerminationCause.RESPONSE, status=response.status, retry=retry_after(response)
            )
        return self._step(kind, ctx)

    def receive_notify(self, notify: SipRequest, now: float) -> list[Action]:
        """A NOTIFY routed to this subscription (Call-ID and To tag = ours). The result
        always holds exactly one `AnswerNotify`."""
        status = self._check_notify(notify)
        if status is not None:
            return [self._answer(notify, status)]
        state = notify.subscription_state
        assert state is not None  # checked above
        kind = SUBSTATE_INPUTS.get(state.state, SubInput.NOTIFY_OTHER)
        if self.state in (SubState.INIT, SubState.TERMINATED):
            return self._step(kind, _Ctx(now, notify=notify))
        if self.dialog is None:
            assert self.last_request is not None
            self.dialog = Dialog.as_uac(self.last_request, notify)
        elif notify.from_tag != self.dialog.id.remote_tag:
            return [self._answer(notify, 481)]  # second dialog (RFC 3856 §6.9)
        else:
            try:
                self.dialog.accept_remote_request(notify)
            except RemoteProtocolError as exc:
                return [self._answer(notify, exc.status)]
        ctx = _Ctx(now, notify=notify)
        if kind is SubInput.NOTIFY_TERMINATED:
            ctx.terminated = self._ended(
                TerminationCause.NOTIFY, reason=state.reason, retry=state.retry_after
            )
        return self._step(kind, ctx)

    def handle_timer(self, now: float) -> list[Action]:
        """Fire whatever is due: Timer N, then expiry, then the refresh."""
        if self.timer_n_at is not None and now >= self.timer_n_at:
            self.timer_n_at = None
            return self._step(
                SubInput.TIMER_N, _Ctx(now, terminated=self._ended(TerminationCause.TIMER_N))
            )
        expires_at = self.expires_at
        if expires_at is not None and self.timer_n_at is None and now >= expires_at:
            ended = self._ended(TerminationCause.EXPIRED)
            return self._step(SubInput.EXPIRED, _Ctx(now, terminated=ended))
        if self.refresh_at is not None and now >= self.refresh_at:
            self.refresh_at = None
            return self._step(SubInput.REFRESH_DUE, _Ctx(now))
        return []

    def next_deadline(self) -> float | None:
        times = [t for t in (self.timer_n_at, self.refresh_at) if t is not None]
        if self.expires_at is not None and self.state in (SubState.PENDING, SubState.ACTIVE):
            times.append(self.expires_at)
        return min(times, default=None)

    # ------------------------------------------------------------ NOTIFY checks

    def _check_notify(self, notify: SipRequest) -> int | None:
        """RFC 6665 §4.1.3 / §8.2.1: 481 for another subscription, 400 without Event or
        Subscription-State, 489 for another event package."""
        if notify.call_id != self.call_id or notify.to_tag != self.local_tag:
            return 481
        if notify.event is None or notify.subscription_state is None:
            return 400
        if not notify.event.matches(Event(self.config.event)):
            return 489
        return None

    def _answer(self, notify: SipRequest, status: int) -> AnswerNotify:
        return AnswerNotify(status, make_response(notify, status))

    # ------------------------------------------------------------ terminations

    def _ended(
        self,
        cause: TerminationCause,
        *,
        reason: str | None = None,
        status: int | None = None,
        retry: int | None = None,
    ) -> Terminated:
        """The facts of an ending, taken before the transition (`self.state` is the old one)."""
        return Terminated(
            cause,
            reason,
            status,
            retry,
            established=self.state in (SubState.PENDING, SubState.ACTIVE),
            unsubscribing=self.unsubscribing,
        )

    # ------------------------------------------------------------ the engine

    def _step(self, kind: SubInput, ctx: _Ctx) -> list[Action]:
        row = TRANSITIONS.get((self.state, kind))
        if row is None:
            return []
        self.state, todo = row
        out: list[Action] = []
        for do in todo:
            _HANDLERS[do](self, ctx, out)
        return out

    def _send(
        self,
        ctx: _Ctx,
        out: list[Action],
        expires: int,
        new_dialog: bool = False,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Build and record a SUBSCRIBE; Timer N starts (RFC 6665 §4.1.2.2, §4.1.2.4)."""
        headers = [*self._event_headers(expires), *extra]
        if self.dialog is None:
            request = self._out_of_dialog(headers)
        else:
            request = self.dialog.new_request("SUBSCRIBE", headers=headers)
        self.last_request = request
        self.timer_n_at = ctx.now + self.config.timer_n
        out.append(SendSubscribe(request, expires, new_dialog))

    def _out_of_dialog(self, extra: Sequence[tuple[str, str]]) -> SipRequest:
        """Initial SUBSCRIBE (RFC 3261 §8.1.1, RFC 6665 §4.1.2.1, RFC 3856 §6.3)."""
        self.cseq += 1
        headers = [
            ("Max-Forwards", str(MAX_FORWARDS)),
            ("From", str(self.local.with_tag(self.local_tag))),
            ("To", str(self.remote)),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} SUBSCRIBE"),
            ("Contact", str(self.contact)),
            *extra,
        ]
        return SipRequest("SUBSCRIBE", self.target, Headers(headers))

    def _event_headers(self, expires: int) -> list[tuple[str, str]]:
        return [
            ("Event", self.config.event),
            ("Accept", ", ".join(self.config.accept)),
            ("Expires", str(expires)),
            *self.config.headers,
        ]

    def _do_send_initial(self, ctx: _Ctx, out: list[Action]) -> None:
        self.requested = self.config.expires
        self._send(ctx, out, self.requested)

    def _do_send_new_dialog(self, ctx: _Ctx, out: list[Action]) -> None:
        self.call_id, self.local_tag, self.cseq = self._new_id(), self._new_id(), 0
        self.dialog = None
        self.expires_at = self.refresh_at = None
        self.unsubscribing = False
        self.requested = self.config.expires
        self._send(ctx, out, self.requested, True)

    def _do_send_refresh(self, ctx: _Ctx, out: list[Action]) -> None:
        self._send(ctx, out, self.requested)

    def _do_send_unsubscribe(self, ctx: _Ctx, out: list[Action]) -> None:
        self.unsubscribing = True
        self.refresh_at = None
        self._send(ctx, out, 0)

    def _do_send_min_expires(self, ctx: _Ctx, out: list[Action]) -> None:
        assert ctx.response is not None and ctx.response.min_expires is not None
        self.requested = ctx.response.min_expires
        self._send(ctx, out, self.requested)

    def _do_note_expires(self, ctx: _Ctx, out: list[Action]) -> None:
        assert ctx.response is not None
        if self.unsubscribing:
            return
        granted = ctx.response.expires
        granted = self.requested if granted is None else min(granted, self.requested)
        self.expires_at = ctx.now + granted
        if self.state in (SubState.PENDING, SubState.ACTIVE):
            self._schedule_refresh(ctx.now, out)

    def _do_schedule(self, ctx: _Ctx, out: list[Action]) -> None:
        assert ctx.notify is not None and ctx.notify.subscription_state is not None
        given = ctx.notify.subscription_state.expires
        if given is not None:
            self.expires_at = ctx.now + given  # authoritative (RFC 6665 §4.1.3)
        elif self.expires_at is None:
            self.expires_at = ctx.now + self.requested
        if not self.unsubscribing:
            self._schedule_refresh(ctx.now, out)

    def _schedule_refresh(self, now: float, out: list[Action]) -> None:
        assert self.expires_at is not None
        self.refresh_at = now + refresh_delay(self.expires_at - now, self.config.timer_n)
        out.append(ScheduleRefresh(self.refresh_at))

    def _do_answer_200(self, ctx: _Ctx, out: list[Action]) -> None:
        assert ctx.notify is not None
        out.append(self._answer(ctx.notify, 200))

    def _do_answer_481(self, ctx: _Ctx, out: list[Action]) -> None:
        assert ctx.notify is not None
        out.append(self._answer(ctx.notify, 481))

    def _do_stop_n(self, ctx: _Ctx, out: list[Action]) -> None:
        self.timer_n_at = None

    def _do_authorized(self, ctx: _Ctx, out: list[Action]) -> None:
        if not self.authorized:
            self.authorized = True
            out.append(Authorized())

    def _do_pending(self, ctx: _Ctx, out: list[Action]) -> None:
        out.append(Pending())

    def _do_document(self, ctx: _Ctx, out: list[Action]) -> None:
        assert ctx.notify is not None
        if ctx.notify.body:
            ctype = ctx.notify.content_type
            out.append(StateDocument(ctx.notify.body, None if ctype is None else ctype.mime))

    def _do_terminate(self, ctx: _Ctx, out: list[Action]) -> None:
        ended = ctx.terminated or Terminated(TerminationCause.UNSUBSCRIBED, unsubscribing=True)
        self.dialog = None
        self.timer_n_at = self.refresh_at = self.expires_at = None
        out.append(ended)

    # ------------------------------------------------------------ persistence

    def to_record(self) -> dict[str, Any]:
        """JSON-compatible state; times are absolute in the caller's clock (use wall-clock
        seconds for subscriptions that must survive a restart)."""
        return {
            "state": self.state.value,
            "target": str(self.target),
            "local": str(self.local),
            "remote": str(self.remote),
            "contact": str(self.contact),
            "call_id": self.call_id,
            "local_tag": self.local_tag,
            "cseq": self.cseq,
            "dialog": None if self.dialog is None else self.dialog.to_record(),
            "requested": self.requested,
            "expires_at": self.expires_at,
            "refresh_at": self.refresh_at,
            "timer_n_at": self.timer_n_at,
            "authorized": self.authorized,
            "unsubscribing": self.unsubscribing,
        }

    @classmethod
    def from_record(
        cls,
        record: dict[str, Any],
        *,
        config: SubscriberConfig | None = None,
        ids: Callable[[], str] = new_id,
    ) -> Subscriber:
        sub = cls(
            parse_uri(record["target"]),
            local=parse_name_addr(record["local"]),
            remote=parse_name_addr(record["remote"]),
            contact=parse_name_addr(record["contact"]),
            config=config,
            ids=ids,
        )
        sub.state = SubState(record["state"])
        sub.call_id, sub.local_tag, sub.cseq = (
            record["call_id"],
            record["local_tag"],
            record["cseq"],
        )
        dialog = record["dialog"]
        sub.dialog = None if dialog is None else Dialog.from_record(dialog)
        sub.requested = record["requested"]
        sub.expires_at, sub.refresh_at = record["expires_at"], record["refresh_at"]
        sub.timer_n_at = record["timer_n_at"]
        sub.authorized, sub.unsubscribing = record["authorized"], record["unsubscribing"]
        if sub.state is SubState.NOTIFY_WAIT and sub.dialog is None:
            # The SUBSCRIBE in flight was lost with the old process: rebuild it so that a
            # NOTIFY arriving now can still create the dialog.
            sub.last_request = sub._rebuild_last()
        return sub

    def _rebuild_last(self) -> SipRequest:
        self.cseq -= 1
        return self._out_of_dialog(self._event_headers(self.requested))


_Handler = Callable[[Subscriber, _Ctx, list[Action]], None]
_HANDLERS: MappingProxyType[Do, _Handler] = MappingProxyType(
    {do: getattr(Subscriber, f"_do_{do.name.lower()}") for do in Do}
)

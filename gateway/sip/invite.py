"""The INVITE dialog usage (RFC 3261 §13-§15, RFC 3264 §8, RFC 6026) as a pure machine.

One `InviteSession` is one session, in either role: the gateway answering an INVITE
(UAS) or sending one (UAC). Its phase changes only through `PHASES`, a table
`(phase, input) -> phase`; a pair missing from it is an input the phase ignores (a late
ACK, a 1xx after the final response). Time is an argument (`now`) and what the glue must
do comes out as frozen dataclasses (`SendAck`, `SendBye`, `SendCancel`, `Resend2xx`,
`Ended`). The SIP transactions stay in `gateway.sip.transaction_layer`; this machine keeps
what lies above them: the dialog (`gateway.sip.dialog.Dialog`), the 2xx retransmitted
until its ACK (§13.3.1.4), the CANCEL sent once a provisional came (§9.1), the
offer/answer state of re-INVITEs (RFC 3264 §8, §4) and the checks of in-dialog requests
(§12.2.2, §14.2).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from gateway.sip.dialog import Dialog
from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import NameAddr
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.timers import TimerConfig

__all__ = [
    "FALLBACK_STATUSES",
    "PHASES",
    "Action",
    "EndReason",
    "Ended",
    "InDialog",
    "Input",
    "InviteSession",
    "Phase",
    "Reoffer",
    "Reply",
    "Resend2xx",
    "Role",
    "SendAck",
    "SendBye",
    "SendCancel",
    "ack_for",
]

# RFC 7573 §4 (and issue 18): a SIP peer answering these to our INVITE does not do MSRP
# sessions; the gateway falls back to pager mode (RFC 7572).
FALLBACK_STATUSES = frozenset({415, 488, 606})


class Role(enum.Enum):
    UAS = "uas"
    UAC = "uac"


class Phase(enum.Enum):
    OFFERED = "offered"  # UAS: INVITE received, no final response yet
    CALLING = "calling"  # UAC: INVITE sent, nothing received
    EARLY = "early"  # UAC: a provisional response received
    CANCELLING = "cancelling"  # UAC: CANCEL wanted (sent once a 1xx came, §9.1)
    ACCEPTED = "accepted"  # UAS: 2xx sent, retransmitted until its ACK (§13.3.1.4)
    CONFIRMED = "confirmed"  # the session is up
    ENDING = "ending"  # BYE sent, its response awaited
    ENDED = "ended"


class Input(enum.Enum):
    ANSWER = "2xx sent"  # UAS
    REFUSE = "failure sent"  # UAS
    CANCEL_IN = "CANCEL received"  # UAS (the layer answered 487)
    ACK = "ACK received"  # UAS
    ACK_TIMEOUT = "no ACK for 64*T1"  # UAS, §13.3.1.4
    PROVISIONAL = "1xx received"  # UAC
    SUCCESS = "2xx received"  # UAC
    FAILURE = "3xx-6xx received, or no response"  # UAC
    CANCEL_OUT = "cancel wanted"  # UAC
    BYE_IN = "BYE received"
    BYE_OUT = "BYE sent"
    BYE_DONE = "BYE answered or timed out"


P, I = Phase, Input  # noqa: E741

PHASES: dict[tuple[Phase, Input], Phase] = {
    # UAS (§13.3)
    (P.OFFERED, I.ANSWER): P.ACCEPTED,
    (P.OFFERED, I.REFUSE): P.ENDED,
    (P.OFFERED, I.CANCEL_IN): P.ENDED,  # §9.2: 200 to CANCEL, 487 to INVITE
    (P.ACCEPTED, I.ACK): P.CONFIRMED,
    (P.ACCEPTED, I.ACK_TIMEOUT): P.ENDING,  # §13.3.1.4: confirmed, then BYE
    (P.ACCEPTED, I.BYE_IN): P.ENDED,  # §15: BYE may come before the ACK
    (P.ACCEPTED, I.BYE_OUT): P.ENDING,
    # UAC (§13.2)
    (P.CALLING, I.PROVISIONAL): P.EARLY,
    (P.EARLY, I.PROVISIONAL): P.EARLY,
    (P.CALLING, I.SUCCESS): P.CONFIRMED,
    (P.EARLY, I.SUCCESS): P.CONFIRMED,
    (P.CALLING, I.FAILURE): P.ENDED,
    (P.EARLY, I.FAILURE): P.ENDED,
    (P.CALLING, I.CANCEL_OUT): P.CANCELLING,
    (P.EARLY, I.CANCEL_OUT): P.CANCELLING,
    (P.CANCELLING, I.PROVISIONAL): P.CANCELLING,
    (P.CANCELLING, I.FAILURE): P.ENDED,  # 487, or whatever final came first
    (P.CANCELLING, I.SUCCESS): P.ENDING,  # §9.1/§15: the 2xx won the race: ACK, then BYE
    # both roles (§15)
    (P.CONFIRMED, I.BYE_IN): P.ENDED,
    (P.CONFIRMED, I.BYE_OUT): P.ENDING,
    (P.ENDING, I.BYE_IN): P.ENDING,  # both sent BYE: answer 200, wait for ours
    (P.ENDING, I.BYE_DONE): P.ENDED,
}

LIVE = frozenset({P.ACCEPTED, P.CONFIRMED, P.ENDING})  # a dialog exists


class EndReason(enum.Enum):
    REFUSED = "refused"  # UAS: we answered a failure
    CANCELLED = "cancelled"  # CANCEL (UAS) or our CANCEL (UAC)
    NO_ACK = "no-ack"  # UAS: 64*T1 without ACK (§13.3.1.4)
    BYE_IN = "bye-received"
    BYE_OUT = "bye-sent"
    REJECTED = "rejected"  # UAC: a final failure other than the fallback ones
    FALLBACK = "fallback"  # UAC: 415/488/606, pager mode instead (RFC 7573)
    FAILED = "failed"  # UAC: timeout or transport failure


# --------------------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Resend2xx:
    """Retransmit the 2xx (`IncomingRequest.resend_success`), §13.3.1.4."""


@dataclass(frozen=True, slots=True)
class SendAck:
    """Send `request` (the ACK for the 2xx, §13.2.2.4) to the dialog's first hop."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class SendBye:
    """Send `request` (a BYE in the dialog, §15.1.1) to the dialog's first hop."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class SendCancel:
    """CANCEL our pending INVITE (`DialogSender.cancel`), §9.1."""


@dataclass(frozen=True, slots=True)
class Ended:
    """The session is over: drop it from the tables, tell the media. `status` is the
    final response that ended it, if one did."""

    reason: EndReason
    status: int | None = None
    detail: str | None = None


Action = Resend2xx | SendAck | SendBye | SendCancel | Ended


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the in-dialog request with `status` (and `headers`); `actions` follow."""

    status: int
    reason: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class Reoffer:
    """A re-INVITE to answer (RFC 3264 §8): with an offer in `request.body`, or none
    (our offer then goes in the 2xx and the answer comes in the ACK)."""

    request: SipRequest


InDialog = Reply | Reoffer


def ack_for(dialog: Dialog, seq: int) -> SipRequest:
    """The ACK of a 2xx to the INVITE with CSeq `seq` (§13.2.2.4): built like any
    in-dialog request (route set, remote target, tags) but with the INVITE's CSeq number."""
    saved = dialog.local_cseq
    dialog.local_cseq = seq - 1
    try:
        return dialog.new_request("ACK")
    finally:
        dialog.local_cseq = saved


# --------------------------------------------------------------------------- the machine


class InviteSession:
    """One INVITE-created session, in either role. Mutate only through the methods."""

    def __init__(
        self,
        role: Role,
        invite: SipRequest,
        *,
        timers: TimerConfig,
        contact: NameAddr,
        local_tag: str | None = None,
    ) -> None:
        self.role = role
        self.invite = invite  # the dialog-creating INVITE (received, or ours without Via)
        self.timers = timers
        self.contact = contact
        self.local_tag = local_tag or secrets.token_hex(6)
        self.phase = Phase.OFFERED if role is Role.UAS else Phase.CALLING
        self.dialog: Dialog | None = None
        self.final_status: int | None = None
        # UAS: the INVITE whose 2xx awaits its ACK (CSeq number), and the retransmission
        self.unacked: int | None = None
        self.resend_at: float | None = None
        self.interval = timers.t1
        self.give_up_at: float | None = None
        self.offer_pending = False  # our offer went in a 2xx; the answer is due in the ACK
        self.answering: int | None = None  # CSeq of a re-INVITE not yet answered (§14.2)
        self.local_sdp = b""  # the last session description we sent
        self.cancel_sent = False  # UAC: our CANCEL is out (once, §9.1)

    # ---------------------------------------------------------------- table

    def _go(self, inp: Input) -> bool:
        nxt = PHASES.get((self.phase, inp))
        if nxt is None:
            return False
        self.phase = nxt
        return True

    @property
    def live(self) -> bool:
        """A dialog exists (in-dialog requests are answered, not 481)."""
        return self.phase in LIVE

    @property
    def deadline(self) -> float | None:
        """When `on_timer` must run next (the 2xx retransmission or the give-up)."""
        if self.resend_at is None:
            return None
        assert self.give_up_at is not None
        return min(self.resend_at, self.give_up_at)

    # ---------------------------------------------------------------- UAS

    def answered(self, response: SipResponse, sdp: bytes, now: float, *, tls: bool = False) -> None:
        """We sent `response`, a 2xx carrying `sdp`, to the INVITE (or a re-INVITE):
        form the dialog (§12.1.1) and retransmit until the ACK (§13.3.1.4)."""
        seq = _seq(response)
        if self.phase is Phase.OFFERED:
            if not self._go(Input.ANSWER):
                raise LocalProtocolError(f"2xx in phase {self.phase.value}")
            self.dialog = Dialog.as_uas(self.invite, self.local_tag, contact=self.contact, tls=tls)
        elif self.answering != seq:
            raise LocalProtocolError("2xx to an INVITE we are not answering")
        self.answering = None
        self.final_status = response.status
        self.local_sdp = sdp
        self.unacked = seq
        self.interval = self.timers.t1
        self.resend_at = now + self.interval
        self.give_up_at = now + 64 * self.timers.t1

    def refused(self, status: int) -> Ended | None:
        """We answered a failure: to the INVITE, the session ends; to a re-INVITE, the
        session goes on as it was (RFC 3264 §8, §14.1)."""
        self.final_status = status
        if self.phase is Phase.OFFERED:
            self._go(Input.REFUSE)
            return Ended(EndReason.REFUSED, status)
        self.answering = None
        return None

    def cancelled(self) -> Ended | None:
        """A CANCEL ended the INVITE before our final response (§9.2)."""
        if not self._go(Input.CANCEL_IN):
            return None
        return Ended(EndReason.CANCELLED, 487)

    def on_ack(self, ack: SipRequest) -> bool:
        """The ACK for our 2xx (§13.3.1.4, matched by dialog and CSeq number). True if it
        was the one awaited; its body is the answer when `offer_pending` was set."""
        cseq = ack.cseq
        if self.unacked is None or cseq is None or cseq.seq != self.unacked:
            return False
        if self.dialog is None or not self.dialog.matches(ack):
            return False
        self.unacked = self.resend_at = self.give_up_at = None
        self.offer_pending = False
        if self.phase is Phase.ACCEPTED:
            self._go(Input.ACK)
        return True

    def on_timer(self, now: float) -> list[Action]:
        """Retransmit the 2xx at T1, 2*T1, ... capped at T2; after 64*T1 without ACK,
        end the session with a BYE (§13.3.1.4)."""
        if self.resend_at is None or self.give_up_at is None:
            return []
        if now >= self.give_up_at:
            self.unacked = self.resend_at = self.give_up_at = None
            self.offer_pending = False
            if self.phase is Phase.ACCEPTED:
                self._go(Input.ACK_TIMEOUT)
                return [self._bye(), Ended(EndReason.NO_ACK)]
            return [self._hangup_confirmed(), Ended(EndReason.NO_ACK)]
        if now < self.resend_at:
            return []
        self.interval = min(2 * self.interval, self.timers.t2)
        self.resend_at = now + self.interval
        return [Resend2xx()]

    def on_request(self, request: SipRequest) -> InDialog:
        """An in-dialog request of this session (§12.2.2): 500 for a CSeq lower than the
        last one; BYE ends the session (§15.1.2); INVITE is a re-INVITE (§14.2)."""
        dialog = self.dialog
        if dialog is None or not self.live:
            return Reply(481)
        try:
            dialog.accept_remote_request(request)
        except RemoteProtocolError as exc:
            return Reply(exc.status, "CSeq Out Of Order")
        if request.method == "BYE":
            return self._bye_in()
        if request.method == "INVITE":
            return self._reinvite(request)
        return Reply(405, headers=(("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS"),))

    def _bye_in(self) -> Reply:
        if self.phase is Phase.ENDING:
            self._go(Input.BYE_IN)
            return Reply(200)
        self._go(Input.BYE_IN)
        self.unacked = self.resend_at = self.give_up_at = None
        return Reply(200, actions=(Ended(EndReason.BYE_IN),))

    def _reinvite(self, request: SipRequest) -> InDialog:
        if self.phase is Phase.ENDING:
            return Reply(481)  # we are ending it (our BYE is out)
        seq = _seq(request)
        if self.answering is not None and self.answering < seq:
            # §14.2: an INVITE before our final response to a lower one
            delay = secrets.randbelow(11)
            return Reply(500, "Previous INVITE Pending", (("Retry-After", str(delay)),))
        if self.offer_pending and request.body:
            # RFC 3264 §4: our offer (in a 2xx) awaits its answer: glare (§14.1 491)
            return Reply(491)
        self.answering = seq
        return Reoffer(request)

    def offered_in_answer(self) -> None:
        """The 2xx we are about to send to a re-INVITE without a body carries our offer:
        its answer comes in the ACK (RFC 3264 §4, RFC 3261 §13.2.1)."""
        self.offer_pending = True

    # ---------------------------------------------------------------- UAC

    def on_response(self, response: SipResponse) -> list[Action]:
        """A response to our INVITE (§13.2.2): 1xx (a CANCEL wanted goes out now, §9.1),
        2xx (dialog, ACK; a cancelled one is hung up, §15), or a failure."""
        status = response.status
        if status < 200:
            wanted = self.phase is Phase.CANCELLING and not self.cancel_sent
            self._go(Input.PROVISIONAL)
            if not wanted:
                return []
            self.cancel_sent = True
            return [SendCancel()]
        self.final_status = status
        if status < 300:
            was_cancelling = self.phase is Phase.CANCELLING
            if not self._go(Input.SUCCESS):
                return []
            self.dialog = Dialog.as_uac(self.invite, response)
            self.dialog.local_target = self.contact
            ack = SendAck(ack_for(self.dialog, _seq(self.invite)))
            if was_cancelling:
                return [ack, self._bye(), Ended(EndReason.CANCELLED, status)]
            return [ack]
        cancelling = self.phase is Phase.CANCELLING
        if not self._go(Input.FAILURE):
            return []
        if cancelling:
            return [Ended(EndReason.CANCELLED, status)]
        reason = EndReason.FALLBACK if status in FALLBACK_STATUSES else EndReason.REJECTED
        return [Ended(reason, status, response.reason)]

    def failed(self, detail: str) -> list[Action]:
        """No final response (Timer B) or a transport failure (§17.1.1.2)."""
        if not self._go(Input.FAILURE):
            return []
        return [Ended(EndReason.FAILED, None, detail)]

    def cancel(self) -> list[Action]:
        """Give up a call not answered yet: CANCEL at once in Early, after the first 1xx
        in Calling (§9.1: not before a provisional response)."""
        early = self.phase is Phase.EARLY
        if not self._go(Input.CANCEL_OUT):
            return []
        self.cancel_sent = early
        return [SendCancel()] if early else []

    # ---------------------------------------------------------------- both

    def hangup(self) -> list[Action]:
        """End a session that is up: BYE (§15.1.1). Nothing before the dialog exists."""
        if self.phase is Phase.ACCEPTED or self.phase is Phase.CONFIRMED:
            self.unacked = self.resend_at = self.give_up_at = None
            return [self._hangup_confirmed(), Ended(EndReason.BYE_OUT)]
        return []

    def _hangup_confirmed(self) -> SendBye:
        self._go(Input.BYE_OUT)
        return SendBye(self._new_bye())

    def _bye(self) -> SendBye:
        return SendBye(self._new_bye())

    def _new_bye(self) -> SipRequest:
        assert self.dialog is not None
        return self.dialog.new_request("BYE")

    def bye_done(self) -> None:
        """Our BYE got its final response, or none came (§15.1.1: the session is over
        either way)."""
        self._go(Input.BYE_DONE)


def _seq(message: SipRequest | SipResponse) -> int:
    cseq = message.cseq
    if cseq is None:
        raise RemoteProtocolError("missing CSeq")
    return cseq.seq

"""`Media`: what the INVITE leg of a session asks of the media side (issue 18).

The SIP leg (`bridge/session/service.SessionService`) handles INVITE, ACK, BYE and
CANCEL; it never reads SDP. Every session description goes through one `Media`: the
real one is built by the lead on `gateway/sdp` (RFC 4566 parsing, RFC 3264 offer/answer
for `m=message ... TCP/MSRP`) and the MSRP transport (`gateway/msrp/transport`,
`MsrpService`/`MsrpSession`). Until then the gateway runs without one and refuses every
INVITE with 488 (docs/sessions.md). Tests use a fixed-answer double in tests/.

A `Call` names one session for the media side. `(call_id, local_tag)` is unique per
session and known from the start in both roles (our To tag as UAS, our From tag as UAC).

Order of the calls for one session:

* UAS, INVITE with an offer: `answer` -> (2xx sent) -> `started` on the ACK -> `ended`.
* UAS, INVITE without a body (RFC 3261 §13.2.1, delayed offer): `offer` -> (2xx with
  it) -> `accepted(answer from the ACK)` -> `started` -> `ended`.
* UAS, re-INVITE (RFC 3264 §8): `reoffer` with its offer (a refusal keeps the session
  as it was, 488); a re-INVITE without a body gets our last description again, and its
  ACK's answer goes to `accepted`.
* UAC: `offer` -> (INVITE) -> `accepted(answer from the 2xx)` -> `started` -> `ended`;
  `ended` alone when the INVITE failed, was cancelled or fell back to pager mode.

`ended` is called exactly once per `Call` that `answer`/`offer` saw, whatever happened
(BYE either way, CANCEL, no ACK for 64*T1, refusal, stop).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["Call", "Media", "MediaAnswer", "MediaRefusal"]


@dataclass(frozen=True, slots=True)
class Call:
    """One session as the media side sees it (no SIP objects)."""

    call_id: str
    local_tag: str
    role: Literal["uas", "uac"]
    local_uri: str  # ours: the To URI of the INVITE received, the From URI of ours
    remote_uri: str  # the peer's address of record (From of its INVITE, To of ours)
    transport: str  # the SIP transport the INVITE came or went over (udp, tcp, tls, ...)


@dataclass(frozen=True, slots=True)
class MediaAnswer:
    """The answer (or, for `offer`-style uses, a description) to send in the 2xx."""

    sdp: bytes


@dataclass(frozen=True, slots=True)
class MediaRefusal:
    """The offer cannot be used: the INVITE gets `status` (488 Not Acceptable Here, 606,
    415...) with `Warning: <warn_code> <our host> "<warn_text>"` (RFC 3261 §20.43: 304
    media type not available, 305 incompatible media format, ...) when `warn_code` is set."""

    status: int = 488
    warn_code: int | None = None
    warn_text: str = ""


class Media(Protocol):
    """The media side of INVITE sessions. Coroutines may take their time (a 100 Trying is
    already out); an exception from them refuses the INVITE with 500 and ends the call."""

    async def answer(
        self, offer: bytes, content_type: str, call: Call
    ) -> MediaAnswer | MediaRefusal:
        """Answer the offer of a new INVITE (RFC 3264 §6)."""

    async def reoffer(self, offer: bytes, call: Call) -> MediaAnswer | MediaRefusal:
        """Answer a re-INVITE's offer in a session that is up (RFC 3264 §8); a refusal
        leaves the session as it was."""

    async def offer(self, call: Call) -> bytes:
        """Our offer (RFC 3264 §5): for an INVITE we send, or the 2xx to an INVITE that
        came without one."""

    async def accepted(self, answer: bytes, call: Call) -> bool:
        """The answer to our offer (from the 2xx we received, or the ACK we received).
        False: unusable, the session is ended with a BYE."""

    def started(self, call: Call) -> None:
        """The dialog is confirmed (ACK received, or ACK sent): media may flow."""

    def ended(self, call: Call, reason: str) -> None:
        """The session is over (`gateway.sip.invite.EndReason` values: bye-received,
        bye-sent, cancelled, no-ack, refused, rejected, fallback, failed)."""

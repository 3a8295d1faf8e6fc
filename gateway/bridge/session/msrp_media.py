"""The real `Media` of INVITE sessions: SDP offer/answer (`gateway.sdp.msrp`) over the MSRP
transport (`gateway.msrp.transport.MsrpService`), issue 18 (docs/sessions.md).

One `Leg` per `Call`: its `MsrpSession` and, once negotiated, the peer's stream
(`Negotiated`: path, our role, what it accepts). What the messages mean is not decided
here: `LegEvents` (the RFC 7573 bridge, `bridge/session/chat.py`) hears `admit` (may this
call exist: address mapping), `up`, `message`, `lost` (the MSRP side ended first: idle
timeout, connection loss, connect failure; the bridge hangs up the SIP side) and `down`
(exactly once per leg, from `Media.ended`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from gateway.bridge.session.media import Call, MediaAnswer, MediaRefusal
from gateway.logs import event
from gateway.msrp.transport import IncomingMessage, MsrpConnectError, MsrpService, MsrpSession
from gateway.msrp.transport.service import SendOutcome
from gateway.sdp.msrp import (
    Negotiated,
    Offer,
    Refusal,
    answer_offer,
    make_offer,
    offered_tls,
    parse_answer,
    type_accepted,
)
from mappings.errors import MappingError

__all__ = ["Leg", "LegEvents", "MsrpMedia"]

log = logging.getLogger("gateway.bridge.session")


@dataclass(eq=False)
class Leg:
    """One session's media: the MSRP session and the negotiated stream."""

    call: Call
    session: MsrpSession
    stream: Negotiated | None = None
    offer: Offer | None = None
    started: bool = False
    context: object = field(default=None)  # the bridge's per-session state

    async def send(self, content_type: str, body: bytes) -> SendOutcome:
        """Send one message; 415 without sending when the peer's SDP does not take it
        (RFC 4975 §8.6), 413 when over its a=max-size."""
        stream = self.stream
        if stream is None:
            return SendOutcome("", 481, "session not negotiated")
        media = content_type.split(";", 1)[0].strip()
        if not stream.may_send(media, False):
            return SendOutcome("", 415, f"peer does not accept {media}")
        if stream.max_size is not None and len(body) > stream.max_size:
            return SendOutcome("", 413, "over the peer's a=max-size")
        return await self.session.send_message(content_type, body)

    def accepts(self, media_type: str) -> bool:
        """The peer takes `media_type`, bare or wrapped in message/cpim."""
        stream = self.stream
        return stream is not None and (
            stream.may_send(media_type) or self.takes_wrapped(media_type)
        )

    def takes_wrapped(self, inner: str) -> bool:
        """message/cpim around `inner`: the peer takes message/cpim and lists `inner` in its
        a=accept-wrapped-types (RFC 4975 §8.6); otherwise we send `inner` bare."""
        stream = self.stream
        return (
            stream is not None
            and stream.may_send("message/cpim")
            and type_accepted(inner, stream.accept_wrapped_types)
        )


class LegEvents(Protocol):
    def admit(self, call: Call) -> None:
        """Raise MappingError when this call cannot be bridged (its status refuses it)."""

    def up(self, leg: Leg) -> None: ...

    def message(self, leg: Leg, msg: IncomingMessage) -> None: ...

    def lost(self, leg: Leg, reason: str) -> None: ...

    def down(self, leg: Leg, reason: str) -> None: ...


class MsrpMedia:
    """`gateway.bridge.session.media.Media` over `MsrpService`."""

    def __init__(self, service: MsrpService, events: LegEvents) -> None:
        self.service = service
        self.events = events
        self._legs: dict[tuple[str, str], Leg] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._legs)

    async def _new_leg(self, call: Call, tls: bool) -> Leg:
        holder: list[Leg] = []

        def on_message(msg: IncomingMessage) -> None:
            self.events.message(holder[0], msg)

        def on_close(reason: str) -> None:
            leg = holder[0]
            if self._legs.get((call.call_id, call.local_tag)) is leg:
                self.events.lost(leg, reason)

        session = await self.service.new_session(on_message, on_close, tls=tls)
        leg = Leg(call, session)
        holder.append(leg)
        self._legs[(call.call_id, call.local_tag)] = leg
        return leg

    async def answer(
        self, offer: bytes, content_type: str, call: Call
    ) -> MediaAnswer | MediaRefusal:
        if content_type.split(";", 1)[0].strip().lower() != "application/sdp":
            return MediaRefusal(415)
        try:
            self.events.admit(call)
        except MappingError as exc:
            return MediaRefusal(exc.sip_status)
        service = self.service
        if service.sessions >= service.config.max_sessions:  # RFC 3261 §21.5.4
            return MediaRefusal(503, 304, "too many message sessions")
        # TLS only when we have it: otherwise `answer_offer` refuses a TLS-only offer with
        # 488 and warn-code 302 (incompatible transport), as for any other transport
        tls = bool(offered_tls(offer)) and (
            service.tls_port is not None or service.config.relay is not None
        )
        try:
            leg = await self._new_leg(call, tls)
        except MsrpConnectError as exc:  # the relay's AUTH failed or timed out
            return MediaRefusal(488, 304, str(exc)[:100])
        result = answer_offer(offer, leg.session.local_media())
        if isinstance(result, Refusal):
            return MediaRefusal(result.status, result.warning, result.warning_text or "")
        leg.stream = result.stream
        if result.stream.setup == "passive":
            await leg.session.connect(
                result.stream.remote_path, "passive", result.stream.fingerprints
            )
        return MediaAnswer(result.body)

    async def reoffer(self, offer: bytes, call: Call) -> MediaAnswer | MediaRefusal:
        # RFC 3264 §8: changing the stream of a running session (a new path, TLS) is not
        # done; the session stays as it was (RFC 3261 §14.2: 488 keeps it)
        return MediaRefusal(488, 304, "changing a message session is not supported")

    async def offer(self, call: Call) -> bytes:
        leg = await self._new_leg(call, False)
        body, offer = make_offer(leg.session.local_media())
        leg.offer = offer
        return body

    async def accepted(self, answer: bytes, call: Call) -> bool:
        leg = self._legs.get((call.call_id, call.local_tag))
        if leg is None or leg.offer is None:
            return False
        leg.call = call  # the INVITE's Call (now with its transport): what hangup matches
        result = parse_answer(answer, leg.offer)
        if isinstance(result, Refusal):
            event(log, logging.INFO, "session answer refused", call_id=call.call_id,
                  status=result.status, reason=result.reason)  # fmt: skip
            return False
        leg.stream = result
        if result.setup == "passive":
            await leg.session.connect(result.remote_path, "passive", result.fingerprints)
        return True

    def started(self, call: Call) -> None:
        leg = self._legs.get((call.call_id, call.local_tag))
        if leg is None or leg.stream is None:
            return
        leg.call = call
        leg.started = True
        if leg.stream.setup == "active":
            task = asyncio.get_running_loop().create_task(self._connect(leg, leg.stream))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.events.up(leg)

    async def _connect(self, leg: Leg, stream: Negotiated) -> None:
        try:
            await leg.session.connect(stream.remote_path, "active", stream.fingerprints)
        except MsrpConnectError as exc:
            event(log, logging.INFO, "session media failed", call_id=leg.call.call_id,
                  reason=str(exc))  # fmt: skip
            leg.session.close(f"connect failed: {exc}")

    def ended(self, call: Call, reason: str) -> None:
        leg = self._legs.pop((call.call_id, call.local_tag), None)
        if leg is None:
            return
        leg.session.close(reason)
        if leg.started:
            self.events.down(leg, reason)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()

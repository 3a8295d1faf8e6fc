"""`SessionService`: the SIP leg of message sessions (issue 18), thin asyncio glue.

It answers INVITE, ACK and BYE (CANCEL is answered by the transaction layer, which tells
us through `IncomingRequest.on_cancel`), and sends INVITEs for the gateway
(`invite`). Every protocol decision is in the pure `gateway.sip.invite.InviteSession`;
every session description goes to the `Media` (bridge/session/media.py). Here: the
tables (sessions not yet answered by (Call-ID, local tag), dialogs in a `DialogTable`),
the bound on concurrent sessions (503 with Retry-After past `[sessions] max_sessions`),
one `loop.call_at` per session for the 2xx retransmission, the tasks that send ACK and
BYE, and one log line per refusal. docs/sessions.md has the state table and decisions.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from gateway.config import SessionsSection, SipConfig
from gateway.logs import event
from gateway.sip.dialog import DialogTable
from gateway.sip.headers import parse_name_addr
from gateway.sip.invite import (
    Action,
    Ended,
    EndReason,
    InviteSession,
    Phase,
    Reoffer,
    Reply,
    Resend2xx,
    Role,
    SendAck,
    SendBye,
    SendCancel,
)
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response
from gateway.sip.subscription import new_id
from gateway.sip.timers import TimerConfig
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import (
    DialogSender,
    IncomingRequest,
    MessageTooLarge,
    TransactionTimeout,
    TransportFailure,
)

from .media import Call, Media, MediaAnswer, MediaRefusal

__all__ = ["Locator", "Outcome", "SessionService", "default_contact"]

log = logging.getLogger(__name__)

SDP = "application/sdp"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE"
# RFC 3261 §20.43 warn-code 304 "Media type not available": without a Media the gateway
# has no media type to offer at all (docs/sessions.md, decisions).
NOT_ENABLED = (304, "message sessions not enabled")
SEND_FAILURES = (TransactionTimeout, TransportFailure, MessageTooLarge)


class Locator(Protocol):
    """The slice of `gateway.resolver.Resolver` used here (RFC 3263)."""

    async def locate(self, uri: SipUri) -> list[Target]: ...

    async def resolve_sip(self, uri: SipUri) -> list[Target]: ...


# The registered device of a hosted user: (Request-URI = its contact, the flow to send
# over, its Path), None when `uri` is not in a hosted domain; raises (NoBinding,
# NoSuchUser) when it is but nothing is registered.
HostedHop = Callable[[SipUri], tuple[SipUri, Target, tuple[str, ...]] | None]

OutcomeKind = Literal["established", "fallback", "rejected", "cancelled", "failed"]
_KINDS: dict[EndReason, OutcomeKind] = {
    EndReason.FALLBACK: "fallback",
    EndReason.REJECTED: "rejected",
    EndReason.CANCELLED: "cancelled",
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an INVITE the gateway sent came to. "fallback" (415, 488, 606): the peer does
    not do message sessions, send in pager mode instead (RFC 7573)."""

    kind: OutcomeKind
    call: Call
    status: int | None = None
    detail: str | None = None


@dataclass(eq=False)
class _Entry:
    session: InviteSession
    call: Call
    incoming: IncomingRequest | None = None  # UAS: the (re-)INVITE whose 2xx we resend
    timer: asyncio.TimerHandle | None = None
    started: bool = False
    ended: EndReason | None = None
    ended_status: int | None = None
    ended_detail: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # UAC: final outcome known


def default_contact(sip: SipConfig) -> str:
    """Our Contact in session dialogs when `[sessions] contact` is not set: the first
    listener that is not a WebSocket one (as presence derives its own)."""
    listener = next((lc for lc in sip.listeners if lc.transport.value not in ("ws", "wss")), None)
    if listener is None:
        return "sip:session@localhost"
    host = listener.address
    if host in ("0.0.0.0", "::", ""):
        host = sip.hosted_domains[0] if sip.hosted_domains else "localhost"
    elif ":" in host:
        host = f"[{host}]"
    transport = "" if listener.transport.value == "udp" else f";transport={listener.transport}"
    return f"sip:session@{host}:{listener.port}{transport}"


class SessionService:
    """INVITE sessions in both roles; handlers for the dispatcher and `invite` for XMPP."""

    def __init__(
        self,
        cfg: SessionsSection,
        endpoint: DialogSender,
        locator: Locator,
        *,
        media: Media | None,
        contact: str,
        timers: TimerConfig,
        warn_agent: str = "gateway",
        hosted: HostedHop | None = None,
    ) -> None:
        self.cfg = cfg
        self.endpoint = endpoint
        self.locator = locator
        # A hosted user is reached at its registered contact over its flow (the location
        # service, RFC 3261 §16.5, RFC 5626 §5.3), never through DNS.
        self.hosted = hosted
        # `on_end(reason)` once per session that ended (the composition root counts them)
        self.on_end: Callable[[str], None] | None = None
        self.media = media
        self.contact = parse_name_addr(f"<{contact}>")
        self.timers = timers
        self.warn_agent = warn_agent
        self._pending: dict[tuple[str, str], _Entry] = {}  # no dialog yet
        self._dialogs: DialogTable[_Entry] = DialogTable()
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._pending) + len(self._dialogs)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        return None

    async def stop(self, grace: float = 5.0) -> None:
        """Hang up every session that is up (BYE, answers awaited up to `grace` seconds);
        forget the others."""
        for entry in list(self._dialogs):
            self._apply(entry, entry.session.hangup())
        for entry in list(self._pending.values()):
            if entry.session.role is Role.UAC:
                self._apply(entry, entry.session.cancel())
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        for entry in [*self._dialogs, *self._pending.values()]:
            self._finish(entry, Ended(EndReason.BYE_OUT, None, "stopping"))
        self._pending.clear()
        self._dialogs = DialogTable()

    # ------------------------------------------------------------------ UAS

    def handle_invite(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        req = incoming.request
        if req.to_tag is not None:
            return self._reinvite(incoming)
        if len(self) >= self.cfg.max_sessions:
            retry = ("Retry-After", str(self.cfg.retry_after))
            self._refuse(incoming, 503, "too many sessions", (retry,))
            return None
        ct = req.content_type
        if req.body and (ct is None or ct.mime != SDP):
            mime = "none" if ct is None else ct.mime
            self._refuse(incoming, 415, f"body is {mime}", (("Accept", SDP),))
            return None
        if self.media is None:
            self._refuse(incoming, 488, NOT_ENABLED[1], (self._warning(*NOT_ENABLED),))
            return None
        if not req.contacts:  # §8.1.1.8: the dialog's remote target; none, no dialog
            self._refuse(incoming, 400, "no Contact", ())
            return None
        media = self.media
        session = InviteSession(
            Role.UAS, req, timers=self.timers, contact=self.contact, local_tag=incoming.to_tag
        )
        call = Call(
            req.call_id or "",
            incoming.to_tag,
            "uas",
            "" if req.to is None else str(req.to.uri),
            "" if req.from_ is None else str(req.from_.uri),
            incoming.transport,
        )
        entry = _Entry(session, call, incoming)
        self._pending[(call.call_id, call.local_tag)] = entry
        incoming.on_cancel = lambda: self._apply(entry, _some(session.cancelled()))
        incoming.reply(100)
        return self._answer(entry, incoming, media)

    async def _answer(self, entry: _Entry, incoming: IncomingRequest, media: Media) -> None:
        req, session, call = incoming.request, entry.session, entry.call
        try:
            # bounded: past 64*T1 the caller's Timer B has given up (§17.1.1.2)
            async with asyncio.timeout(64 * self.timers.t1):
                if req.body:
                    result = await media.answer(req.body, SDP, call)
                else:  # RFC 3261 §13.2.1: no offer in the INVITE, ours goes in the 2xx
                    result = MediaAnswer(await media.offer(call))
                    session.offered_in_answer()
        except TimeoutError:
            if session.phase is Phase.OFFERED:
                self._refuse(incoming, 500, "media did not answer in 64*T1")
                self._apply(entry, _some(session.refused(500)))
            return
        except Exception:
            self._apply(entry, _some(session.refused(500)))
            raise  # the error boundary answers 500 and logs it
        if session.phase is not Phase.OFFERED:
            return  # cancelled meanwhile (487 sent, `ended` told)
        if isinstance(result, MediaRefusal):
            self._media_refusal(incoming, result)
            self._apply(entry, _some(session.refused(result.status)))
            return
        response = self._success(incoming, result.sdp)
        if not incoming.respond(response):
            self._apply(entry, _some(session.cancelled()))
            return
        session.answered(response, result.sdp, self._now(), tls=incoming.transport == "tls")
        assert session.dialog is not None
        self._pending.pop((call.call_id, call.local_tag), None)
        self._dialogs.add(session.dialog.id, entry)
        self._arm(entry)

    def handle_ack(self, incoming: IncomingRequest) -> None:
        """The ACK for a 2xx (§13.3.1.4). An ACK for a failure never reaches us (the
        INVITE server transaction absorbs it); one matching nothing is dropped."""
        entry = self._dialogs.match(incoming.request)
        if entry is None:
            log.debug("ACK for no session dropped (call %s)", incoming.request.call_id)
            return
        session = entry.session
        wanted_answer = session.offer_pending
        if not session.on_ack(incoming.request):
            return
        self._arm(entry)
        if wanted_answer and self.media is not None:
            self._spawn(self._accept(entry, incoming.request.body))
        elif not entry.started:
            self._started(entry)

    async def _accept(self, entry: _Entry, answer: bytes) -> None:
        assert self.media is not None
        if await self.media.accepted(answer, entry.call):
            if not entry.started:
                self._started(entry)
            return
        event(log, logging.INFO, "session answer refused", call_id=entry.call.call_id)
        self._apply(entry, entry.session.hangup())

    def _started(self, entry: _Entry) -> None:
        entry.started = True
        if self.media is not None:
            self.media.started(entry.call)

    def handle_bye(self, incoming: IncomingRequest) -> None:
        entry = self._dialogs.match(incoming.request)
        if entry is None:
            self._refuse(incoming, 481, "no such session")
            return
        self._in_dialog(entry, incoming)

    def _in_dialog(self, entry: _Entry, incoming: IncomingRequest) -> Awaitable[None] | None:
        result = entry.session.on_request(incoming.request)
        if isinstance(result, Reply):
            if result.status >= 300:
                self._log_refusal(incoming, result.status, result.reason or "in dialog")
            incoming.reply(result.status, result.reason, headers=result.headers)
            self._apply(entry, result.actions)
            return None
        return self._reanswer(entry, incoming, result)

    def _reinvite(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        entry = self._dialogs.match(incoming.request)
        if entry is None:
            self._refuse(incoming, 481, "no such session")
            return None
        return self._in_dialog(entry, incoming)

    async def _reanswer(self, entry: _Entry, incoming: IncomingRequest, re: Reoffer) -> None:
        """A re-INVITE (RFC 3264 §8): its offer to `Media.reoffer`; without one, our last
        description is offered again and the answer comes in the ACK."""
        session, req = entry.session, re.request
        ct = req.content_type
        if req.body and (ct is None or ct.mime != SDP):
            self._refuse(incoming, 415, "re-INVITE body is not SDP", (("Accept", SDP),))
            session.refused(415)
            return
        if not req.body:
            session.offered_in_answer()
            result: MediaAnswer | MediaRefusal = MediaAnswer(session.local_sdp)
        elif self.media is None:
            result = MediaRefusal(488, *NOT_ENABLED)
        else:
            try:
                result = await self.media.reoffer(req.body, entry.call)
            except Exception:
                session.refused(500)
                raise
        if not session.live or entry.ended is not None:
            incoming.reply(487)  # §15.1.2: the session ended while we answered
            return
        if isinstance(result, MediaRefusal):
            self._media_refusal(incoming, result)
            session.refused(result.status)
            return
        response = self._success(incoming, result.sdp)
        if incoming.respond(response):
            entry.incoming = incoming
            session.answered(response, result.sdp, self._now())
            self._arm(entry)

    # ------------------------------------------------------------------ UAC

    async def invite(self, local: str, remote: str) -> Outcome:
        """Invite `remote` (a SIP URI) to a session from `local` (our SIP URI for the XMPP
        user). Returns once the session is up (ACK sent, `Media.accepted` said yes) or
        over; "fallback" asks the caller to use pager mode (RFC 7573)."""
        call = Call(new_id(), new_id(), "uac", local, remote, "")
        if self.media is None:
            return Outcome("failed", call, None, NOT_ENABLED[1])
        if len(self) >= self.cfg.max_sessions:
            event(log, logging.INFO, "invite not sent", reason="too many sessions", to=remote)
            return Outcome("failed", call, None, "too many sessions")
        uri = parse_uri(remote)
        if not isinstance(uri, SipUri):
            return Outcome("failed", call, None, f"not a SIP URI: {remote}")
        ruri: SipUri = uri
        route: tuple[str, ...] = ()
        try:
            hop = self.hosted(uri) if self.hosted is not None else None
            if hop is not None:  # a hosted user: its registered device
                ruri, target, route = hop
                targets = [target]
            else:
                targets = await self.locator.resolve_sip(uri)
        except Exception as exc:  # ResolutionError, NoBinding and kin: a fact about the peer
            return Outcome("failed", call, None, f"no route: {exc}")
        if not targets:
            return Outcome("failed", call, None, "no route")
        sdp = await self.media.offer(call)
        call = Call(call.call_id, call.local_tag, "uac", local, remote, targets[0].transport)
        headers = Headers(
            [
                ("From", f"<{local}>;tag={call.local_tag}"),
                ("To", f"<{remote}>"),
                ("Call-ID", call.call_id),
                ("CSeq", "1 INVITE"),
                ("Contact", str(self.contact)),
                ("Allow", ALLOW),
                ("Content-Type", SDP),
            ]
        )
        for hop_uri in reversed(route):  # a binding's Path: a preloaded route (RFC 3327 §5.3)
            headers = headers.prepend("Route", hop_uri)
        req = SipRequest("INVITE", ruri, headers, sdp)
        session = InviteSession(
            Role.UAC, req, timers=self.timers, contact=self.contact, local_tag=call.local_tag
        )
        entry = _Entry(session, call)
        key = (call.call_id, call.local_tag)
        self._pending[key] = entry
        try:
            response = await self.endpoint.request(
                req,
                targets[0],
                on_provisional=lambda r: self._apply(entry, session.on_response(r)),
            )
        except SEND_FAILURES as exc:
            self._pending.pop(key, None)
            self._apply(entry, session.failed(str(exc) or type(exc).__name__))
            return Outcome("failed", call, None, str(exc) or type(exc).__name__)
        actions = session.on_response(response)
        self._pending.pop(key, None)
        if session.dialog is not None and session.phase is Phase.CONFIRMED:
            self._dialogs.add(session.dialog.id, entry)
        self._apply(entry, actions)
        if session.phase is Phase.CONFIRMED:
            if await self.media.accepted(response.body, call):
                self._started(entry)
                return Outcome("established", call, response.status)
            self._apply(entry, session.hangup())
            return Outcome("failed", call, response.status, "answer refused by media")
        reason = entry.ended or EndReason.FAILED
        return Outcome(_KINDS.get(reason, "failed"), call, entry.ended_status, entry.ended_detail)

    def cancel(self, call: Call) -> None:
        """Give up an INVITE we sent that is not answered yet (CANCEL, §9.1)."""
        entry = self._pending.get((call.call_id, call.local_tag))
        if entry is not None and entry.session.role is Role.UAC:
            self._apply(entry, entry.session.cancel())

    def hangup(self, call: Call) -> None:
        """End a session that is up (BYE, §15.1.1)."""
        for entry in list(self._dialogs):
            if entry.call == call:
                self._apply(entry, entry.session.hangup())

    # ------------------------------------------------------------------ actions

    def _apply(self, entry: _Entry, actions: Iterable[Action]) -> None:
        sends: list[SipRequest] = []
        for action in actions:
            if isinstance(action, Resend2xx):
                if entry.incoming is not None:
                    entry.incoming.resend_success()
            elif isinstance(action, SendAck | SendBye):
                sends.append(action.request)
            elif isinstance(action, SendCancel):
                self.endpoint.cancel(entry.session.invite)
            elif isinstance(action, Ended):
                self._finish(entry, action)
        self._arm(entry)
        self._forget(entry)
        if sends:
            self._spawn(self._send_in_order(entry, sends))

    async def _send_in_order(self, entry: _Entry, requests: list[SipRequest]) -> None:
        """ACK before BYE (the cancelled call whose 2xx won the race, §15)."""
        for req in requests:
            try:
                targets = await self._first_hop(req)
                if req.method == "ACK":
                    await self.endpoint.ack(req, targets[0])
                    continue
                response = await self.endpoint.request(req, targets[0])
                if response.status >= 300:
                    event(log, logging.INFO, "BYE refused", call_id=req.call_id,
                          status=response.status)  # fmt: skip
            except (*SEND_FAILURES, LookupError) as exc:
                event(log, logging.INFO, f"{req.method} not delivered", call_id=req.call_id,
                      error=str(exc) or type(exc).__name__)  # fmt: skip
            if req.method == "BYE":
                entry.session.bye_done()
                self._forget(entry)

    async def _first_hop(self, req: SipRequest) -> list[Target]:
        """The first Route, else the Request-URI (the remote target), by RFC 3263."""
        routes = req.routes
        uri = routes[0].uri if routes else req.uri
        if not isinstance(uri, SipUri):
            raise LookupError(f"cannot send to {uri}")
        targets = await self.locator.locate(uri)
        if not targets:
            raise LookupError(f"no address for {uri}")
        return targets

    def _finish(self, entry: _Entry, ended: Ended) -> None:
        """The session is over for the media (once); the tables keep it while our BYE is
        out (a BYE crossing it gets 200, §15), `_forget` drops it once ENDED."""
        if entry.ended is not None:
            return
        entry.ended, entry.ended_status, entry.ended_detail = (
            ended.reason,
            ended.status,
            ended.detail,
        )
        call = entry.call
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        event(log, logging.INFO, "session ended", call_id=call.call_id, role=call.role,
              reason=ended.reason.value, status=ended.status)  # fmt: skip
        if self.media is not None:
            self.media.ended(call, ended.reason.value)
        if self.on_end is not None:
            self.on_end(ended.reason.value)
        entry.done.set()

    def _forget(self, entry: _Entry) -> None:
        """Drop an ENDED session from the tables (they stay bounded by max_sessions)."""
        if entry.session.phase is not Phase.ENDED and entry.ended is None:
            return
        if entry.session.phase is Phase.ENDING:
            return  # our BYE is out: kept until it is answered or times out
        call = entry.call
        self._pending.pop((call.call_id, call.local_tag), None)
        dialog = entry.session.dialog
        if dialog is not None and self._dialogs.get(dialog.id) is entry:
            self._dialogs.remove(dialog.id)

    # ------------------------------------------------------------------ timers

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _arm(self, entry: _Entry) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        deadline = entry.session.deadline
        if deadline is not None and entry.ended is None:
            loop = asyncio.get_running_loop()
            entry.timer = loop.call_at(deadline, self._tick, entry)

    def _tick(self, entry: _Entry) -> None:
        entry.timer = None
        at = entry.session.deadline or 0.0
        self._apply(entry, entry.session.on_timer(max(self._now(), at)))

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ responses

    def _success(self, incoming: IncomingRequest, sdp: bytes) -> SipResponse:
        return make_response(
            incoming.request,
            200,
            to_tag=incoming.to_tag,
            headers=[("Contact", str(self.contact)), ("Allow", ALLOW), ("Content-Type", SDP)],
            body=sdp,
        )

    def _warning(self, code: int, text: str) -> tuple[str, str]:
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        return ("Warning", f'{code} {self.warn_agent} "{quoted}"')

    def _media_refusal(self, incoming: IncomingRequest, refusal: MediaRefusal) -> None:
        headers: tuple[tuple[str, str], ...] = ()
        if refusal.warn_code is not None:
            headers = (self._warning(refusal.warn_code, refusal.warn_text),)
        self._log_refusal(incoming, refusal.status, refusal.warn_text or "media refused")
        incoming.reply(refusal.status, headers=headers)

    def _refuse(
        self,
        incoming: IncomingRequest,
        status: int,
        why: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._log_refusal(incoming, status, why)
        incoming.reply(status, headers=headers)

    def _log_refusal(self, incoming: IncomingRequest, status: int, why: str) -> None:
        req = incoming.request
        event(log, logging.INFO, "session request refused", method=req.method,
              call_id=req.call_id, status=status, reason=why,
              peer=f"{incoming.source[0]}:{incoming.source[1]}")  # fmt: skip


def _some(action: Action | None) -> tuple[Action, ...]:
    return () if action is None else (action,)

"""RFC 7573: an MSRP session between a SIP user and an XMPP user, bridged to XMPP chat
(issue 18, docs/sessions.md "Chat over sessions").

The `LegEvents` of `MsrpMedia`. Addresses are mapped as pager mode maps them
(`Pager.session_route`): the SIP user's JID writes to the XMPP user's JID, `type="chat"`,
the Call-ID as `<thread/>` (RFC 7573 §5).

* MSRP -> XMPP: each complete message is unwrapped (`mappings.sessionchat.unwrap`) and
  written with `send_confirmed`, like a pager MESSAGE. The per-chunk 200 is the transport's;
  the success REPORT (when the sender asked, Success-Report: yes) waits for the XMPP
  receipt (XEP-0184 <received/>, RFC 7573 §7), at most `receipt_wait` seconds after the
  XMPP server took the stanza, then it is sent anyway (the server has it; a client
  without receipts would otherwise hold it for ever). An error stanza (before the
  confirmation or while the REPORT is held) becomes a failure REPORT with
  `sessionchat.failure_code`; an unusable message a failure REPORT 400/403/415.
* XMPP -> MSRP: while a session is up, messages from that XMPP user's bare JID to the SIP
  user's bare JID go into it (text as message/cpim when the peer takes it wrapped, else
  text/plain; chat states as isComposing); an MSRP failure goes back as an error stanza
  (`sessionchat.xmpp_error`). `<gone/>` ends the session (BYE, §6.1); a BYE from SIP
  sends `<gone/>` to the XMPP user.

One INFO line per message ("session message", with its fate) and per end ("session ended").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.bridge.pager.service import Pager, refused_payload
from gateway.bridge.pager.sip_message import uri_address
from gateway.bridge.routing import SipRouter
from gateway.bridge.session.media import Call
from gateway.bridge.session.msrp_media import Leg
from gateway.bridge.session.service import Outcome
from gateway.logs import event
from gateway.memo import Memo
from gateway.msrp.transport import IncomingMessage
from gateway.sip.message import Headers, SipRequest
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import MessageTooLarge, TransactionTimeout, TransportFailure
from gateway.xmpp.convert import error_reply, message_to_op, stanza_error
from gateway.xmpp.fastwrite import message_xml
from gateway.xmpp.links import LinkDown, XmppLinks
from mappings import edits
from mappings import sessionchat as chat_fmt
from mappings.errors import MappingError, XmppErrorInfo
from mappings.jid import Jid, parse_jid
from mappings.model import Address, BodyPart, ChatState, MessageOp, XmppMessageType

__all__ = ["SessionChat"]

log = logging.getLogger("gateway.bridge.session")
WAITING_LIMIT = 100  # XMPP messages waiting for a session being opened (then refused)
EARLY_LIMIT = 16  # messages received before the ACK, kept until the session is up
HELD_LIMIT = 256  # success REPORTs held per session; beyond, sent when the server took it


@dataclass(eq=False)
class _Chat:
    leg: Leg
    domain: str
    sip_jid: Jid  # the SIP user as XMPP sees it (from of what we write)
    xmpp_jid: Jid  # the XMPP user (to)
    sip_address: Address
    xmpp_address: Address
    key: tuple[str, str]  # (XMPP user's bare JID, SIP user's bare JID)
    held: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Pending:
    chat: object = None  # the session it was sent in (None: not a session's)
    bounce: XmppErrorInfo | None = None
    received: bool = False  # the receipt overtook the server's confirmation


@dataclass(slots=True)
class _Held:
    message: IncomingMessage
    timer: asyncio.TimerHandle
    chat: _Chat


class SessionChat:
    """The RFC 7573 bridge; `take` is the pager's `session_stanzas` hook."""

    def __init__(
        self,
        pager: Pager,
        links: XmppLinks,
        *,
        receipt_wait: float = 10.0,
        preference: str = "pager",
        peer_limit: int = 4096,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pager = pager
        self.links = links
        self.receipt_wait = receipt_wait
        self.now = now
        self.hangup: Callable[[Call], None] = lambda call: None  # SessionService.hangup
        # XMPP-initiated sessions (RFC 7573 §4): SessionService.invite, when preferred
        self.invite: Callable[[str, str], Awaitable[Outcome]] | None = None
        # OPTIONS to a SIP user not known either way (`options_prober`): (SIP user, from)
        self.probe: Callable[[str, str], Awaitable[bool]] | None = None
        self.preference = preference
        self._msrp_peers: Memo[str, bool] = Memo(peer_limit)  # SIP users seen with MSRP
        self._opening: dict[tuple[str, str], list[Any]] = {}  # stanzas waiting for INVITE
        self._chats: dict[tuple[str, str], _Chat] = {}
        self._pending: dict[str, _Pending] = {}
        self._held: dict[str, _Held] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._chats)

    # -- LegEvents --------------------------------------------------------------------

    def admit(self, call: Call) -> None:
        self.pager.session_route(call.remote_uri, call.local_uri)

    def up(self, leg: Leg) -> None:
        call = leg.call
        try:
            domain, sip_jid, xmpp_jid = self.pager.session_route(call.remote_uri, call.local_uri)
        except MappingError as exc:  # admitted already; the configuration changed?
            event(log, logging.INFO, "session refused", call_id=call.call_id, reason=exc.reason)
            self.hangup(call)
            return
        key = (str(xmpp_jid.bare), str(sip_jid.bare))
        chat = _Chat(
            leg,
            domain,
            sip_jid,
            xmpp_jid,
            uri_address(call.remote_uri).bare,
            uri_address(call.local_uri).bare,
            key,
        )
        early = leg.context if isinstance(leg.context, list) else []
        leg.context = chat
        self._msrp_peers.put(_peer(call.remote_uri), True)  # it takes MSRP sessions
        self._chats[key] = chat  # a newer session between the two takes the replies
        event(log, logging.INFO, "session up", call_id=call.call_id, role=call.role,
              sip=key[1], xmpp=key[0], msrp=str(leg.session.local_uri))  # fmt: skip
        for msg in early:
            self._spawn(self._to_xmpp(chat, msg))

    def message(self, leg: Leg, msg: IncomingMessage) -> None:
        chat = leg.context
        if isinstance(chat, _Chat):
            self._spawn(self._to_xmpp(chat, msg))
            return
        # Before the ACK (an active peer may send as soon as it has our answer, RFC 4975
        # §5.4, and the ACK can come later): kept for `up`, a few at most.
        early = leg.context if isinstance(leg.context, list) else []
        if len(early) >= EARLY_LIMIT:
            msg.reject(413)
            return
        early.append(msg)
        leg.context = early

    def lost(self, leg: Leg, reason: str) -> None:
        event(log, logging.INFO, "session media ended", call_id=leg.call.call_id, reason=reason)
        self.hangup(leg.call)

    def down(self, leg: Leg, reason: str) -> None:
        chat = leg.context
        if not isinstance(chat, _Chat):
            return
        if self._chats.get(chat.key) is chat:
            del self._chats[chat.key]
        for stanza_id in chat.held:
            held = self._held.pop(stanza_id, None)
            if held is not None:
                held.timer.cancel()
        if reason == "bye-received":  # RFC 7573 §6.1: the SIP user left
            op = MessageOp(
                source=chat.sip_address,
                destination=chat.xmpp_address,
                trans_id=self._new_id(),
                thread=leg.call.call_id,
                xmpp_type=XmppMessageType.CHAT,
                chat_state=ChatState.GONE,
            )
            xml = message_xml(op, mfrom=str(chat.sip_jid), mto=str(chat.xmpp_jid),
                              stanza_id=op.trans_id)  # fmt: skip
            self.links.send(chat.domain, xml)
        event(log, logging.INFO, "session ended", call_id=leg.call.call_id, reason=reason,
              sip=chat.key[1], xmpp=chat.key[0])  # fmt: skip

    # -- MSRP -> XMPP -----------------------------------------------------------------

    async def _to_xmpp(self, chat: _Chat, msg: IncomingMessage) -> None:
        ids: dict[str, Any] = {"call_id": chat.leg.call.call_id, "msrp_id": msg.message_id}
        try:
            content = chat_fmt.unwrap(
                msg.content_type, msg.body, sender=chat.sip_address, recipient=chat.xmpp_address
            )
        except MappingError as exc:
            code = exc.sip_status if exc.sip_status in (400, 403, 415) else 400
            msg.reject(code)
            self._fate("sip_to_xmpp", "rejected", status=code, reason=exc.reason, **ids)
            return
        stanza_id = self._new_id()
        ids["stanza_id"] = stanza_id
        text = content.text
        wants = bool(text) and msg.wants_success_report
        op = MessageOp(
            source=chat.sip_address,
            destination=chat.xmpp_address,
            trans_id=stanza_id,
            parts=(BodyPart.plain(text, content.lang),) if text else (),
            thread=chat.leg.call.call_id,
            xmpp_type=XmppMessageType.CHAT,
            receipt_request=wants and self.receipt_wait > 0,
            chat_state=content.chat_state or (ChatState.ACTIVE if text else None),
        )
        if not self.links.is_up(chat.domain):
            msg.reject(408)
            self._fate("sip_to_xmpp", "failed", status=408, reason="xmpp link down", **ids)
            return
        xml = message_xml(op, mfrom=str(chat.sip_jid), mto=str(chat.xmpp_jid), stanza_id=stanza_id)
        pending = self._pending[stanza_id] = _Pending(chat)
        try:
            await self.links.send_confirmed(chat.domain, xml)
        except LinkDown:
            msg.reject(408)  # in doubt: the sender hears of it (RFC 4975 §7.1.4)
            self._fate("sip_to_xmpp", "failed", status=408, reason="xmpp link lost", **ids)
            return
        finally:
            self._pending.pop(stanza_id, None)
        if pending.bounce is not None:
            code = chat_fmt.failure_code(pending.bounce.condition)
            msg.reject(code)
            self._fate("sip_to_xmpp", "rejected", status=code,
                       condition=pending.bounce.condition, **ids)  # fmt: skip
            return
        if op.receipt_request and not pending.received and len(chat.held) < HELD_LIMIT:
            timer = asyncio.get_running_loop().call_later(
                self.receipt_wait, self._release, stanza_id
            )
            self._held[stanza_id] = _Held(msg, timer, chat)
            chat.held.add(stanza_id)
            self._fate("sip_to_xmpp", "delivered", report="held", **ids)
            return
        msg.accept()
        self._fate("sip_to_xmpp", "delivered", **ids)

    def _release(self, stanza_id: str) -> None:
        """No receipt within `receipt_wait`: the server took it, report success."""
        held = self._held.pop(stanza_id, None)
        if held is not None:
            held.chat.held.discard(stanza_id)
            held.message.accept()

    # -- XMPP -> MSRP -----------------------------------------------------------------

    async def take(self, msg: Any) -> bool:
        """The pager's hook: True when the stanza belongs to a session."""
        xml = msg.xml
        if xml.get("type") == "error":
            return self._error_stanza(msg, xml.get("id") or "")
        if not self._chats and self.preference != "session":
            return False  # the pager's fast path
        try:
            key = (
                str(parse_jid(xml.get("from") or "").bare),
                str(parse_jid(xml.get("to") or "").bare),
            )
        except ValueError:
            return False
        chat = self._chats.get(key)
        if chat is None:
            return self._maybe_open(msg, key)
        refused = refused_payload(xml, msg.namespace)
        if refused is not None:  # encrypted or a retraction: never its fallback body
            raise refused  # the XMPP boundary answers with the condition and text
        try:
            op = message_to_op(msg, source=chat.xmpp_address, destination=chat.sip_address)
        except ValueError:
            return True  # nothing the session carries
        if isinstance(edits.edit_of(xml), edits.Correction):
            op = edits.corrected(op)  # XEP-0308: the new text with the marker, as pager mode
        if op.receipt_for is not None:
            overtaking = self._pending.get(op.receipt_for)
            if overtaking is not None and overtaking.chat is chat:
                overtaking.received = True  # reported when the confirmation comes
            held = self._held.pop(op.receipt_for, None)
            if held is not None and held.chat is chat:
                held.timer.cancel()
                chat.held.discard(op.receipt_for)
                held.message.accept()  # RFC 7573 §7: <received/> -> success REPORT
        text = op.text()
        if text:
            content = chat_fmt.wrap_text(
                text,
                cpim=chat.leg.takes_wrapped(chat_fmt.PLAIN),
                sender_uri=chat.leg.call.local_uri,
                recipient_uri=chat.leg.call.remote_uri,
                now=self.now(),
            )
            receipt = op.receipt_request and bool(op.trans_id)
            self._spawn(self._to_msrp(chat, msg, content, receipt=receipt))
        elif op.chat_state is ChatState.GONE:  # RFC 7573 §6.1: BYE
            event(log, logging.INFO, "session gone", call_id=chat.leg.call.call_id, xmpp=key[0])
            self.hangup(chat.leg.call)
        elif op.chat_state is not None and chat.leg.accepts(chat_fmt.ISCOMPOSING):
            composing = chat_fmt.wrap_state(
                op.chat_state,
                cpim=chat.leg.takes_wrapped(chat_fmt.ISCOMPOSING),
                sender_uri=chat.leg.call.local_uri,
                recipient_uri=chat.leg.call.remote_uri,
                now=self.now(),
            )
            if composing is not None:
                self._spawn(self._to_msrp(chat, None, composing))
        return True

    def _maybe_open(self, msg: Any, key: tuple[str, str]) -> bool:
        """RFC 7573 §4: a chat message to a SIP user known to take MSRP sessions opens one
        when `preference` is "session"; messages meanwhile wait for it. False: pager mode."""
        waiting = self._opening.get(key)
        if waiting is not None:
            if len(waiting) >= WAITING_LIMIT:
                raise MappingError(
                    f"{len(waiting)} messages already wait for the session",
                    sip_status=500,
                    xmpp_condition="resource-constraint",
                )
            waiting.append(msg)
            return True
        if self.preference != "session" or self.invite is None:
            return False
        xml = msg.xml
        if xml.get("type") not in (None, "chat", "normal") or msg["body"] == "":
            return False
        try:
            uris = self.pager.session_target(xml.get("to") or "", xml.get("from") or "")
        except MappingError:
            return False  # pager mode answers it with the error
        if uris is None:
            return False
        peer = _peer(uris[0])
        known = self._msrp_peers.peek(peer)
        if known is None and self.probe is not None:  # ask once (OPTIONS); pager meanwhile
            self._msrp_peers.put(peer, False)
            self._spawn(self._probe(peer, *uris))
        if known is not True:
            return False
        self._opening[key] = [msg]
        self._spawn(self._open(key, *uris))
        return True

    async def _probe(self, peer: str, sip_uri: str, xmpp_uri: str) -> None:
        assert self.probe is not None
        takes = await self.probe(sip_uri, xmpp_uri)
        if takes:
            self._msrp_peers.put(peer, True)
        event(log, logging.INFO, "session capability", sip=peer, msrp=takes, learnt="options")

    async def _open(self, key: tuple[str, str], sip_uri: str, xmpp_uri: str) -> None:
        assert self.invite is not None
        try:
            outcome = await self.invite(xmpp_uri, sip_uri)
        except asyncio.CancelledError:  # stopping: the senders hear of it, nothing is lost
            for msg in self._opening.pop(key, []):
                if msg.xml.get("id"):
                    info = XmppErrorInfo.of("service-unavailable", text="gateway stopping")
                    self.links.send(
                        parse_jid(msg.xml.get("to") or "").domain.lower(), error_reply(msg, info)
                    )
            raise
        waiting = self._opening.pop(key, [])
        opened = outcome.kind == "established" and key in self._chats
        event(log, logging.INFO, "session opened" if opened else "session not opened, pager mode",
              call_id=outcome.call.call_id, outcome=outcome.kind, status=outcome.status,
              detail=outcome.detail, sip=key[1], xmpp=key[0])  # fmt: skip
        if not opened:
            # pager mode for it from now on (no INVITE per message), until it INVITEs us
            self._msrp_peers.put(_peer(sip_uri), False)
            for msg in waiting:  # never lost, never twice: each goes one way only
                await self._pager_mode(msg)
            return
        for msg in waiting:
            await self.take(msg)

    async def _pager_mode(self, msg: Any) -> None:
        """Pager mode for a stanza, outside the XMPP boundary: its errors answered here."""
        try:
            await self.pager.pager_stanza(msg)
        except MappingError as exc:
            domain = parse_jid(msg.xml.get("to") or "").domain.lower()
            if msg.xml.get("id"):
                self.links.send(domain, error_reply(msg, exc.to_xmpp()))

    def _error_stanza(self, msg: Any, stanza_id: str) -> bool:
        pending = self._pending.get(stanza_id)
        if pending is not None:
            pending.bounce = stanza_error(msg)  # answered when the confirmation arrives
            return True
        held = self._held.pop(stanza_id, None)
        if held is None:
            return False
        held.timer.cancel()
        held.chat.held.discard(stanza_id)
        condition = stanza_error(msg).condition
        held.message.reject(chat_fmt.failure_code(condition))
        self._fate("sip_to_xmpp", "rejected", stanza_id=stanza_id, condition=condition,
                   call_id=held.chat.leg.call.call_id)  # fmt: skip
        return True

    async def _to_msrp(
        self, chat: _Chat, msg: Any | None, content: tuple[str, bytes], *, receipt: bool = False
    ) -> None:
        outcome = await chat.leg.send(*content)
        ids = {"call_id": chat.leg.call.call_id, "msrp_id": outcome.message_id,
               "kind": "content" if msg is not None else "chat-state"}  # fmt: skip
        if outcome.ok:
            self._fate("xmpp_to_sip", "delivered", status=200, **ids)
            if receipt and outcome.reported and msg is not None:  # RFC 7573 §7: REPORT 200
                self._receipt(chat, msg)
            return
        self._fate("xmpp_to_sip", "rejected", status=outcome.code, reason=outcome.comment, **ids)
        if msg is not None and msg.xml.get("id"):
            self.links.send(chat.domain, error_reply(msg, chat_fmt.xmpp_error(outcome.code)))

    def _receipt(self, chat: _Chat, msg: Any) -> None:
        """The MSRP success REPORT of an XMPP message that asked for a receipt becomes
        `<received/>` to its sender (RFC 7573 §7, XEP-0184)."""
        op = MessageOp(
            source=chat.sip_address,
            destination=chat.xmpp_address,
            trans_id=self._new_id(),
            receipt_for=msg.xml.get("id"),
        )
        xml = message_xml(op, mfrom=str(chat.sip_jid), mto=msg.xml.get("from") or "",
                          stanza_id=op.trans_id)  # fmt: skip
        self.links.send(chat.domain, xml)

    # -- helpers ----------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"s{self._prefix}-{next(self._ids)}"

    def _fate(self, direction: str, fate: str, **fields: Any) -> None:
        event(log, logging.INFO, "session message", direction=direction, fate=fate, **fields)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session bridge task failed", exc_info=task.exception())

    async def start(self) -> None:
        return None

    async def stop(self, grace: float = 2.0) -> None:
        """Held REPORTs are dropped; messages being bridged get `grace` seconds, then
        are cancelled (an INVITE still waiting gives up)."""
        for held in self._held.values():
            held.timer.cancel()
        self._held.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(grace, 0.001))
        for task in list(self._tasks):
            task.cancel()


def _peer(sip_uri: str) -> str:
    """A SIP user's key in the table of MSRP-capable peers (bare, domain lower case)."""
    try:
        address = uri_address(sip_uri)
    except MappingError:
        return sip_uri
    return f"{address.user}@{(address.domain or '').lower()}"


def options_prober(router: SipRouter) -> Callable[[str, str], Awaitable[bool]]:
    """RFC 7573 §4 capability discovery: an OPTIONS (RFC 3261 §11) to the SIP user, routed
    like pager mode's MESSAGE; True when its 2xx shows an MSRP chat endpoint
    (`mappings.sessionchat.takes_msrp`). Any failure is False."""

    async def probe(sip_uri: str, from_uri: str) -> bool:
        aor = parse_uri(sip_uri)
        if not isinstance(aor, SipUri):
            return False
        tag, call_id = secrets.token_hex(6), f"{secrets.token_hex(8)}@options"

        def build(request_uri: str) -> SipRequest:
            headers = Headers(
                [
                    ("Max-Forwards", "70"),
                    ("From", f"<{from_uri}>;tag={tag}"),
                    ("To", f"<{sip_uri}>"),
                    ("Call-ID", call_id),
                    ("CSeq", "1 OPTIONS"),
                    ("Accept", "application/sdp"),
                ]
            )
            return SipRequest("OPTIONS", parse_uri(request_uri), headers, b"")

        try:
            response = await router.send(aor, build)
        except (MappingError, TransactionTimeout, TransportFailure, MessageTooLarge):
            return False
        return chat_fmt.takes_msrp(
            response.status,
            response.headers.get("Allow"),
            response.headers.get("Content-Type"),
            response.body,
        )

    return probe

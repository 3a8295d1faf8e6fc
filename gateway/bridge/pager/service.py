"""Pager-mode IM both ways (RFC 7572, RFC 3428), with honest acknowledgement (docs/pager.md).

SIP -> XMPP (`sip_message`): the MESSAGE is mapped (sip_message.from_sip), written to the
component link with `send_confirmed`, and answered 2xx only once the server has processed
it. Its stanza id is registered first, so an error stanza the server generates before the
confirmation (a local bounce) turns the answer into the mapped error instead. Link down ->
503 with Retry-After; never a 2xx.

XMPP -> SIP (`on_stanza`): the stanza is mapped (convert.message_to_op, sip_message body
builders), queued per destination (RFC 3428 §8: one outstanding MESSAGE per URI) and sent
by the router; a SIP error, a timeout or an unreachable target reaches the XMPP sender as
an error stanza (RFC 7247 Table 3).

Chat states are gated by `ChatStateGate`; XEP-0184 / XEP-0333 <-> IMDN correlations are
kept in bounded TTL tables. Encrypted stanzas (mappings.encryption) and retractions
(mappings.edits) are refused; corrections go as marked text. Every message ends in exactly
one INFO line, "message", with its fate.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath

from gateway.bridge.pager import sip_message as sm
from gateway.bridge.pager.chatstate import ChatStateGate, Conversation
from gateway.bridge.routing import DomainClass, SipRouter
from gateway.config import Addressing, ComponentConfig, Config
from gateway.fates import FateRing
from gateway.logs import event
from gateway.memo import Memo
from gateway.metrics import Direction, Metrics
from gateway.registrar.delivery import NoBinding
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import (
    IncomingRequest,
    MessageTooLarge,
    TransactionTimeout,
    TransportFailure,
)
from gateway.sip.validate import check_forwarding
from gateway.store.api import StoredMessage
from gateway.xmpp.boundary import boundary
from gateway.xmpp.convert import error_reply, message_to_op, stanza_error, stanza_id_of
from gateway.xmpp.disco import NO_OPTIONAL_FEATURES, Features
from gateway.xmpp.fastwrite import message_xml
from gateway.xmpp.links import LinkDown, XmppLinks
from mappings import cpim as cpim_fmt
from mappings import edits, encryption, files
from mappings import imdn as imdn_fmt
from mappings.addresses import (
    AddressError,
    AddressingMode,
    DomainMap,
    SipAddress,
    address_to_uri,
    impp_call_info,
    jid_to_sip_target,
    jid_to_sip_uri,
    sip_target_to_jid,
    sip_user_to_jid,
)
from mappings.errors import MappingError, XmppErrorInfo, sip_to_xmpp, xmpp_to_sip
from mappings.jid import Jid, parse_jid
from mappings.model import Address, ChatState, MessageOp

__all__ = ["Pager", "refused_payload"]

_OVERLOADED = XmppErrorInfo.of("resource-constraint", text="gateway overloaded, retry later")

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.pager")

S2X: Direction = "sip_to_xmpp"
X2S: Direction = "xmpp_to_sip"
# RFC 3261 §21.5.4 with what the sender must know: the XMPP server may have delivered it
IN_DOUBT_REASON = "Service Unavailable (delivery in doubt)"

K = TypeVar("K")
V = TypeVar("V")


class _TtlTable(Generic[K, V]):
    """A bounded map whose entries expire `ttl` seconds after insertion."""

    def __init__(self, limit: int, ttl: float, clock: Callable[[], float]) -> None:
        self.limit, self.ttl, self.clock = limit, ttl, clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        now = self.clock()
        self._data[key] = (now + self.ttl, value)
        self._data.move_to_end(key)
        while self._data and (
            len(self._data) > self.limit or next(iter(self._data.values()))[0] < now
        ):
            self._data.popitem(last=False)

    def get(self, key: K) -> V | None:
        found = self._data.get(key)
        return None if found is None or found[0] < self.clock() else found[1]

    def pop(self, key: K) -> V | None:
        found = self._data.pop(key, None)
        if found is None or found[0] < self.clock():
            return None
        return found[1]

    def __len__(self) -> int:
        return len(self._data)


class JidMemo:
    """`sip_target_to_jid` / `sip_user_to_jid` results, remembered (issue 11: the same users
    write again and again). Pure functions of their arguments; only successes are kept (a
    failing input fails again, with the same error); bounded, forgotten all at once."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._targets: Memo[tuple[str, DomainMap], Jid] = Memo(limit)
        # keyed by the exact spelling: `Address` compares domains case-insensitively, but
        # the escaped mapping keeps the host as written (juliet\40XMPP.Example)
        self._users: Memo[tuple[str | None, str | None, str | None, DomainMap], Jid] = Memo(limit)

    def target(self, uri: str, dmap: DomainMap) -> Jid:
        key = (uri, dmap)
        jid = self._targets.peek(key)
        if jid is None:
            jid = self._targets.put(key, sip_target_to_jid(uri, domain_map=dmap))
        return jid

    def user(self, address: Address, dmap: DomainMap) -> Jid:
        key = (address.user, address.domain, address.instance, dmap)
        jid = self._users.peek(key)
        if jid is None:
            jid = self._users.put(key, sip_user_to_jid(address, dmap))
        return jid


class _Serializer:
    """RFC 3428 §8 (R3428-11): one outstanding MESSAGE per destination, the rest queued
    (bounded per destination: overflow is resource-constraint)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy: set[str] = set()
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    async def acquire(self, key: str) -> None:
        if key not in self._busy:
            self._busy.add(key)
            return
        queue = self._waiting.setdefault(key, deque())
        if len(queue) >= self.limit:
            raise MappingError(
                f"{len(queue)} messages already wait for {key}",
                sip_status=500,
                xmpp_condition="resource-constraint",
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(key)  # the slot was handed over just before the cancel
            elif fut in queue:
                queue.remove(fut)
            raise

    def release(self, key: str) -> None:
        queue = self._waiting.get(key)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot over
                return
        self._waiting.pop(key, None)
        self._busy.discard(key)


@dataclass(frozen=True, slots=True)
class _S2XReceipt:
    """A SIP sender asked for a delivery IMDN; the XMPP recipient may answer XEP-0184."""

    request: imdn_fmt.DispositionRequest
    sip_sender: str  # the SIP sender's AOR (where the IMDN goes)
    xmpp_recipient: str  # the XMPP user's SIP URI (the IMDN's From)


@dataclass(frozen=True, slots=True)
class _X2SReceipt:
    """An XMPP sender asked for a receipt; the SIP recipient may answer with an IMDN."""

    xmpp_id: str
    xmpp_sender: str  # full JID
    sip_recipient: Address  # bare
    component: str


@dataclass(frozen=True, slots=True)
class _X2sRoute:
    """What an XMPP -> SIP message needs of its to/from, mapped once per (to, from) text."""

    from_jid: Jid
    from_text: str  # str(from_jid)
    from_key: str  # the sender's bare JID (chat-state conversation key)
    domain: str  # the component domain, lower case
    target: SipAddress  # the SIP recipient (jid_to_sip_target)
    source: Address  # the sender's address (jid_to_sip_uri(...).address)
    destination: Address  # target.address
    peer: str  # _key(target.address)
    sender_aor: str
    target_text: str
    sender_text: str
    aor: SipUri  # the target parsed as a SIP URI (the router's and serializer's key)
    call_info: str  # the sender's XMPP address for SIP (RFC 6993: `impp_call_info`)


ROUTE_MEMO_LIMIT = 4096


@dataclass(slots=True)
class _Pending:
    call_id: str | None
    bounce: XmppErrorInfo | None = None


class Offline(Protocol):
    """What the pager needs of gateway.bridge.offline.service.OfflineService."""

    on_delivered: Callable[[StoredMessage], None]

    def offer(self, message: StoredMessage) -> None: ...

    def pending(self, aor: str) -> bool: ...


class Pager:
    """The pager-mode flows; `sip_message` for the dispatcher, `on_stanza` for the links."""

    def __init__(
        self,
        cfg: Config,
        links: XmppLinks,
        router: SipRouter,
        metrics: Metrics,
        *,
        gate: ChatStateGate | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        queue_limit: int = 100,
        correlation_ttl: float = 600.0,
        correlation_limit: int = 100_000,
        offline: Offline | None = None,
        fates: FateRing | None = None,
    ) -> None:
        self.cfg = cfg
        self.offline = offline  # store-and-forward for offline hosted users (docs/offline.md)
        if offline is not None:
            offline.on_delivered = self._stored_delivered
        self.links = links
        self.router = router
        self.metrics = metrics
        self.gate = gate or ChatStateGate()
        self.clock = clock
        self.now = now
        self.fates = FateRing(cfg.admin.console_fates) if fates is None else fates
        self.success_status = cfg.sip.message_success_status
        served = frozenset(cfg.sip.served_xmpp_domains)
        self._maps: dict[str, DomainMap] = {
            c.domain: DomainMap(c.domain, _mode(c), served) for c in cfg.xmpp.components
        }
        self._mirrored = {
            c.domain: c for c in cfg.xmpp.components if c.addressing is Addressing.MIRRORED
        }
        self._escaped = next(
            (c for c in cfg.xmpp.components if c.addressing is Addressing.ESCAPED), None
        )
        self._serial = _Serializer(queue_limit)
        self._pending: dict[str, _Pending] = {}
        self._delivered: _TtlTable[str, str] = _TtlTable(correlation_limit, 120.0, clock)
        self._s2x_receipts: _TtlTable[str, _S2XReceipt] = _TtlTable(
            correlation_limit, correlation_ttl, clock
        )
        self._x2s_receipts: _TtlTable[str, _X2SReceipt] = _TtlTable(
            correlation_limit, correlation_ttl, clock
        )
        # XEP-0333 <-> IMDN display (issue 17): keyed like the receipts, kept apart because
        # a message is displayed after it is delivered (both notifications may come)
        self._s2x_displays: _TtlTable[str, _S2XReceipt] = _TtlTable(
            correlation_limit, correlation_ttl, clock
        )
        self._x2s_displays: _TtlTable[str, _X2SReceipt] = _TtlTable(
            correlation_limit, correlation_ttl, clock
        )
        self._html_peers: _TtlTable[str, bool] = _TtlTable(correlation_limit, 3600.0, clock)
        # peers that take FT-HTTP file links (docs/pager.md "Files"), learnt like text/html
        self._ft_peers: _TtlTable[str, bool] = _TtlTable(correlation_limit, 3600.0, clock)
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._cseq = itertools.count(1)
        self._outcomes: dict[tuple[str, str], Any] = {}
        self._jids = JidMemo()
        self._x2s_routes: Memo[tuple[str, str], _X2sRoute] = Memo(ROUTE_MEMO_LIMIT)
        # issue 22: peers that sent an IMDN (they answer receipt requests), and contact
        # JIDs -> peer keys for `contact_features`; bounded, forgotten all at once
        self._imdn_peers: Memo[str, bool] = Memo(correlation_limit)
        self._peer_keys: Memo[Jid, str] = Memo(ROUTE_MEMO_LIMIT)
        # Overload control (issue 27, set by the composition root): False refuses a
        # message stanza with resource-constraint before any work is queued for it.
        self.admission: Callable[[], bool] | None = None
        # XMPP -> SIP messages being bridged: queued per destination or awaiting their
        # SIP answer (what overload control bounds on this side)
        self.x2s_pending = 0
        # RFC 7573 sessions (issue 18, bridge/session/chat.py): sees every <message/>
        # first; True when it took the stanza (a chat in a session, a session's bounce)
        self.session_stanzas: Callable[[Any], Awaitable[bool]] | None = None

    def attach(self) -> None:
        """Register the message handler on every component, inside the XMPP boundary.

        A raw handler on every <message/>: slixmpp's ``message`` event fires only for
        stanzas with a <body/>, and chat states, receipts and errors have none.
        """
        for domain in self.links.domains:
            self.links.component(domain).route_messages(
                CoroutineCallback("cpim-pager", StanzaPath("message"), boundary(self.on_stanza))
            )

    def saw_register(self, aor: str, req: SipRequest) -> None:
        """An accepted REGISTER of a hosted user (`Registrar.on_register`): a device that
        lists FT-HTTP in its Accept takes file links (Linphone does; docs/pager.md "Files").
        Only a listing turns it on: a device without Accept says nothing about the others."""
        accept = req.headers.values("Accept")
        if any(files.FT_HTTP_TYPE in a.lower() for a in accept):
            try:
                self._ft_peers.put(_key(sm.uri_address(aor)), True)
            except MappingError:  # an AOR the pager never writes to (sips:)
                return

    # -- what a contact has shown (issue 22 item 2: disco and caps per contact) -----------------

    def contact_features(self, contact: Jid) -> Features:
        """The message features that hold for the SIP contact a component JID stands for,
        as its traffic showed them (docs/xmpp.md "Service discovery"): chat states once the
        peer sent isComposing or listed it in Accept (and never refused it: `ChatStateGate`),
        receipts and chat markers once it sent an IMDN, XHTML-IM while its last Accept
        listed text/html (what `content_body` needs to send text/html rather than plain
        text). None of them for a
        JID that names no SIP user."""
        bare = contact.bare
        peer = self._peer_keys.peek(bare)
        if peer is None:
            dmap = self._maps.get(bare.domain.lower())
            if dmap is None or bare.local is None:
                return NO_OPTIONAL_FEATURES
            try:
                target = jid_to_sip_target(bare, domain_map=dmap)
            except MappingError:
                return NO_OPTIONAL_FEATURES
            peer = self._peer_keys.put(bare, _key(target.address))
        imdn = self._imdn_peers.peek(peer) is True
        return Features(
            chat_states=self.gate.supported(peer),
            receipts=imdn,
            xhtml_im=self._html_peers.get(peer) is True,
            chat_markers=imdn,  # XEP-0333 displayed <-> IMDN display: an IMDN-capable peer
        )

    def session_route(self, sip_uri: str, xmpp_uri: str) -> tuple[str, Jid, Jid]:
        """For an RFC 7573 session between a SIP user and an XMPP user's SIP URI: the
        component domain, the SIP user's JID and the XMPP user's JID, mapped as pager mode
        maps a MESSAGE's From and Request-URI; MappingError (403, 404...) otherwise."""
        source = sm.uri_address(sip_uri)
        destination = sm.uri_address(xmpp_uri)
        comp, dmap = self._component_for(source)
        assert comp is not None
        to_jid = self._xmpp_recipient(destination, dmap, xmpp_uri)
        return comp.domain, self._jids.user(source, dmap), to_jid

    def session_target(self, to_text: str, from_text: str) -> tuple[str, str] | None:
        """For a chat stanza: (the SIP user's URI, the XMPP sender's SIP URI), as pager mode
        maps them; None when it is not for a SIP user (MappingError as in pager mode)."""
        route = self._x2s_routes.peek((to_text, from_text))
        if route is None:
            to_jid = parse_jid(to_text)
            dmap = self._maps.get(to_jid.domain.lower())
            if dmap is None or to_jid.local is None:
                return None
            target = jid_to_sip_target(to_jid.bare, domain_map=dmap)
            sender = jid_to_sip_uri(parse_jid(from_text).bare, domain_map=dmap)
            return str(target.aor), str(sender.aor)
        return route.target_text, route.sender_aor

    # -- helpers ------------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def _record(self, direction: Direction, outcome: str, elapsed: float) -> None:
        key = (direction, outcome)
        counter = self._outcomes.get(key)
        if counter is None:
            counter = self._outcomes[key] = self.metrics.messages.labels(direction, outcome)
        counter.inc()
        self.metrics.message_latency.labels(direction).observe(elapsed)

    def _fate(self, direction: Direction, outcome: str, start: float, **fields: Any) -> None:
        elapsed = self.clock() - start
        self._record(direction, outcome, elapsed)
        self.fates.add(direction, outcome, elapsed, fields)  # the console's list (issue 26)
        if log.isEnabledFor(logging.INFO):  # the one fate line per message (issue 6)
            fields = {"direction": direction, "fate": outcome, **fields}
            log.info("message", extra={"fields": fields})

    def _component_for(self, sender: Address) -> tuple[ComponentConfig | None, DomainMap]:
        """The component whose JIDs represent this SIP user (mirrored domain, else escaped)."""
        comp = self._mirrored.get((sender.domain or "").lower())
        comp = comp or self._escaped
        if comp is None:
            raise AddressError(
                f"SIP domain {sender.domain!r} has no component on XMPP", 403, "forbidden"
            )
        return comp, self._maps[comp.domain]

    def _xmpp_recipient(self, destination: Address, dmap: DomainMap, uri: str) -> Jid:
        kind = self.router.domains.classify(destination.domain or "")
        if kind is not DomainClass.XMPP:  # a SIP user of ours: never bridged back (loop)
            raise AddressError(f"{uri} is not an XMPP user of this gateway", 404, "item-not-found")
        return self._jids.target(uri, dmap)

    # -- SIP -> XMPP ----------------------------------------------------------------------------

    async def sip_message(self, incoming: IncomingRequest, resource: str | None = None) -> None:
        """Handle an authorised MESSAGE (the dispatcher ran the trust gate)."""
        start = self.clock()
        req = incoming.request
        ids: dict[str, Any] = {"call_id": req.call_id}
        try:
            check_forwarding(req)
            source = sm.sender_address(req, resource)
            destination = sm.recipient_address(req)
            comp, dmap = self._component_for(source)
            assert comp is not None
            to_jid = self._xmpp_recipient(destination, dmap, str(req.uri))
            from_jid = self._jids.user(source, dmap)
            stanza_id = self._new_id()
            ids.update(stanza_id=stanza_id, sender=str(from_jid), recipient=str(to_jid))
            inbound = sm.from_sip(req, trans_id=stanza_id, source=source, destination=destination)
        except MappingError as exc:
            self._answer_error(incoming, exc, start, ids)
            return
        peer = _key(source)
        accept = req.headers.values("Accept")
        if accept:
            self.gate.saw_accept(peer, accept)
            self._html_peers.put(peer, any("text/html" in a.lower() for a in accept))
            self._ft_peers.put(peer, any(files.FT_HTTP_TYPE in a.lower() for a in accept))
        if inbound.notification is not None:
            self._imdn_peers.put(peer, True)  # it constructs IMDNs (RFC 5438 §7.2.1)
            await self._imdn_from_sip(
                incoming, inbound.notification, source=source, start=start, ids=ids
            )
            return
        op = inbound.op
        assert op is not None
        if any(p.media_type == files.FT_HTTP_TYPE for p in op.parts):
            self._ft_peers.put(peer, True)  # it sends file links: it takes them
        conversation = (_key_jid(to_jid), peer)
        if op.chat_state is not None and not op.parts:
            self.gate.saw_support(peer)
            if not self.gate.should_forward(conversation, op.chat_state):
                incoming.reply(self.success_status)
                self._fate(S2X, "collapsed", start, status=self.success_status, **ids)
                return
        elif self.gate.supported(peer):
            op = replace(op, chat_state=op.chat_state or ChatState.ACTIVE)
            self.gate.content_forwarded(conversation)
        stanza_id = ids["stanza_id"]
        if (op.receipt_request or op.markable) and inbound.disposition is not None:
            # Recorded first: the recipient's receipt may overtake our confirmation.
            me = str(address_to_uri(destination.bare))
            record = _S2XReceipt(inbound.disposition, str(address_to_uri(source.bare)), me)
            if op.receipt_request:
                self._s2x_receipts.put(stanza_id, record)
            if op.markable:
                self._s2x_displays.put(stanza_id, record)
        if not await self._deliver(
            incoming, op, domain=comp.domain, from_jid=from_jid, to_jid=to_jid, start=start, ids=ids
        ):
            self._s2x_receipts.pop(stanza_id)
            self._s2x_displays.pop(stanza_id)

    async def _deliver(
        self,
        incoming: IncomingRequest,
        op: MessageOp,
        *,
        domain: str,
        from_jid: Jid,
        to_jid: Jid,
        start: float,
        ids: dict[str, Any],
    ) -> bool:
        """Write the stanza, answer the MESSAGE; True when it was answered 2xx."""
        stanza_id = ids["stanza_id"]
        if not self.links.is_up(domain):
            self._answer_unavailable(incoming, self.links.retry_after(domain), start, ids)
            return False
        stanza = message_xml(op, mfrom=str(from_jid), mto=str(to_jid), stanza_id=stanza_id)
        pending = self._pending[stanza_id] = _Pending(ids["call_id"])
        try:
            await self.links.send_confirmed(domain, stanza)
        except LinkDown as exc:
            retry = exc.retry_after or self.links.retry_after(domain)
            self._answer_unavailable(incoming, retry, start, ids, in_doubt=exc.in_doubt)
            return False
        finally:
            self._pending.pop(stanza_id, None)
        if pending.bounce is not None:
            err = pending.bounce
            status = _bounce_status(err, full_jid=to_jid.is_full)
            incoming.reply(status.code, status.reason, headers=_contact(status.contact))
            self._fate(S2X, "rejected", start, status=status.code, condition=err.condition, **ids)
            return False
        incoming.reply(self.success_status)
        self._delivered.put(stanza_id, ids["call_id"] or "-")
        self._fate(S2X, "delivered", start, status=self.success_status, **ids)
        return True

    def _answer_error(
        self, incoming: IncomingRequest, exc: MappingError, start: float, ids: dict[str, Any]
    ) -> None:
        extra = getattr(exc, "headers", ())
        incoming.reply(exc.sip_status, getattr(exc, "phrase", None), headers=extra)
        self._fate(S2X, "rejected", start, status=exc.sip_status, reason=exc.reason, **ids)

    def _answer_unavailable(
        self,
        incoming: IncomingRequest,
        retry: int,
        start: float,
        ids: dict[str, Any],
        *,
        in_doubt: bool = False,
    ) -> None:
        """503: the link is down. `in_doubt`: the stanza was written and the link died
        before the server confirmed it, so it may have been delivered; the reason phrase
        and the fate line say so (docs/reliability.md, "Delivery in doubt")."""
        retry = max(1, retry)
        headers = [("Retry-After", str(retry))]
        if in_doubt:
            incoming.reply(503, IN_DOUBT_REASON, headers=headers)
            self._fate(S2X, "failed", start, status=503, retry_after=retry, in_doubt=True, **ids)
            return
        incoming.reply(503, headers=headers)
        self._fate(S2X, "failed", start, status=503, retry_after=retry, **ids)

    async def _imdn_from_sip(
        self,
        incoming: IncomingRequest,
        imdn: imdn_fmt.Imdn,
        *,
        source: Address,
        start: float,
        ids: dict[str, Any],
    ) -> None:
        """An IMDN for a message an XMPP user sent: a XEP-0184 receipt (or error), or a
        XEP-0333 displayed marker, to them."""
        table = self._x2s_displays if imdn.kind == "display" else self._x2s_receipts
        record = table.pop(imdn.message_id)
        if record is None or record.sip_recipient != source.bare:
            incoming.reply(self.success_status)  # nothing (left) to tell anybody
            self._fate(S2X, "ignored", start, status=self.success_status, imdn=imdn.message_id)
            return
        outcome = imdn_fmt.xmpp_outcome(imdn, record.xmpp_id)
        ids["imdn"] = imdn.message_id
        if isinstance(outcome, imdn_fmt.Receipt | imdn_fmt.Displayed):
            dmap = self._maps[record.component]
            receipt = isinstance(outcome, imdn_fmt.Receipt)
            op = MessageOp(
                source=source.bare,
                destination=source.bare,
                trans_id=ids["stanza_id"],
                receipt_for=outcome.xmpp_id if receipt else None,
                displayed_for=None if receipt else outcome.xmpp_id,
            )
            from_jid = sip_user_to_jid(source.bare, dmap)
            to_jid = parse_jid(record.xmpp_sender)
            await self._deliver(
                incoming,
                op,
                domain=record.component,
                from_jid=from_jid,
                to_jid=to_jid,
                start=start,
                ids=ids,
            )
            return
        if isinstance(outcome, imdn_fmt.DeliveryFailure):  # X184-03: no failure receipt
            sip_user = sip_user_to_jid(source.bare, self._maps[record.component])
            original = self.links.component(record.component).make_message(
                mto=str(sip_user), mfrom=record.xmpp_sender
            )
            original.xml.set("id", record.xmpp_id)
            info = XmppErrorInfo.of(outcome.xmpp_condition, text=f"IMDN {outcome.status}")
            self.links.send(record.component, error_reply(original, info))
        incoming.reply(self.success_status)
        self._fate(S2X, "delivered", start, status=self.success_status, **ids)

    # -- XMPP -> SIP ----------------------------------------------------------------------------

    async def on_stanza(self, msg: Any) -> None:
        """Every <message/> addressed to a component domain (boundary-wrapped)."""
        if self.session_stanzas is not None and await self.session_stanzas(msg):
            return
        await self.pager_stanza(msg)

    async def pager_stanza(self, msg: Any) -> None:
        """A <message/> in pager mode (also what a session that could not be set up hands
        back, RFC 7573 fallback)."""
        mtype = msg.xml.get("type")
        if mtype == "error":
            self._on_error_stanza(msg)
            return
        if self.admission is not None and not self.admission():
            self._refuse_overloaded(msg)
            return
        start = self.clock()
        xml = msg.xml
        to_text = xml.get("to") or ""
        from_text = xml.get("from") or ""
        route = self._x2s_routes.peek((to_text, from_text)) if mtype != "groupchat" else None
        stanza_id = stanza_id_of(msg)
        if route is None:
            route = self._x2s_route(mtype, to_text, from_text, stanza_id, start)
            if route is None:
                return  # to the component itself: nothing to bridge
        ids: dict[str, Any] = {"stanza_id": stanza_id, "sender": route.from_text}
        refused = refused_payload(xml, msg.namespace)
        if refused is not None:  # never its fallback body (issue 17, docs/pager.md)
            ids.update(recipient=route.peer, reason=refused.reason)
            self._fate(X2S, "rejected", start, condition=refused.xmpp_condition, **ids)
            raise refused  # the XMPP boundary answers with the condition and text
        try:
            op = message_to_op(msg, source=route.source, destination=route.destination)
        except ValueError:
            return  # nothing the model carries (e.g. only an unknown extension)
        if isinstance(edits.edit_of(xml), edits.Correction):
            op = edits.corrected(op)  # XEP-0308: a new text with the marker
        peer = route.peer
        conversation: Conversation = (route.from_key, peer)
        ids["recipient"] = peer
        content = self._x2s_content(
            op,
            conversation=conversation,
            sender_aor=route.sender_aor,
            target=route.target,
            from_jid=route.from_jid,
            domain=route.domain,
        )
        if content is None:  # a chat state held back, an unasked-for receipt or marker
            self._fate(X2S, "held", start, **ids)
            return
        body, kind = content
        call_id = sm.call_id_for(op.thread, self._fresh_call_id)
        ids["call_id"] = call_id
        out = sm.OutboundMessage(
            request_uri=route.target_text,
            from_uri=route.sender_text,
            to_uri=route.target_text,
            call_id=call_id,
            cseq=next(self._cseq) % 2**31,
            from_tag=secrets.token_hex(6),
            content=body,
            subject=sm.pick_subject(op) if kind == "content" else None,
            lang=op.lang if kind == "content" else None,
            max_forwards=op.max_forwards,
            call_info=route.call_info,
        )

        def build(request_uri: str) -> SipRequest:
            if request_uri == out.request_uri:
                return sm.build_message(out)
            return sm.build_message(replace(out, request_uri=request_uri))

        def keep() -> StoredMessage:  # for the offline queue (docs/offline.md)
            message_id = _message_id(body)
            return StoredMessage(
                message_id=message_id,
                aor=route.aor.aor,
                stored_at=0.0,
                expires_at=0.0,
                sender=route.from_text,
                stanza_id=stanza_id,
                component=route.domain,
                recipient=to_text,
                from_uri=out.from_uri,
                call_id=out.call_id,
                content_type=body[0],
                body=body[1],
                subject=out.subject,
                lang=out.lang,
                call_info=out.call_info,
                receipt_id=message_id if op.receipt_request else None,
            )

        self.x2s_pending += 1
        try:
            await self._send_x2s(
                msg,
                aor=route.aor,
                build=build,
                kind=kind,
                peer=peer,
                domain=route.domain,
                start=start,
                ids=ids,
                keep=keep if kind == "content" and route.aor.gr is None else None,
            )
        finally:
            self.x2s_pending -= 1

    def _refuse_overloaded(self, msg: Any) -> None:
        """Overload (issue 27): resource-constraint, type wait (RFC 6120 §8.3.3.18),
        instead of a queue that grows; counted by the policy, no fate line per stanza."""
        domain = (msg.xml.get("to") or "").partition("/")[0].rpartition("@")[2].lower()
        if domain in self._maps:  # a component domain: the error goes out on its link
            self.links.send(domain, error_reply(msg, _OVERLOADED))

    def _x2s_route(
        self, mtype: str | None, to_text: str, from_text: str, stanza_id: str, start: float
    ) -> _X2sRoute | None:
        """The addresses of a stanza's to/from, mapped (RFC 7247 §5); None when it is for the
        component itself. Remembered when it succeeds (pure in its inputs and the config);
        a failure is mapped again next time, with its fate line and the same error."""
        to_jid = parse_jid(to_text)
        from_jid = parse_jid(from_text)
        domain = to_jid.domain.lower()
        dmap = self._maps.get(domain)
        if dmap is None or to_jid.local is None:
            return None
        ids: dict[str, Any] = {"stanza_id": stanza_id, "sender": str(from_jid)}
        try:
            if mtype == "groupchat":
                raise MappingError(
                    "groupchat is not bridged", sip_status=405, xmpp_condition="not-acceptable"
                )
            target = jid_to_sip_target(to_jid.bare, domain_map=dmap)
            sender = jid_to_sip_uri(from_jid, domain_map=dmap)
        except MappingError as exc:
            self._fate(
                X2S, "rejected", start, condition=exc.xmpp_condition, recipient=str(to_jid), **ids
            )
            raise  # the XMPP boundary answers with the condition
        target_text = str(target)
        route = _X2sRoute(
            from_jid=from_jid,
            from_text=str(from_jid),
            from_key=_key_jid(from_jid),
            domain=domain,
            target=target,
            source=sender.address,
            destination=target.address,
            peer=_key(target.address),
            sender_aor=str(sender.aor),
            target_text=target_text,
            sender_text=str(sender),
            aor=_sip_uri(target_text),
            call_info=impp_call_info(from_jid),
        )
        return self._x2s_routes.put((to_text, from_text), route)

    def _x2s_content(
        self,
        op: MessageOp,
        *,
        conversation: Conversation,
        sender_aor: str,
        target: SipAddress,
        from_jid: Jid,
        domain: str,
    ) -> tuple[tuple[str, bytes], str] | None:
        now = self.clock()
        if op.receipt_for is not None and not op.parts:
            record = self._s2x_receipts.pop(op.receipt_for)
            if record is None or record.sip_sender != str(address_to_uri(target.address.bare)):
                return None
            body = sm.delivery_notification_body(
                record.request,
                sender_uri=record.xmpp_recipient,
                recipient_uri=record.sip_sender,
                message_id=imdn_fmt.new_message_id(),
            )
            return body, "receipt"
        if op.displayed_for is not None and not op.parts:  # XEP-0333 -> RFC 5438 §7.2.1.2
            record = self._s2x_displays.pop(op.displayed_for)
            if record is None or record.sip_sender != str(address_to_uri(target.address.bare)):
                return None
            body = sm.display_notification_body(
                record.request,
                sender_uri=record.xmpp_recipient,
                recipient_uri=record.sip_sender,
                message_id=imdn_fmt.new_message_id(),
            )
            return body, "marker"
        text = sm.content_body(
            op,
            html_ok=bool(self._html_peers.get(conversation[1])),
            ft_ok=bool(self._ft_peers.get(conversation[1])),
        )
        if text is None:
            if op.chat_state is None or not self.gate.should_send(conversation, op.chat_state, now):
                return None
            composing = sm.composing_body(op.chat_state)
            return (composing, "chat-state") if composing else None
        self.gate.content_sent(conversation, now)
        if op.receipt_request or op.markable:
            message_id = imdn_fmt.new_message_id()
            text = sm.with_receipt_request(
                text,
                sender_uri=sender_aor,
                recipient_uri=str(address_to_uri(target.address.bare)),
                message_id=message_id,
                now=self.now(),
                subjects=op.subjects,
                delivery=op.receipt_request,
                display=op.markable,
            )
            asked = _X2SReceipt(op.trans_id, str(from_jid), target.address.bare, domain)
            if op.receipt_request:
                self._x2s_receipts.put(message_id, asked)
            if op.markable:
                self._x2s_displays.put(message_id, asked)
        return text, "content"

    def _fresh_call_id(self) -> str:
        return f"{secrets.token_hex(8)}@{self._prefix}"

    async def _send_x2s(
        self,
        msg: Any,
        *,
        aor: SipUri,
        build: Callable[[str], SipRequest],
        kind: str,
        peer: str,
        domain: str,
        start: float,
        ids: dict[str, Any],
        keep: Callable[[], StoredMessage] | None = None,
    ) -> None:
        error: XmppErrorInfo | None = None
        response: SipResponse | None = None
        if keep is not None and self.offline is not None and self.offline.pending(aor.aor):
            try:  # stored messages wait for this user: join the queue, do not overtake
                self._store(keep, start, ids)
                return
            except MappingError as refused:
                self._fate(X2S, "rejected", start, condition=refused.xmpp_condition, **ids)
                if ids["stanza_id"]:
                    self.links.send(domain, error_reply(msg, refused.to_xmpp()))
                return
        await self._serial.acquire(aor.aor)
        try:
            response = await self.router.send(aor, build)
        except NoBinding as exc:
            if keep is None or self.offline is None:
                error = exc.to_xmpp()
            else:
                try:
                    self._store(keep, start, ids)
                    return  # stored: no receipt until a device takes it (docs/offline.md)
                except MappingError as refused:  # over quota: 480 with its text
                    error = refused.to_xmpp()
        except MappingError as exc:
            error = exc.to_xmpp()
        except TransactionTimeout:
            error = XmppErrorInfo.of("remote-server-timeout", text="no answer from SIP")
        except TransportFailure as exc:
            error = XmppErrorInfo.of("remote-server-timeout", text=str(exc))
        except MessageTooLarge as exc:
            error = XmppErrorInfo.of("policy-violation", text=str(exc))
        finally:
            self._serial.release(aor.aor)
        if response is not None:
            if kind == "chat-state":
                self.gate.answered(peer, response.status)
            if response.is_success:
                self._fate(X2S, "delivered", start, status=response.status, kind=kind, **ids)
                return
            contact = response.contacts[0].uri if response.contacts else None
            error = sip_to_xmpp(
                response.status,
                response.reason or None,
                new_address=str(contact) if contact is not None else None,
            )
            if response.status == 415:
                self._html_peers.put(peer, False)
                self._ft_peers.put(peer, False)
        assert error is not None
        status = response.status if response is not None else None
        outcome = "timeout" if error.condition == "remote-server-timeout" else "failed"
        if response is not None:
            outcome = "rejected"
        self._fate(X2S, outcome, start, status=status, condition=error.condition, kind=kind, **ids)
        if kind == "content" and ids["stanza_id"]:
            self.links.send(domain, error_reply(msg, error))

    def _store(self, keep: Callable[[], StoredMessage], start: float, ids: dict[str, Any]) -> None:
        """Hand the message to the offline queue (committed when this returns). Over quota
        or a store failure raise MappingError (480 / recipient-unavailable with the quota's
        text, 500)."""
        assert self.offline is not None
        message = keep()
        self.offline.offer(message)  # raises QuotaExceeded (a MappingError)
        self._fate(X2S, "stored", start, message_id=message.message_id, **ids)

    def _stored_delivered(self, m: StoredMessage) -> None:
        """A device took a stored message (2xx): its IMDN, when one was asked for, now
        becomes the XEP-0184 receipt (the correlation may have expired while it waited)."""
        if m.receipt_id is None:
            return
        with_address = sm.uri_address(m.aor).bare
        self._x2s_receipts.put(
            m.receipt_id, _X2SReceipt(m.stanza_id, m.sender, with_address, m.component)
        )

    # -- bounces ------------------------------------------------------------------------------

    def _on_error_stanza(self, msg: Any) -> None:
        stanza_id = msg.xml.get("id") or ""
        pending = self._pending.get(stanza_id)
        if pending is not None:
            pending.bounce = stanza_error(msg)  # answered when the confirmation arrives
            return
        call_id = self._delivered.pop(stanza_id)
        if call_id is not None:
            err = stanza_error(msg)
            event(
                log,
                logging.INFO,
                "late bounce after 2xx",
                stanza_id=stanza_id,
                call_id=call_id,
                condition=err.condition,
            )


# -- small pure helpers ---------------------------------------------------------------------


def _message_id(content: tuple[str, bytes]) -> str:
    """The IMDN Message-ID of a message/cpim body (RFC 5438 §6.3), else a fresh one: set
    once, when the message is stored, and kept on every retry."""
    if content[0] == "message/cpim":
        try:
            request = imdn_fmt.read_disposition_request(cpim_fmt.parse_cpim(content[1]))
        except cpim_fmt.CpimError:
            request = None
        if request is not None:
            return request.message_id
    return imdn_fmt.new_message_id()


def refused_payload(xml: Any, namespace: str) -> MappingError | None:
    """The error for a stanza that must not reach SIP as its fallback body: end-to-end
    encrypted (mappings.encryption) or a retraction (mappings.edits); else None."""
    found = encryption.detect_xmpp(xml, f"{{{namespace}}}body")
    if found is not None:
        return encryption.refusal(found)
    edit = edits.edit_of(xml)
    if isinstance(edit, edits.Retraction):
        return edits.retraction_refused(edit)
    return None


def _mode(comp: ComponentConfig) -> AddressingMode:
    if comp.addressing is Addressing.MIRRORED:
        return AddressingMode.MIRRORED
    return AddressingMode.ESCAPED


def _key(address: Address) -> str:
    return f"{address.user}@{(address.domain or '').lower()}"


def _key_jid(jid: Jid) -> str:
    return str(jid.bare)


def _sip_uri(text: str) -> SipUri:
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise AddressError(f"not a SIP URI: {text}", 416, "jid-malformed")
    return uri


def _contact(contact: str | None) -> list[tuple[str, str]]:
    return [] if contact is None else [("Contact", f"<{contact}>")]


# A bounce for a bare JID with service-unavailable: RFC 6121 §8.5.2.2.1 lets a server answer
# that for an account that does not exist (and for one that takes no messages now); the SIP
# sender sees 404 (docs/pager.md "Bounces"), not RFC 7247 note (5)'s 403.
def _bounce_status(err: XmppErrorInfo, *, full_jid: bool) -> Any:
    if err.condition == "service-unavailable" and not full_jid:
        return xmpp_to_sip("item-not-found", full_jid=True, text=err.text)
    return xmpp_to_sip(err.condition, full_jid=full_jid, text=err.text, new_address=err.new_address)

"""`SessionChat` (RFC 7573 glue, docs/sessions.md "Chat over sessions") on in-memory stubs:
a real `Pager` for addressing and pager mode, stub links and router, fake MSRP legs.

Held success REPORTs (released by the receipt, one overtaking the server's confirmation,
the `receipt_wait` fallback, the per-session cap), bounces -> failure REPORTs, replies
into the session and their failures, and XMPP-initiated sessions (messages waiting for
the INVITE, the cap on them, the pager fallback: each message exactly once).
"""

from __future__ import annotations

import asyncio
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.bridge.pager.service import Pager
from gateway.bridge.routing import Domains
from gateway.bridge.session import chat as chat_mod
from gateway.bridge.session.chat import SessionChat
from gateway.bridge.session.media import Call
from gateway.bridge.session.msrp_media import Leg
from gateway.bridge.session.service import Outcome
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.metrics import Metrics
from gateway.msrp.transport.service import SendOutcome
from gateway.sip.message import SipRequest, make_response
from gateway.xmpp.component import GatewayComponent
from mappings.errors import MappingError
from tests.harness.gateway_proc import gateway_config
from tests.harness.stanzas import stanza_from_text

pytestmark = pytest.mark.component

NS = "jabber:component:accept"
COMP = "sip.localhost"
ROMEO_SIP = f"sip:romeo@{COMP}"
JULIET_SIP = "sip:juliet@localhost"


class _Links:
    def __init__(self) -> None:
        self.domains = [COMP]
        self.sent: list[Any] = []
        self.during_confirm: Callable[[str], None] | None = None

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(stanza)
        return True

    def is_up(self, domain: str) -> bool:
        return True

    async def send_confirmed(self, domain: str, stanza: Any, timeout: float | None = None) -> None:
        self.sent.append(stanza)
        if self.during_confirm is not None:
            self.during_confirm(ET.fromstring(stanza).get("id") or "")


class _Router:
    def __init__(self, cfg: Any) -> None:
        self.domains = Domains(cfg)
        self.requests: list[SipRequest] = []

    async def send(self, aor: Any, build: Callable[[str], SipRequest], *, user: Any = None) -> Any:
        request = build(str(aor))
        self.requests.append(request)
        return make_response(request, 200)


class _Incoming:
    """What `MsrpSession` hands over for one received message."""

    def __init__(self, body: bytes, content_type: str = "text/plain", report: bool = True):
        self.message_id = "m1"
        self.content_type = content_type
        self.body = body
        self.wants_success_report = report
        self.answers: list[int] = []

    def accept(self) -> None:
        self.answers.append(200)

    def reject(self, code: int = 500) -> None:
        self.answers.append(code)


class _Leg(Leg):
    sent: list[tuple[str, bytes]]
    outcome: int = 200

    async def send(self, content_type: str, body: bytes) -> SendOutcome:
        self.sent.append((content_type, body))
        return SendOutcome("x", self.outcome)

    takes_composing = True

    def takes_wrapped(self, inner: str) -> bool:
        return False

    def accepts(self, media_type: str) -> bool:
        return media_type != "application/im-iscomposing+xml" or self.takes_composing


class Rig:
    def __init__(self, receipt_wait: float = 30.0, preference: str = "pager") -> None:
        cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
        self.comp = GatewayComponent(
            ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
        )
        self.links = _Links()
        self.router = _Router(cfg)
        self.pager = Pager(cfg, self.links, self.router, Metrics())  # type: ignore[arg-type]
        self.chat = SessionChat(
            self.pager,
            self.links,  # type: ignore[arg-type]
            receipt_wait=receipt_wait,
            preference=preference,
        )
        self.hung_up: list[Call] = []
        self.chat.hangup = self.hung_up.append

    def leg(self, role: str = "uas") -> _Leg:
        call = Call("c1", "t1", role, JULIET_SIP, ROMEO_SIP, "udp")  # type: ignore[arg-type]
        leg = _Leg(call, SimpleNamespace(local_uri="msrp://127.0.0.1:1/s;tcp"))  # type: ignore[arg-type]
        leg.sent = []
        self.chat.admit(call)
        self.chat.up(leg)
        return leg

    def stanza(self, inner: str, sid: str = "x1", mtype: str = "chat") -> Any:
        raw = (
            f'<message xmlns="{NS}" to="romeo@{COMP}" from="juliet@localhost/balcony"'
            f' id="{sid}" type="{mtype}">{inner}</message>'
        )
        return stanza_from_text(self.comp, raw)

    async def s2x(self, leg: Leg, incoming: _Incoming) -> None:
        self.chat.message(leg, incoming)  # type: ignore[arg-type]
        await settle()

    def last_id(self) -> str:
        return ET.fromstring(self.links.sent[-1]).get("id") or ""


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_report_held_until_receipt() -> None:
    rig = Rig()
    leg = rig.leg()
    incoming = _Incoming(b"hello")
    await rig.s2x(leg, incoming)
    sent = ET.fromstring(rig.links.sent[-1])
    assert sent.get("type") == "chat" and sent.get("to") == "juliet@localhost"
    assert sent.find("{urn:xmpp:receipts}request") is not None
    assert incoming.answers == []  # held (RFC 7573 §7)
    receipt = rig.stanza(f"<received xmlns='urn:xmpp:receipts' id='{rig.last_id()}'/>")
    assert await rig.chat.take(receipt)
    assert incoming.answers == [200]


async def test_receipt_overtaking_the_confirmation_counts() -> None:
    rig = Rig()
    leg = rig.leg()

    def overtake(stanza_id: str) -> None:
        receipt = rig.stanza(f"<received xmlns='urn:xmpp:receipts' id='{stanza_id}'/>")
        asyncio.get_running_loop().create_task(rig.chat.take(receipt))

    rig.links.during_confirm = overtake
    incoming = _Incoming(b"fast")
    await rig.s2x(leg, incoming)
    assert incoming.answers == [200]


async def test_bounce_becomes_failure_report() -> None:
    rig = Rig()
    leg = rig.leg()

    def bounce(stanza_id: str) -> None:
        error = rig.stanza(
            "<error type='cancel'><service-unavailable "
            "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
            sid=stanza_id,
            mtype="error",
        )
        asyncio.get_running_loop().create_task(rig.chat.take(error))

    rig.links.during_confirm = bounce
    incoming = _Incoming(b"anyone?")
    await rig.s2x(leg, incoming)
    assert incoming.answers == [403]


async def test_report_sent_after_receipt_wait() -> None:
    rig = Rig(receipt_wait=0.01)
    leg = rig.leg()
    incoming = _Incoming(b"no receipts here")
    await rig.s2x(leg, incoming)
    assert incoming.answers == []
    await asyncio.sleep(0.05)
    assert incoming.answers == [200]


async def test_held_reports_are_capped_per_session() -> None:
    rig = Rig()
    leg = rig.leg()
    held = [_Incoming(b"m") for _ in range(chat_mod.HELD_LIMIT)]
    for incoming in held:
        await rig.s2x(leg, incoming)
    assert all(i.answers == [] for i in held)
    extra = _Incoming(b"one more")
    await rig.s2x(leg, extra)
    assert extra.answers == [200]  # not held: sent once the server took it


async def test_unusable_content_and_no_report_asked() -> None:
    rig = Rig()
    leg = rig.leg()
    html = _Incoming(b"<p>x</p>", "text/html")
    await rig.s2x(leg, html)
    assert html.answers == [415]
    quiet = _Incoming(b"fire and forget", report=False)
    await rig.s2x(leg, quiet)
    assert quiet.answers == [200]  # accept() sends a REPORT only if one was asked for
    assert ET.fromstring(rig.links.sent[-1]).find("{urn:xmpp:receipts}request") is None


async def test_reply_goes_into_the_session_and_failure_comes_back() -> None:
    rig = Rig()
    leg = rig.leg()
    assert await rig.chat.take(rig.stanza("<body>by yonder blessed moon</body>"))
    await settle()
    assert leg.sent == [("text/plain;charset=UTF-8", b"by yonder blessed moon")]
    assert await rig.chat.take(
        rig.stanza("<composing xmlns='http://jabber.org/protocol/chatstates'/>")
    )
    await settle()
    assert leg.sent[-1][0] == "application/im-iscomposing+xml"
    asked = "<body>mark it</body><request xmlns='urn:xmpp:receipts'/>"
    assert await rig.chat.take(rig.stanza(asked, sid="ask"))
    await settle()
    receipt = ET.fromstring(rig.links.sent[-1])  # its success REPORT -> <received/>
    assert receipt.get("to") == "juliet@localhost/balcony"
    assert receipt.find("{urn:xmpp:receipts}received").get("id") == "ask"  # type: ignore[union-attr]
    leg.outcome = 413
    assert await rig.chat.take(rig.stanza("<body>too long</body>", sid="big"))
    await settle()
    error = rig.links.sent[-1]
    assert error["type"] == "error" and error["id"] == "big"
    condition = "{urn:ietf:params:xml:ns:xmpp-stanzas}policy-violation"
    assert error.xml.find(f"{{*}}error/{condition}") is not None  # RFC 7247: 413
    assert await rig.chat.take(rig.stanza("<gone xmlns='http://jabber.org/protocol/chatstates'/>"))
    assert rig.hung_up == [leg.call]


async def test_bye_from_sip_sends_gone_and_frees_the_pair() -> None:
    rig = Rig()
    leg = rig.leg()
    rig.chat.down(leg, "bye-received")
    gone = ET.fromstring(rig.links.sent[-1])
    assert gone.find("{http://jabber.org/protocol/chatstates}gone") is not None
    assert not await rig.chat.take(rig.stanza("<body>after the end</body>"))  # pager mode


async def test_xmpp_initiated_waits_then_falls_back_once() -> None:
    rig = Rig(preference="session")
    rig.chat.down(rig.leg(), "bye-sent")  # Romeo took a session once: known capable
    answer: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    invited: list[tuple[str, str]] = []

    async def invite(local: str, remote: str) -> Outcome:
        invited.append((local, remote))
        return await answer

    rig.chat.invite = invite
    for i in range(3):
        assert await rig.chat.take(rig.stanza(f"<body>m{i}</body>", sid=f"s{i}"))
    await settle()
    assert len(invited) == 1 and invited[0][1] == ROMEO_SIP
    assert rig.router.requests == []
    answer.set_result(Outcome("fallback", Call("c2", "t2", "uac", "", "", ""), 488, None))
    await settle()
    bodies = [r.body for r in rig.router.requests]
    assert bodies == [b"m0", b"m1", b"m2"]  # by MESSAGE, in order, once each
    assert not await rig.chat.take(rig.stanza("<body>later</body>"))  # forgotten: pager


async def test_messages_waiting_for_a_session_are_capped() -> None:
    rig = Rig(preference="session")
    rig.chat.down(rig.leg(), "bye-sent")

    async def invite(local: str, remote: str) -> Outcome:
        await asyncio.Event().wait()
        raise AssertionError

    rig.chat.invite = invite
    for i in range(chat_mod.WAITING_LIMIT):
        assert await rig.chat.take(rig.stanza(f"<body>{i}</body>", sid=f"w{i}"))
    with pytest.raises(MappingError) as err:
        await rig.chat.take(rig.stanza("<body>overflow</body>"))
    assert err.value.xmpp_condition == "resource-constraint"
    before = len(rig.links.sent)
    await rig.chat.stop(grace=0)
    await settle()
    errors = rig.links.sent[before:]  # stopping: each waiting sender gets an error
    assert len(errors) == chat_mod.WAITING_LIMIT
    assert all(e["type"] == "error" for e in errors)


async def test_messages_before_the_ack_wait_for_it() -> None:
    """An active peer may send once it has our answer; the ACK can come later."""
    rig = Rig()
    call = Call("c9", "t9", "uas", JULIET_SIP, ROMEO_SIP, "udp")
    leg = _Leg(call, SimpleNamespace(local_uri="msrp://127.0.0.1:1/s;tcp"))  # type: ignore[arg-type]
    leg.sent = []
    early = [_Incoming(f"early {i}".encode(), report=False) for i in range(chat_mod.EARLY_LIMIT)]
    for incoming in early:
        rig.chat.message(leg, incoming)  # type: ignore[arg-type]
    over = _Incoming(b"too early")
    rig.chat.message(leg, over)  # type: ignore[arg-type]
    assert over.answers == [413] and rig.links.sent == []
    rig.chat.up(leg)
    await settle()
    bodies = [ET.fromstring(x).findtext("body") for x in rig.links.sent]
    assert bodies == [f"early {i}" for i in range(chat_mod.EARLY_LIMIT)]


async def test_encrypted_and_retractions_never_reach_the_session() -> None:
    """As in pager mode (docs/pager.md): an OMEMO stanza's fallback body is not sent."""
    rig = Rig()
    leg = rig.leg()
    omemo = (
        "<body>I sent you an OMEMO encrypted message</body>"
        "<encrypted xmlns='eu.siacs.conversations.axolotl'><payload>x</payload></encrypted>"
    )
    with pytest.raises(MappingError) as err:
        await rig.chat.take(rig.stanza(omemo))
    assert err.value.xmpp_condition == "not-acceptable"
    correction = "<body>fixed</body><replace xmlns='urn:xmpp:message-correct:0' id='x0'/>"
    assert await rig.chat.take(rig.stanza(correction))
    await settle()
    assert leg.sent and leg.sent[-1][1].endswith(b"fixed") and leg.sent[-1][1] != b"fixed"


async def test_chat_states_only_to_peers_taking_iscomposing() -> None:
    rig = Rig()
    leg = rig.leg()
    leg.takes_composing = False
    composing = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
    assert await rig.chat.take(rig.stanza(composing))
    await settle()
    assert leg.sent == []  # its SDP did not list isComposing: nothing sent, nothing logged

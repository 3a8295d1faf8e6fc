"""XMPP -> SIP conversion fast path (issue 11 round 4) against the code it replaced.

`Pager.on_stanza` now maps a stanza's to/from once per (to, from) text (`_x2s_route`,
remembered) and reads the id without slixmpp's interface lookup (`convert.stanza_id_of`).
The oracle below is the previous `on_stanza` and `message_to_op`, verbatim. Two pagers, one
running each, get the same random stanzas (odd and escaped JIDs, non-ASCII, types, bodies and
subjects with xml:lang, thread, XHTML-IM, chat states, receipts, unknown payloads) with the
same randomness and clock; everything observable must be equal: each SIP request built (as
bytes, for the target and for another contact), fate lines, error stanzas sent, exceptions.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mappings.imdn as imdn_fmt
from gateway.bridge.pager import sip_message as sm
from gateway.bridge.pager.chatstate import Conversation
from gateway.bridge.pager.service import X2S, Pager, _key, _key_jid, _sip_uri
from gateway.bridge.routing import Domains
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest, make_response
from gateway.sip.serializer import serialize
from gateway.sip.useragent import TransactionTimeout
from gateway.xmpp import convert
from gateway.xmpp.component import GatewayComponent
from mappings.addresses import jid_to_sip_target, jid_to_sip_uri
from mappings.errors import MappingError
from mappings.jid import parse_jid
from mappings.model import Address, BodyPart, MessageOp, Subject
from tests.harness.gateway_proc import gateway_config

NS = "jabber:component:accept"
COMP = "sip.localhost"

# -- the oracle: the code before the fast path ------------------------------------------------


def old_message_to_op(msg: Any, *, source: Address, destination: Address) -> MessageOp:
    xml = msg.xml
    ns = f"{{{msg.namespace}}}"
    lang = xml.get(convert.XML_LANG) or None
    body_text: str | None = None
    subjects: list[Subject] = []
    thread = None
    chat_state = None
    request = False
    receipt_for = None
    xhtml: bytes | None = None
    for child in xml:
        tag = child.tag
        if tag == f"{ns}body":
            if body_text is None or (child.get(convert.XML_LANG) or lang) == lang:
                body_text = body_text if body_text is not None else (child.text or "")
        elif tag == f"{ns}subject":
            slang = child.get(convert.XML_LANG) or None
            if child.text and all(s.lang != slang for s in subjects):
                subjects.append(Subject(child.text, slang))
        elif tag == f"{ns}thread":
            thread = (child.text or "").strip() or None
        elif tag in convert._CHAT_STATES:
            chat_state = convert._CHAT_STATES[tag]
        elif tag == f"{{{convert.NS_RECEIPTS}}}request":
            request = True
        elif tag == f"{{{convert.NS_RECEIPTS}}}received":
            receipt_for = child.get("id") or None
        elif tag == f"{{{convert.NS_XHTML_IM}}}html":
            xbody = child.find(f"{{{convert.NS_XHTML}}}body")
            if xbody is not None:
                xhtml = ET.tostring(xbody, encoding="utf-8")
    parts: list[BodyPart] = []
    if body_text:
        parts.append(BodyPart.plain(body_text, lang))
        if xhtml is not None:
            parts.append(BodyPart(convert.XHTML_PART, xhtml, lang))
    return MessageOp(
        source=source,
        destination=destination,
        trans_id=msg["id"] or "-",
        parts=tuple(parts),
        subjects=tuple(subjects),
        thread=thread,
        lang=lang,
        xmpp_type=convert._TYPES.get(xml.get("type") or "normal"),
        receipt_request=request and bool(parts) and bool(msg["id"]),
        receipt_for=receipt_for,
        chat_state=chat_state,
    )


async def old_on_stanza(self: Pager, msg: Any) -> None:
    mtype = msg.xml.get("type")
    if mtype == "error":
        self._on_error_stanza(msg)
        return
    start = self.clock()
    to_jid = parse_jid(msg.xml.get("to") or "")
    from_jid = parse_jid(msg.xml.get("from") or "")
    domain = to_jid.domain.lower()
    dmap = self._maps.get(domain)
    if dmap is None or to_jid.local is None:
        return
    stanza_id = msg["id"] or ""
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
        raise
    try:
        op = old_message_to_op(msg, source=sender.address, destination=target.address)
    except ValueError:
        return
    peer = _key(target.address)
    conversation: Conversation = (_key_jid(from_jid), peer)
    ids["recipient"] = peer
    content = self._x2s_content(
        op,
        conversation=conversation,
        sender_aor=str(sender.aor),
        target=target,
        from_jid=from_jid,
        domain=domain,
    )
    if content is None:
        self._fate(X2S, "held", start, **ids)
        return
    body, kind = content
    aor = _sip_uri(str(target))
    call_id = sm.call_id_for(op.thread, self._fresh_call_id)
    ids["call_id"] = call_id
    out = sm.OutboundMessage(
        request_uri=str(target),
        from_uri=str(sender),
        to_uri=str(target),
        call_id=call_id,
        cseq=next(self._cseq) % 2**31,
        from_tag=secrets.token_hex(6),
        content=body,
        subject=sm.pick_subject(op) if kind == "content" else None,
        lang=op.lang if kind == "content" else None,
        max_forwards=op.max_forwards,
    )

    def build(request_uri: str) -> SipRequest:
        return sm.build_message(replace(out, request_uri=request_uri))

    await self._send_x2s(
        msg, aor=aor, build=build, kind=kind, peer=peer, domain=domain, start=start, ids=ids
    )


# -- two pagers on stubs ----------------------------------------------------------------------


class _Links:
    def __init__(self, record: list[Any]) -> None:
        self.domains = [COMP]
        self.record = record

    def send(self, domain: str, stanza: Any) -> bool:
        self.record.append(("xmpp", domain, ET.tostring(stanza.xml, encoding="unicode")))
        return True


class _Router:
    """Builds the request for the target and for another contact; answers per the script."""

    def __init__(self, cfg: Any, record: list[Any]) -> None:
        self.domains = Domains(cfg)
        self.record = record
        self.script: Iterator[int] = iter(())

    async def send(self, aor: Any, build: Callable[[str], SipRequest]) -> Any:
        outcome = next(self.script, 200)
        for uri in (str(aor), "sip:other@127.0.0.1:5070;transport=tcp"):
            try:
                self.record.append(("sip", str(aor), serialize(build(uri))))
            except MappingError as exc:
                self.record.append(("build-error", type(exc).__name__, str(exc)))
        if outcome == 0:
            raise TransactionTimeout("no answer")
        return make_response(build(str(aor)), outcome)


class _Side:
    def __init__(self, cfg: Any, comp: GatewayComponent, *, old: bool) -> None:
        self.record: list[Any] = []
        self.router = _Router(cfg, self.record)
        self.pager = Pager(
            cfg,
            _Links(self.record),  # type: ignore[arg-type]
            self.router,  # type: ignore[arg-type]
            Metrics(),
            clock=lambda: 1000.0,
            now=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        )
        self.pager._prefix = "p"
        self.pager._fate = self._fate  # type: ignore[method-assign]
        self.old = old

    def _fate(self, direction: str, outcome: str, start: float, **fields: Any) -> None:
        self.record.append(("fate", direction, outcome, sorted(fields.items())))

    def run(self, loop: asyncio.AbstractEventLoop, msg: Any, script: list[int]) -> list[Any]:
        self.record.clear()
        self.router.script = iter(script)
        handler = old_on_stanza(self.pager, msg) if self.old else self.pager.on_stanza(msg)
        try:
            loop.run_until_complete(handler)
        except Exception as exc:  # the outcome is compared
            info = exc.to_xmpp() if isinstance(exc, MappingError) else None
            self.record.append(("raised", type(exc).__name__, str(exc), info))
        return list(self.record)


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[asyncio.AbstractEventLoop, Any, GatewayComponent]]:
    import tomllib

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    cfg = load_config(tomllib.loads(gateway_config()), base_dir=Path("/tmp"))
    comp = GatewayComponent(
        ComponentConfig(COMP, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    yield loop, cfg, comp
    loop.close()
    asyncio.set_event_loop(None)


# -- random stanzas ---------------------------------------------------------------------------

_text = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
).filter(lambda t: all(c in "\t\n\r" or ord(c) >= 0x20 for c in t) and "\ufffe" not in t)
_locals = st.sampled_from(
    ["juliet", "Romeo", "u1", "d\\27artagnan", "a\\20b", "ç©é", "x+y", "user.name", "\\5c", "a%41"]
)
_to = st.one_of(
    st.builds(lambda u: f"{u}@{COMP}", _locals),
    st.builds(lambda u: f"{u}@{COMP}", _locals),
    st.builds(lambda u: f"{u}@SIP.LocalHost", _locals),
    st.sampled_from([COMP, f"u1@{COMP}/res", "u1@other.example", "", "bad@@x", f"@{COMP}"]),
    st.builds(lambda u: f"{u}@{COMP}", _locals),
)
_resources = st.sampled_from(["", "r", "phone é", "a/b"])
_from = st.one_of(
    st.builds(lambda u, r: f"{u}@localhost" + (f"/{r}" if r else ""), _locals, _resources),
    st.builds(lambda u, r: f"{u}@localhost" + (f"/{r}" if r else ""), _locals, _resources),
    st.sampled_from(["juliet@elsewhere.example/r", "localhost", "", "Juliet@LOCALHOST/r"]),
    st.builds(lambda u: f"{u}@localhost/r", _locals),
)
_langs = st.sampled_from([None, "en", "fr", "de-CH"])


def _attr(name: str, value: str | None) -> str:
    return "" if value is None else f' {name}="{_esc(value)}"'


def _esc(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


@st.composite
def _stanza(draw: st.DrawFn) -> str:
    children: list[str] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(
            st.sampled_from(
                [
                    *("body", "body", "body", "subject", "thread", "xhtml", "state", "request"),
                    *("received", "other"),
                ]
            )
        )
        lang = _attr("xml:lang", draw(_langs))
        text = _esc(draw(_text))
        if kind == "body":
            children.append(f"<body{lang}>{text}</body>")
        elif kind == "subject":
            children.append(f"<subject{lang}>{text}</subject>")
        elif kind == "thread":
            children.append(f"<thread>{text}</thread>")
        elif kind == "xhtml":
            children.append(
                '<html xmlns="http://jabber.org/protocol/xhtml-im"><body xmlns="http://www.w3.org/1999/xhtml">'
                f"<p>{text}</p></body></html>"
            )
        elif kind == "state":
            state = draw(st.sampled_from(["active", "composing", "paused", "inactive", "gone"]))
            children.append(f'<{state} xmlns="http://jabber.org/protocol/chatstates"/>')
        elif kind == "request":
            children.append('<request xmlns="urn:xmpp:receipts"/>')
        elif kind == "received":
            children.append(f'<received xmlns="urn:xmpp:receipts"{_attr("id", draw(_text))}/>')
        else:
            children.append('<x xmlns="urn:example:other"><y/></x>')
    mtype = draw(
        st.sampled_from([None, "chat", "chat", "normal", "headline", "groupchat", "bogus"])
    )
    head = (
        f'<message xmlns="{NS}"'
        + _attr("to", draw(_to))
        + _attr("from", draw(_from))
        + _attr("id", draw(st.one_of(st.none(), st.just(""), _text)))
        + _attr("type", mtype)
        + _attr("xml:lang", draw(_langs))
        + ">"
    )
    return head + "".join(children) + "</message>"


@given(
    stanzas=st.lists(_stanza(), min_size=1, max_size=6),
    scripts=st.lists(
        st.lists(st.sampled_from([200, 202, 404, 415, 480, 0]), max_size=1), min_size=6, max_size=6
    ),
)
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_on_stanza_matches_the_old_path(
    world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent],
    stanzas: list[str],
    scripts: list[list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, cfg, comp = world
    counter = itertools.count()
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: f"{next(counter):0{2 * (n or 16)}x}")
    monkeypatch.setattr(imdn_fmt, "new_message_id", lambda entropy=None: f"imdn{next(counter)}")
    old, new = _Side(cfg, comp, old=True), _Side(cfg, comp, old=False)
    # Each stanza twice: the second time the new side's address memo answers.
    for raw, script in zip(stanzas + stanzas, scripts + scripts, strict=False):
        msg = comp._build_stanza(ET.fromstring(raw))
        start = next(counter)
        counter = itertools.count(start)
        expected = old.run(loop, msg, script)
        counter = itertools.count(start)
        got = new.run(loop, msg, script)
        assert got == expected, raw


def test_stanza_id_of_follows_a_get_id_override(
    world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent],
) -> None:
    _, _, comp = world
    msg = comp._build_stanza(ET.fromstring(f'<message xmlns="{NS}" id="abc"/>'))
    assert convert.stanza_id_of(msg) == msg["id"] == "abc"
    bare = comp._build_stanza(ET.fromstring(f'<message xmlns="{NS}"/>'))
    assert convert.stanza_id_of(bare) == bare["id"] == ""

    class Other(type(msg)):  # type: ignore[misc]
        def get_id(self) -> str:
            return "overridden"

    odd = Other(comp, ET.fromstring(f'<message xmlns="{NS}" id="abc"/>'), recv=True)
    assert convert.stanza_id_of(odd) == "overridden"

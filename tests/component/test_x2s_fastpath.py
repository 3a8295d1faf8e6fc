"""XMPP -> SIP: the MESSAGE the pager sends for a <message/>, against RFC 7247 / RFC 7572.

`Pager.on_stanza` maps a stanza's to/from once per (to, from) text (`_x2s_route`,
remembered in a bounded memo) and reads the id with `convert.stanza_id_of`. Random stanzas
(odd and escaped JIDs, non-ASCII, types, bodies and subjects with xml:lang, thread,
XHTML-IM, chat states, receipts, unknown payloads) must give the request RFC 7572 Table 1
asks for, checked field by field:

* Request-URI and To: the recipient's bare JID as a SIP URI (RFC 7247 §5.1; XEP-0106
  unescaped, then percent-encoded by the RFC 3261 user grammar); From: the sender's bare
  JID as a SIP URI with its resource as ``gr`` (RFC 7572 R7572-02 note 1), with a tag;
  Call-Info: the sender's bare JID as an xmpp: URI, ``purpose=impp`` (RFC 6993);
* thread -> Call-ID (a fresh one when absent or not a Call-ID, RFC 3261 §25.1), one
  subject -> Subject (the one in the message's language, else untagged, else the first),
  xml:lang -> Content-Language, the first body -> ``text/plain;charset=UTF-8``; a receipt
  request wraps it in message/cpim asking for an IMDN (RFC 5438, XEP-0184); a chat state
  alone -> isComposing (RFC 7573 Table 4, ``gone`` sends nothing); Max-Forwards 70,
  CSeq ``n MESSAGE``;
* refused: groupchat (405 / not-acceptable), a malformed to/from (jid-malformed), a
  sender outside the served domains; ignored: stanzas for the component itself or another
  domain, and stanzas that carry nothing the model knows;
* a SIP error or timeout comes back as an error stanza (RFC 7247 Table 3) to the sender.

The route memo must not show: the same stanzas are fed twice to a pager whose memo is
kept and to one whose memo is cleared before every stanza; everything they do is equal.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mappings.imdn as imdn_fmt
from gateway.bridge.pager.service import Pager
from gateway.bridge.routing import Domains
from gateway.config import Addressing, ComponentConfig, load_config
from gateway.metrics import Metrics
from gateway.sip.message import SipRequest, make_response
from gateway.sip.parser import parse_message
from gateway.sip.serializer import serialize
from gateway.sip.useragent import TransactionTimeout
from gateway.xmpp import convert
from gateway.xmpp.component import GatewayComponent
from mappings.errors import MappingError
from tests.harness.gateway_proc import gateway_config
from tests.harness.stanzas import stanza_from_text

NS = "jabber:component:accept"
COMP = "sip.localhost"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
OTHER_CONTACT = "sip:other@127.0.0.1:5070;transport=tcp"

# XMPP localpart -> SIP user (RFC 7247 §5.1: XEP-0106 unescaped, RFC 3261 user escaping),
# or None when the localpart is refused (not in canonical XEP-0106 form)
LOCALS: dict[str, str | None] = {
    "juliet": "juliet",
    "Romeo": "Romeo",
    "u1": "u1",
    "d\\27artagnan": "d'artagnan",
    "a\\20b": "a%20b",
    "\u00e7\u00a9\u00e9": "%C3%A7%C2%A9%C3%A9",
    "x+y": "x+y",
    "user.name": "user.name",
    "\\5c": None,
    "a%41": "a%2541",
}
# XMPP localpart -> its form in an xmpp: URI (RFC 5122 §2.7: the wire form, XEP-0106 escapes
# kept, percent-encoded as UTF-8 where nodeid forbids a character), for Call-Info (RFC 6993)
URI_LOCALS = {
    "juliet": "juliet",
    "Romeo": "Romeo",
    "u1": "u1",
    "d\\27artagnan": "d%5C27artagnan",
    "a\\20b": "a%5C20b",
    "\u00e7\u00a9\u00e9": "%C3%A7%C2%A9%C3%A9",
    "x+y": "x+y",
    "user.name": "user.name",
    "a%41": "a%2541",
}
# resource -> gr value (RFC 3986 percent-encoding of what a uri-parameter cannot hold)
RESOURCES = {"": None, "r": "r", "phone \u00e9": "phone%20%C3%A9", "a/b": "a/b"}
# SIP status of the answer (0: no answer) -> the XMPP condition (RFC 7247 Table 3)
CONDITIONS = {404: "item-not-found", 415: "not-acceptable", 480: "recipient-unavailable"}
TIMEOUT = "remote-server-timeout"
# RFC 3261 §25.1: callid = word [ "@" word ]
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
CALL_ID = re.compile(rf"{_WORD}(?:@{_WORD})?")
# the neutral model refuses ids with C0/C1 controls (a stanza id, thread or receipt id with
# one cannot be carried: such a stanza is not bridged)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# -- a pager on in-memory stubs ---------------------------------------------------------------


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

    async def send(self, aor: Any, build: Callable[[str], SipRequest], *, user: Any = None) -> Any:
        outcome = next(self.script, 200)
        for uri in (str(aor), OTHER_CONTACT):
            self.record.append(("sip", uri, serialize(build(uri))))
        if outcome == 0:
            raise TransactionTimeout("no answer")
        return make_response(build(str(aor)), outcome)


class _Side:
    def __init__(self, cfg: Any, *, memo: bool) -> None:
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
        self.memo = memo

    def _fate(self, direction: str, outcome: str, start: float, **fields: Any) -> None:
        self.record.append(("fate", direction, outcome, sorted(fields.items())))

    def run(self, loop: asyncio.AbstractEventLoop, msg: Any, script: list[int]) -> list[Any]:
        self.record.clear()
        self.router.script = iter(script)
        if not self.memo:
            self.pager._x2s_routes.clear()
        try:
            loop.run_until_complete(self.pager.on_stanza(msg))
        except Exception as exc:  # the outcome is checked
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
_locals = st.sampled_from(sorted(LOCALS))
_to = st.one_of(
    st.builds(lambda u: f"{u}@{COMP}", _locals),
    st.builds(lambda u: f"{u}@SIP.LocalHost", _locals),  # RFC 7622 §3.2: case-insensitive
    st.sampled_from([COMP, f"u1@{COMP}/res", "u1@other.example", "", "bad@@x", f"@{COMP}"]),
)
_from = st.one_of(
    st.builds(
        lambda u, r: f"{u}@localhost" + (f"/{r}" if r else ""),
        _locals,
        st.sampled_from(sorted(RESOURCES)),
    ),
    st.sampled_from(["juliet@elsewhere.example/r", "localhost", "", "a@localhost/"]),
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


# -- what the specification asks for ------------------------------------------------------------


def _jid_parts(text: str) -> tuple[str | None, str, str | None] | None:
    """(local, domain, resource) of the JIDs generated above; None when not a JID."""
    local, at, rest = text.rpartition("@") if "@" in text else (None, "", text)
    domain, slash, resource = rest.partition("/")
    if not domain or (local is not None and (local == "" or "@" in local)):
        return None
    if slash and not resource:
        return None
    return local if at else None, domain, resource if slash else None


def _header_text(text: str) -> str | None:
    """One header line: controls and line breaks folded into single spaces (RFC 3261 §7.3.1)."""
    return " ".join(re.sub("[\x00-\x1f]", " ", text).split()) or None


def _subject(xml: ET.Element, lang: str | None) -> str | None:
    """SIP has one Subject: the one in the message's language, else untagged, else the
    first (an empty <subject/> is none; one per language, the first, RFC 6121 §5.2.4)."""
    subjects: dict[str | None, str] = {}
    for child in xml.findall(f"{{{NS}}}subject"):
        if child.text:
            subjects.setdefault(child.get(XML_LANG), child.text)
    for wanted in (lang, None):
        if wanted in subjects:
            return _header_text(subjects[wanted])
    return _header_text(next(iter(subjects.values()))) if subjects else None


def _check(raw: str, record: list[Any], script: list[int], cseq: Iterator[int]) -> None:
    """`record` is what the pager did for the stanza `raw`: check it against RFC 7572."""
    xml = ET.fromstring(raw)
    to, frm = _jid_parts(xml.get("to") or ""), _jid_parts(xml.get("from") or "")
    mtype, stanza_id, lang = xml.get("type"), xml.get("id") or "", xml.get(XML_LANG)
    if to is None or frm is None:
        assert [r[0] for r in record] == ["raised"] and record[0][3].condition == "jid-malformed"
        return
    if to[1].lower() != COMP or to[0] is None:  # not for a user of this component
        assert record == []
        return
    raised = [r for r in record if r[0] == "raised"]
    user, sender = LOCALS.get(to[0]), LOCALS.get(frm[0] or "")
    if mtype == "groupchat" or user is None or sender is None or frm[1] != "localhost":
        # groupchat: 405 not-acceptable; a non-canonical localpart (XEP-0106) is malformed;
        # a sender outside the served XMPP domains, or a server, is no user of ours to
        # gateway (RFC 7247 §5)
        assert [r[0] for r in record] == ["fate", "raised"], record
        condition = raised[0][3].condition
        assert record[0][2] == "rejected" and ("condition", condition) in record[0][3]
        if mtype == "groupchat":
            assert condition == "not-acceptable"
        elif user is None or (frm[0] is not None and sender is None):
            assert condition == "jid-malformed"
        elif frm[0] is None:
            assert condition == "item-not-found"
        else:
            assert condition == "forbidden"
        return
    assert not raised, record
    body = xml.find(f"{{{NS}}}body")
    text = (body.text or "") if body is not None else ""
    state = next((c.tag.rpartition("}")[2] for c in xml if c.tag in convert._CHAT_STATES), None)
    receipt_for = [c.get("id") for c in xml if c.tag == f"{{{convert.NS_RECEIPTS}}}received"]
    receipt_for = [i for i in receipt_for[-1:] if i]  # the last one; an empty id is none
    subject = any(c.text for c in xml.findall(f"{{{NS}}}subject"))
    threads = [(c.text or "").strip() for c in xml.findall(f"{{{NS}}}thread")]
    thread = threads[-1] if threads else ""
    if any(CONTROL.search(i) for i in (stanza_id, thread, *receipt_for)):
        assert record == []  # identifiers with control characters are not mapped
        return
    if not text and not subject and state is None and not receipt_for:
        assert record == []  # nothing RFC 7572 maps
        return
    sent = [r for r in record if r[0] == "sip"]
    fates = [r for r in record if r[0] == "fate"]
    if not sent:  # a subject alone, a chat state the gate holds, ``gone``, a stray receipt
        assert not text and [f[2] for f in fates] == ["held"], record
        return
    n = next(cseq)  # one CSeq per MESSAGE sent, whichever contact it goes to
    for (_, uri, wire), request_uri in zip(
        sent, (f"sip:{user}@{COMP}", OTHER_CONTACT), strict=True
    ):
        request = parse_message(wire)
        assert isinstance(request, SipRequest)
        assert (request.method, uri, str(request.uri)) == ("MESSAGE", request_uri, request_uri)
        h = request.headers
        gr = RESOURCES.get(frm[2] or "")
        assert frm[2] is None or gr is not None
        sender_uri = f"sip:{sender}@localhost" + (f";gr={gr}" if gr else "")
        assert re.fullmatch(rf"<{re.escape(sender_uri)}>;tag=[0-9a-f]{{12}}", h.get("From") or "")
        assert h.get("To") == f"<sip:{user}@{COMP}>"
        assert h.get("Max-Forwards") == "70"
        assert h.get("CSeq") == f"{n} MESSAGE"
        assert "Contact" not in h  # RFC 3428 §4
        # RFC 6993: the sender's bare JID as an xmpp: URI
        impp = f"<xmpp:{URI_LOCALS[frm[0] or '']}@localhost>;purpose=impp"
        assert h.get("Call-Info") == impp
        if thread and len(thread) <= 256 and CALL_ID.fullmatch(thread):
            assert request.call_id == thread
        else:
            assert re.fullmatch(r"[0-9a-f]{16}@p", request.call_id or "")
        content_type = h.get("Content-Type")
        if text:
            assert h.get("Subject") == _subject(xml, lang)
            assert h.get("Content-Language") == lang
            wants_receipt = stanza_id and xml.find(f"{{{convert.NS_RECEIPTS}}}request") is not None
            if wants_receipt:  # XEP-0184 -> an IMDN request in CPIM (RFC 5438 §6.3)
                assert content_type == "message/cpim"
                assert b"positive-delivery" in request.body
                assert request.body.endswith(text.encode())
            else:
                assert (content_type, request.body) == ("text/plain;charset=UTF-8", text.encode())
        else:  # a chat state alone: RFC 7573 Table 4
            assert state != "gone" and content_type == "application/im-iscomposing+xml"
            want = "active" if state == "composing" else "idle"
            assert f"<state>{want}</state>".encode() in request.body
            assert "Subject" not in h and "Content-Language" not in h
    # the answer (RFC 7247 Table 3)
    status = script[0] if script else 200
    replies = [r for r in record if r[0] == "xmpp"]
    if 200 <= status < 300:
        assert [f[2] for f in fates] == ["delivered"] and replies == []
        return
    condition = TIMEOUT if status == 0 else CONDITIONS[status]
    assert [f[2] for f in fates] == ["timeout" if status == 0 else "rejected"]
    if not text or not stanza_id:  # only content with an id is answered
        assert replies == []
        return
    ((_, _, reply),) = replies
    error = ET.fromstring(reply)
    assert (error.get("type"), error.get("to"), error.get("from"), error.get("id")) == (
        "error",
        xml.get("from"),
        xml.get("to"),
        stanza_id,
    )
    assert error.find(f".//{{urn:ietf:params:xml:ns:xmpp-stanzas}}{condition}") is not None


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
def test_on_stanza_sends_what_rfc_7572_asks(
    world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent],
    stanzas: list[str],
    scripts: list[list[int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop, cfg, comp = world
    counter = itertools.count()
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: f"{next(counter):0{2 * (n or 16)}x}")
    monkeypatch.setattr(imdn_fmt, "new_message_id", lambda entropy=None: f"imdn{next(counter)}")
    warm, cold = _Side(cfg, memo=True), _Side(cfg, memo=False)
    cseq = itertools.count(1)
    # Each stanza twice: the second time the warm pager's route memo answers.
    for raw, script in zip(stanzas + stanzas, scripts + scripts, strict=False):
        msg = stanza_from_text(comp, raw)
        start = next(counter)
        counter = itertools.count(start)
        got = warm.run(loop, msg, script)
        counter = itertools.count(start)
        assert cold.run(loop, msg, script) == got, raw  # the memo does not show
        _check(raw, got, script, cseq)


def _request_for(
    world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent], raw: str
) -> SipRequest:
    loop, cfg, comp = world
    record = _Side(cfg, memo=True).run(loop, stanza_from_text(comp, raw), [200])
    _check(raw, record, [200], itertools.count(1))
    request = parse_message(next(r[2] for r in record if r[0] == "sip"))
    assert isinstance(request, SipRequest)
    return request


_HEAD = f'<message xmlns="{NS}" to="juliet@{COMP}" from="Romeo@localhost/phone \u00e9" id="m1"'


@pytest.mark.parametrize(
    ("lang", "subjects", "expected"),
    [
        ("fr", [("en", "Hello"), (None, "Plain"), ("fr", "Bonjour")], "Bonjour"),
        ("de", [("en", "Hello"), (None, "Plain"), ("fr", "Bonjour")], "Plain"),
        ("de", [("en", "Hello"), ("fr", "Bonjour")], "Hello"),
        (None, [("en", "Hello"), (None, " two\n lines ")], "two lines"),
        (None, [], None),
    ],
)
def test_one_subject_in_the_message_language(
    world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent],
    lang: str | None,
    subjects: list[tuple[str | None, str]],
    expected: str | None,
) -> None:
    xml_lang = _attr("xml:lang", lang)
    children = "".join(f"<subject{_attr('xml:lang', sl)}>{t}</subject>" for sl, t in subjects)
    request = _request_for(world, f"{_HEAD}{xml_lang}>{children}<body>hi</body></message>")
    assert request.headers.get("Subject") == expected
    assert request.headers.get("Content-Language") == lang


def test_table_1_fields(world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent]) -> None:
    request = _request_for(
        world, f"{_HEAD}><thread>t-42@x</thread><body>h\u00e9llo</body></message>"
    )
    assert str(request.uri) == f"sip:juliet@{COMP}"
    assert (request.headers.get("From") or "").startswith(
        "<sip:Romeo@localhost;gr=phone%20%C3%A9>;tag="
    )
    assert request.headers.get("To") == f"<sip:juliet@{COMP}>"
    assert request.headers.get("Call-Info") == "<xmpp:Romeo@localhost>;purpose=impp"
    assert request.call_id == "t-42@x"
    assert request.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert request.body == "h\u00e9llo".encode()


def test_stanza_id_of_follows_a_get_id_override(
    world: tuple[asyncio.AbstractEventLoop, Any, GatewayComponent],
) -> None:
    _, _, comp = world
    msg = stanza_from_text(comp, f'<message xmlns="{NS}" id="abc"/>')
    assert convert.stanza_id_of(msg) == msg["id"] == "abc"
    bare = stanza_from_text(comp, f'<message xmlns="{NS}"/>')
    assert convert.stanza_id_of(bare) == bare["id"] == ""

    class Other(type(msg)):  # type: ignore[misc]
        def get_id(self) -> str:
            return "overridden"

    odd = Other(comp, ET.fromstring(f'<message xmlns="{NS}" id="abc"/>'), recv=True)
    assert convert.stanza_id_of(odd) == "overridden"

"""`GatewayComponent._check_addresses` remembers JID texts that parsed (issue 11 round 4).

The specification: a stanza whose `to` or `from` is not a JID (`parse_jid`, RFC 7622, the
function the memo remembers) is dropped and answered with jid-malformed (RFC 6120
§8.3.3.8), unless it is itself an error or an IQ result or has no `from` (§8.3.1);
otherwise it is passed on unchanged. Random stanzas with valid, odd and malformed to/from,
each fed twice (the second time from the memo), must get exactly that; the memo keeps
successes only, at most its limit.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.jid import JID, InvalidJID
from slixmpp.test import mocksocket

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp import component as component_mod
from gateway.xmpp.component import GatewayComponent
from mappings.errors import MappingError
from mappings.jid import parse_jid
from tests.harness.stanzas import stanza_of

NS = "jabber:component:accept"
STANZA_ERRORS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _parses(value: str | None) -> bool:
    try:
        if value is not None:
            parse_jid(value)
    except MappingError:
        return False
    return True


def _slixmpp_parses(value: str) -> bool:
    try:
        JID(value)
    except InvalidJID:
        return False
    return True


@pytest.fixture(scope="module")
def comp() -> Iterator[GatewayComponent]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    c = GatewayComponent(
        ComponentConfig("sip.localhost", "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    c.connection_made(mocksocket.TestTransport(c))  # type: ignore[no-untyped-call,arg-type]
    c.session_bind_event.set()
    c.event("session_start")  # replies are written, not held back until the handshake
    c.data_received(c.stream_header)
    yield c
    loop.close()
    asyncio.set_event_loop(None)


def _sent(c: GatewayComponent) -> list[str]:
    """What the component wrote or queued for writing (no send loop runs here)."""
    sock: Any = c.socket
    out = []
    while (item := sock.next_sent()) is not None:
        out.append(item if isinstance(item, str) else item.decode())
    while not c.waiting_queue.empty():
        data, _filters = c.waiting_queue.get_nowait()
        c.waiting_queue.task_done()
        out.append(str(data))
    return out


_jids = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "juliet@localhost/r",
            "u1@sip.localhost",
            "sip.localhost",
            "",
            "@x",
            "a@",
            "bad@@x",
            "x@y/",
            "\u00e9t\u00e9@localhost",
            "a b@localhost",
            "Juliet@LOCALHOST/Res",
        ]
    ),
    st.text(max_size=8),
)


@given(
    stanzas=st.lists(
        st.tuples(st.sampled_from(["message", "presence", "iq", "other"]), _jids, _jids),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=200, deadline=None)
def test_check_addresses_follows_rfc_6120(
    comp: GatewayComponent, stanzas: list[tuple[str, str | None, str | None]]
) -> None:
    component_mod._VALID_JIDS.clear()
    for name, to, frm in stanzas + stanzas:
        stype = "get" if name == "iq" else ""
        el = ET.Element(f"{{{NS}}}{name}", {"id": "s1", "type": stype})
        for attr, value in (("to", to), ("from", frm)):
            if value is not None:
                el.set(attr, value)
        stanza = stanza_of(comp, el)
        _sent(comp)
        got = comp._check_addresses(stanza)
        sent = _sent(comp)
        if name == "other" or (_parses(to) and _parses(frm)):
            assert got is stanza and sent == []
            continue
        assert got is None
        if not frm:  # nobody to answer (an empty from is no address)
            assert sent == []
            continue
        if name == "iq" and not _slixmpp_parses(frm):
            # slixmpp's Iq.send() reads the reply's `to` as a JID: unanswerable (logged)
            assert sent == []
            continue
        (reply,) = sent
        if isinstance(reply, str):  # written at once (slixmpp's path for presence errors)
            assert reply.startswith(f"<{name} ") and 'type="error"' in reply, reply
            assert f'<jid-malformed xmlns="{STANZA_ERRORS}" />' in reply, reply
            continue
        xml = reply.xml
        assert xml.tag == f"{{{NS}}}{name}" and xml.get("type") == "error"
        assert (xml.get("to"), xml.get("from") or "", xml.get("id")) == (frm, to or "", "s1")
        condition = [el for el in xml.iter() if el.tag == f"{{{STANZA_ERRORS}}}jid-malformed"]
        assert len(condition) == 1, ET.tostring(xml)
    remembered = [v for _n, to, frm in stanzas for v in (to, frm) if v in component_mod._VALID_JIDS]
    assert all(_parses(v) for v in remembered)  # successes only
    assert len(component_mod._VALID_JIDS) <= component_mod._VALID_JIDS_LIMIT


def test_the_memo_is_bounded(comp: GatewayComponent) -> None:
    component_mod._VALID_JIDS.clear()
    limit = component_mod._VALID_JIDS_LIMIT
    for i in range(limit + 10):
        el = ET.Element(f"{{{NS}}}message", {"to": f"u{i}@sip.localhost"})
        assert comp._check_addresses(stanza_of(comp, el)) is not None
    assert 0 < len(component_mod._VALID_JIDS) <= limit

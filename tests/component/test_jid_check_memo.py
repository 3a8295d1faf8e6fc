"""`GatewayComponent._check_addresses` remembers JID texts that parsed (issue 11 round 4).

The oracle is the previous filter body (parse every to/from every time). Random stanzas with
valid, odd and malformed to/from, each fed twice (the second time from the memo), must be
passed on or dropped alike, and the same error replies must be written.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.test import mocksocket

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp import component as component_mod
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.convert import error_reply, may_answer_with_error
from mappings.errors import MappingError
from mappings.jid import parse_jid

NS = "jabber:component:accept"
log = logging.getLogger(component_mod.__name__)


def old_check_addresses(stanza: Any) -> Any:
    if stanza.name not in ("message", "presence", "iq"):
        return stanza
    try:
        for attr in ("to", "from"):
            value = stanza.xml.get(attr)
            if value is not None:
                parse_jid(value)
    except MappingError as exc:
        log.info("dropping %s id=%s: %s", stanza.name, stanza.xml.get("id"), exc)
        try:
            if may_answer_with_error(stanza) and stanza.xml.get("from"):
                error_reply(stanza, exc.to_xmpp()).send()
        except Exception:
            log.exception("could not answer a malformed JID")
        return None
    return stanza


@pytest.fixture(scope="module")
def comp() -> Iterator[GatewayComponent]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    c = GatewayComponent(
        ComponentConfig("sip.localhost", "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    c.connection_made(mocksocket.TestTransport(c))  # type: ignore[no-untyped-call,arg-type]
    c.session_bind_event.set()
    c.data_received(c.stream_header)
    yield c
    loop.close()
    asyncio.set_event_loop(None)


def _sent(c: GatewayComponent) -> list[Any]:
    sock: Any = c.socket
    out = []
    while (item := sock.next_sent()) is not None:
        out.append(item)
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
def test_check_addresses_matches_the_old_filter(
    comp: GatewayComponent, stanzas: list[tuple[str, str | None, str | None]]
) -> None:
    component_mod._VALID_JIDS.clear()
    for name, to, frm in stanzas + stanzas:
        el = ET.Element(f"{{{NS}}}{name}", {"id": "s1", "type": "get" if name == "iq" else ""})
        for attr, value in (("to", to), ("from", frm)):
            if value is not None:
                el.set(attr, value)
        stanza = comp._build_stanza(el)
        _sent(comp)
        expected = old_check_addresses(stanza)
        expected_sent = _sent(comp)
        got = comp._check_addresses(stanza)
        assert got is expected
        assert _sent(comp) == expected_sent
    assert len(component_mod._VALID_JIDS) <= component_mod._VALID_JIDS_LIMIT

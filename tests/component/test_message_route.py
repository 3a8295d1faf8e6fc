"""The direct route for <message/> (GatewayComponent.route_messages) against slixmpp's path.

Two components receive the same random stanzas: one with the bridge handler registered the
old way (slixmpp matches every stanza against every handler), one with `route_messages`.
Everything observable must be the same: which stanzas reach the handler (and their XML),
the events fired, what is written back (address errors, error replies from the boundary).
The scenarios add, on both, what must make the direct route step aside: a listener for a
message event, a handler registered later, a filter added later, receipts auto_ack, a
wire trace (slixmpp debug logging).
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slixmpp.test import mocksocket
from slixmpp.xmlstream.handler import Callback, CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath

from gateway.config import Addressing, ComponentConfig
from gateway.xmpp.boundary import boundary
from gateway.xmpp.component import GatewayComponent
from mappings.errors import MappingError

DOMAIN = "sip.localhost"
NS = "jabber:component:accept"

Log = list[tuple[str, str]]


class _Side:
    """One component on an in-memory transport, with its handler's record."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, direct: bool, scenario: str) -> None:
        self.loop = loop
        self.log: Log = []
        comp = GatewayComponent(
            ComponentConfig(DOMAIN, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
        )
        comp.connection_made(mocksocket.TestTransport(comp))  # type: ignore[no-untyped-call,arg-type]
        comp.session_bind_event.set()
        comp.data_received(comp.stream_header)
        self.comp = comp

        async def handler(msg: Any) -> None:
            self.log.append(("handler", f"{type(msg).__name__} {_xml(msg)}"))
            if msg["body"] == "raise":
                raise MappingError("no", sip_status=403, xmpp_condition="forbidden")
            if msg["body"] == "bug":
                raise RuntimeError("bug")

        once = scenario == "once-route"
        cb = CoroutineCallback("cpim-pager", StanzaPath("message"), boundary(handler), once=once)
        if direct:
            comp.route_messages(cb)
        else:
            comp.register_handler(cb)
        self.matches = 0
        for h in comp.stanza_handlers():
            if h.name == "IM":
                original = h.match

                def counted(stanza: Any, original: Callable[[Any], bool] = original) -> bool:
                    self.matches += 1
                    return original(stanza)

                h.match = counted
        if scenario == "listener":
            comp.add_event_handler("chatstate", lambda m: self.log.append(("chatstate", _xml(m))))
        elif scenario == "late-handler":
            comp.register_handler(
                Callback(
                    "late",
                    StanzaPath("message/body"),
                    lambda m: self.log.append(("late", _xml(m))),
                )
            )
        elif scenario == "late-filter":
            comp.add_filter("in", self._late_filter)
        elif scenario == "removed-late-handler":
            comp.register_handler(Callback("late", StanzaPath("message/body"), self._late))
            assert comp.remove_handler("late")
        elif scenario == "removed-late-filter":
            comp.add_filter("in", self._late_filter)
            comp.del_filter("in", self._late_filter)
        elif scenario == "auto-ack":
            comp.plugin["xep_0184"].auto_ack = True
        self.drain()

    def _late(self, stanza: Any) -> None:
        self.log.append(("late", _xml(stanza)))

    def _late_filter(self, stanza: Any) -> Any:
        self.log.append(("filter", stanza.name))
        return stanza

    def drain(self) -> None:
        async def turns() -> None:
            for _ in range(20):
                await asyncio.sleep(0)
            await self.comp.waiting_queue.join()

        task = self.loop.create_task(self.comp.run_filters())
        self.loop.run_until_complete(turns())
        task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))

    def feed(self, raw: str) -> Log:
        self.log.clear()
        self.comp.data_received(raw)
        self.drain()
        sock: Any = self.comp.socket
        while (sent := sock.next_sent()) is not None:
            self.log.append(("sent", sent))
        return list(self.log)


def _xml(stanza: Any) -> str:
    return ET.tostring(stanza.xml, encoding="unicode")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    lp.close()
    asyncio.set_event_loop(None)


_CHILDREN = {
    "body": "<body>hello &amp; bye</body>",
    "raise": "<body>raise</body>",
    "bug": "<body>bug</body>",
    "subject": "<subject>s</subject>",
    "thread": "<thread>t1</thread>",
    "active": '<active xmlns="http://jabber.org/protocol/chatstates"/>',
    "composing": '<composing xmlns="http://jabber.org/protocol/chatstates"/>',
    "gone": '<gone xmlns="http://jabber.org/protocol/chatstates"/>',
    "request": '<request xmlns="urn:xmpp:receipts"/>',
    "received": '<received xmlns="urn:xmpp:receipts" id="r1"/>',
    "error": '<error type="cancel"><item-not-found '
    'xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>',
    "ext": '<x xmlns="urn:example:unknown"><y/></x>',
    "html": '<html xmlns="http://jabber.org/protocol/xhtml-im">'
    '<body xmlns="http://www.w3.org/1999/xhtml"><p>hi</p></body></html>',
}

_stanzas = st.builds(
    lambda kind, mtype, to, frm, sid, children: (
        f"<{kind}"
        + (f' type="{mtype}"' if mtype else "")
        + (f' to="{to}"' if to is not None else "")
        + (f' from="{frm}"' if frm is not None else "")
        + (f' id="{sid}"' if sid else "")
        + ">"
        + "".join(_CHILDREN[c] for c in children)
        + f"</{kind}>"
    ),
    kind=st.sampled_from(["message", "message", "message", "presence"]),
    mtype=st.sampled_from([None, "chat", "normal", "headline", "groupchat", "error", "odd"]),
    to=st.sampled_from([f"romeo@{DOMAIN}", DOMAIN, f"romeo@{DOMAIN}/r", "a@@b", None]),
    frm=st.sampled_from(["juliet@localhost/b", "juliet@localhost", "@bad", None]),
    sid=st.sampled_from(["", "m1", "x y"]),
    children=st.lists(st.sampled_from(sorted(_CHILDREN)), max_size=4),
)

SCENARIOS = [
    "plain",
    "listener",
    "late-handler",
    "late-filter",
    "auto-ack",
    "wire-trace",
    "once-route",
    "removed-late-handler",
    "removed-late-filter",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_direct_route_is_equivalent(scenario: str, loop: asyncio.AbstractEventLoop) -> None:
    slix = logging.getLogger("slixmpp.xmlstream.xmlstream")
    old_level = slix.level
    if scenario == "wire-trace":
        slix.setLevel(logging.DEBUG)
    try:
        old = _Side(loop, direct=False, scenario=scenario)
        new = _Side(loop, direct=True, scenario=scenario)
        seen = {"direct": 0}

        @settings(max_examples=200, deadline=None)
        @given(raw=_stanzas)
        def check(raw: str) -> None:
            before = (old.matches, new.matches)
            expected, got = old.feed(raw), new.feed(raw)
            assert got == expected, raw
            # Reached slixmpp's matching on the old side but not on the new: direct route.
            if old.matches > before[0] and new.matches == before[1]:
                seen["direct"] += 1

        check()
    finally:
        slix.setLevel(old_level)
    if scenario in ("plain", "removed-late-handler", "removed-late-filter"):
        assert seen["direct"] > 0  # the direct route was taken
    elif scenario in ("late-filter", "wire-trace"):
        assert seen["direct"] == 0  # never, whatever the stanza


def test_one_route_per_component(loop: asyncio.AbstractEventLoop) -> None:
    side = _Side(loop, direct=True, scenario="plain")

    async def other(msg: Any) -> None:
        return None

    with pytest.raises(ValueError, match="one message route"):
        side.comp.route_messages(CoroutineCallback("x", StanzaPath("message"), other))


def test_a_routed_handler_name_is_unique(loop: asyncio.AbstractEventLoop) -> None:
    side = _Side(loop, direct=False, scenario="plain")

    async def other(msg: Any) -> None:
        return None

    with pytest.raises(ValueError, match="already registered"):
        side.comp.route_messages(CoroutineCallback("cpim-pager", StanzaPath("message"), other))


def test_a_once_only_route_runs_once(loop: asyncio.AbstractEventLoop) -> None:
    new = _Side(loop, direct=True, scenario="once-route")
    raw = f'<message type="chat" to="romeo@{DOMAIN}" from="juliet@localhost/b" id="m1">'
    raw += "<body>hi</body></message>"
    first, second = new.feed(raw), new.feed(raw)
    assert [kind for kind, _ in first].count("handler") == 1
    assert [kind for kind, _ in second].count("handler") == 0
    assert "cpim-pager" not in [h.name for h in new.comp.stanza_handlers()]
    assert new.matches == 1  # the second one went through slixmpp's matching


@pytest.mark.parametrize("scenario", ["plain", "removed-late-handler", "removed-late-filter"])
def test_what_was_removed_no_longer_holds_the_route_back(
    scenario: str, loop: asyncio.AbstractEventLoop
) -> None:
    # the late handler matched message/body and the late filter came last: once removed
    # (remove_handler / del_filter), a message with a body takes the direct route again
    new = _Side(loop, direct=True, scenario=scenario)
    raw = f'<message type="chat" to="romeo@{DOMAIN}" from="juliet@localhost/b" id="m1">'
    raw += "<body>hi</body></message>"
    got = new.feed(raw)
    assert [kind for kind, _ in got if kind != "sent"] == ["handler"]
    assert new.matches == 0  # never reached slixmpp's matching

"""XmppLinks against a real Prosody (and ejabberd): XEP-0114 connect, disco from a real
client, confirmed sending, server restart with reconnection, wrong secret, duplicate domain.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.config import Addressing, ComponentConfig, XmppConfig
from gateway.xmpp.links import LinkDown, LinkState, XmppLinks
from tests.harness.ejabberd import EjabberdServer
from tests.harness.prosody import ProsodyServer
from tests.harness.xmpp_client import XmppTestClient

SIP = "sip.localhost"
GW = "gw.localhost"
COMPONENTS = {SIP: "s3cret", GW: "s3cret-gw"}

# Fast timings so that reconnection and dead-link detection fit in a test.
FAST = {
    "reconnect_min": 0.2,
    "reconnect_max": 1.0,
    "auth_failure_retry": 30.0,
    "keepalive_interval": 0.5,
    "dead_link_timeout": 3.0,
}


def xmpp_config(port: int, *components: ComponentConfig, **overrides: Any) -> XmppConfig:
    return XmppConfig(port=port, components=components, **{**FAST, **overrides})


def comp(domain: str, secret: str, addressing: Addressing = Addressing.MIRRORED) -> ComponentConfig:
    return ComponentConfig(domain, secret, addressing)


@pytest.fixture
async def links_factory() -> AsyncIterator[Callable[..., XmppLinks]]:
    made: list[XmppLinks] = []

    def make(cfg: XmppConfig, **kwargs: Any) -> XmppLinks:
        links = XmppLinks(cfg, **kwargs)
        made.append(links)
        return links

    yield make
    for links in made:
        await links.stop()


async def client_for(server: ProsodyServer | EjabberdServer, name: str) -> XmppTestClient:
    jid = server.add_user(f"{name}@{server.domain}", f"pw-{name}")
    client = XmppTestClient(jid, f"pw-{name}", host=server.host, port=server.c2s_port)
    await client.connect()
    return client


async def test_two_domains_connect_and_disco_from_real_client(
    prosody_factory: Callable[..., ProsodyServer], links_factory: Callable[..., XmppLinks]
) -> None:
    server = prosody_factory(components=COMPONENTS)
    up: list[str] = []
    links = links_factory(
        xmpp_config(
            server.component_port,
            comp(SIP, COMPONENTS[SIP]),
            comp(GW, COMPONENTS[GW], Addressing.ESCAPED),
        ),
        on_link_up=up.append,
    )
    await links.start()
    await links.wait_up(SIP, 10)
    await links.wait_up(GW, 10)
    assert sorted(up) == [GW, SIP] and links.ready
    assert {s.domain: s.state for s in links.status()} == {SIP: LinkState.UP, GW: LinkState.UP}

    client = await client_for(server, "juliet")
    try:
        info = await client.disco_info(SIP)
        assert ("gateway", "simple", None, "SIP/SIMPLE gateway") in info["disco_info"]["identities"]
        features = set(info["disco_info"]["features"])
        assert {"jabber:iq:gateway", "urn:xmpp:ping", "jid\\20escaping"} <= features
        assert "urn:xmpp:receipts" not in features  # not implemented yet: not advertised
        user = await client.disco_info(f"romeo@{SIP}")
        assert ("account", "registered", None, None) in user["disco_info"]["identities"]
        items = await client.disco_items(GW)
        assert items["disco_items"]["items"] == set()
        await client.ping(f"romeo@{SIP}")
        # jabber:iq:gateway through the real server (XEP-0100 §6.3), escaped mode.
        iq = client.xmpp.make_iq_set(ito=GW)
        iq["gateway"]["prompt"] = "romeo@example.com"
        result = await iq.send(timeout=5)
        assert result["gateway"]["jid"] == f"romeo\\40example.com@{GW}"
        # Confirmed sending: returns once Prosody has taken the message.
        msg = links.component(SIP).make_message(
            mto=str(client.jid.bare), mfrom=f"romeo@{SIP}", mbody="hello", mtype="chat"
        )
        await links.send_confirmed(SIP, msg)
        got = await client.wait_message(lambda m: m["body"] == "hello")
        assert str(got["from"]) == f"romeo@{SIP}"
    finally:
        await client.disconnect()


async def test_prosody_killed_and_restarted(
    prosody_factory: Callable[..., ProsodyServer], links_factory: Callable[..., XmppLinks]
) -> None:
    server = prosody_factory(components=COMPONENTS)
    events: list[tuple[str, str]] = []
    links = links_factory(
        xmpp_config(server.component_port, comp(SIP, COMPONENTS[SIP])),
        on_link_up=lambda d: events.append(("up", d)),
        on_link_down=lambda d, r: events.append(("down", d)),
    )
    await links.start()
    await links.wait_up(SIP, 10)
    component = links.component(SIP)

    server.kill()
    async with asyncio.timeout(10):
        while links.is_up(SIP):
            await asyncio.sleep(0.05)
    assert events == [("up", SIP), ("down", SIP)]
    # While down: confirmed sending refuses at once with a Retry-After estimate ...
    with pytest.raises(LinkDown) as refused:
        await links.send_confirmed(
            SIP, component.make_message(mto="x@localhost", mfrom=f"romeo@{SIP}", mbody="lost")
        )
    assert refused.value.retry_after >= 1
    assert links.retry_after(SIP) >= 1
    # ... and fire-and-forget sending waits in the bounded queue.
    user = server.add_user(f"juliet@{server.domain}", "pw-juliet")
    queued = component.make_message(mto=user, mfrom=f"romeo@{SIP}", mbody="queued", mtype="chat")
    assert links.send(SIP, queued)
    assert links.status()[0].queued == 1

    await asyncio.to_thread(server.start)
    await links.wait_up(SIP, 15)
    assert events[-1] == ("up", SIP)
    client = XmppTestClient(user, "pw-juliet", host=server.host, port=server.c2s_port)
    await client.connect()
    try:
        # Traffic resumes: a confirmed message reaches the client.
        await links.send_confirmed(
            SIP, component.make_message(mto=user, mfrom=f"romeo@{SIP}", mbody="back", mtype="chat")
        )
        await client.wait_message(lambda m: m["body"] == "back")
    finally:
        await client.disconnect()
    # The queued stanza was flushed on reconnection (before the client was online, so
    # Prosody stored it offline or dropped it: its arrival at the server is what we check).
    assert links.status()[0].queued == 0


async def test_dead_link_detected_by_keepalive(
    prosody_factory: Callable[..., ProsodyServer], links_factory: Callable[..., XmppLinks]
) -> None:
    """A server that stops answering (SIGSTOP) is declared dead within the timeouts."""
    server = prosody_factory(components=COMPONENTS)
    links = links_factory(
        xmpp_config(server.component_port, comp(SIP, COMPONENTS[SIP]), dead_link_timeout=1.0)
    )
    await links.start()
    await links.wait_up(SIP, 10)
    assert server.pid is not None
    os.killpg(server.pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(5):  # keepalive 0.5 s + dead_link_timeout 1 s + slack
            while links.is_up(SIP):
                await asyncio.sleep(0.05)
        assert links.status()[0].last_error == "no answer to ping"
    finally:
        os.killpg(server.pid, signal.SIGCONT)
    await links.wait_up(SIP, 10)


async def test_wrong_secret_is_not_authorized(
    prosody_factory: Callable[..., ProsodyServer],
    links_factory: Callable[..., XmppLinks],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = prosody_factory(components=COMPONENTS)
    links = links_factory(xmpp_config(server.component_port, comp(SIP, "wrong-secret")))
    with caplog.at_level(logging.ERROR, logger="gateway.xmpp.links"):
        await links.start()
        async with asyncio.timeout(10):
            while links.status()[0].state is not LinkState.WAITING:
                await asyncio.sleep(0.05)
    status = links.status()[0]
    assert status.last_error is not None and status.last_error.startswith("not-authorized")
    assert status.retry_in is not None and status.retry_in > 25  # auth_failure_retry = 30 s
    assert any("refused the component secret" in r.getMessage() for r in caplog.records)
    assert all("wrong-secret" not in r.getMessage() for r in caplog.records)  # never logged
    assert not links.is_up(SIP) and links.retry_after(SIP) > 25


async def test_duplicate_component_is_conflict(
    prosody_factory: Callable[..., ProsodyServer],
    links_factory: Callable[..., XmppLinks],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = prosody_factory(components=COMPONENTS)
    first = links_factory(xmpp_config(server.component_port, comp(SIP, COMPONENTS[SIP])))
    await first.start()
    await first.wait_up(SIP, 10)
    second = links_factory(xmpp_config(server.component_port, comp(SIP, COMPONENTS[SIP])))
    with caplog.at_level(logging.ERROR, logger="gateway.xmpp.links"):
        await second.start()
        async with asyncio.timeout(10):
            while second.status()[0].state is not LinkState.WAITING:
                await asyncio.sleep(0.05)
    status = second.status()[0]
    assert status.last_error is not None and status.last_error.startswith("conflict")
    assert any("already connected" in r.getMessage() for r in caplog.records)
    assert first.is_up(SIP)  # the established link is untouched


async def test_ejabberd_connect_disco_and_confirmed_send(
    ejabberd: EjabberdServer, links_factory: Callable[..., XmppLinks]
) -> None:
    links = links_factory(xmpp_config(ejabberd.component_port, comp(SIP, COMPONENTS[SIP])))
    await links.start()
    await links.wait_up(SIP, 20)
    client = await client_for(ejabberd, "juliet-ej")
    try:
        info = await client.disco_info(SIP)
        assert ("gateway", "simple", None, "SIP/SIMPLE gateway") in info["disco_info"]["identities"]
        msg = links.component(SIP).make_message(
            mto=str(client.jid.bare), mfrom=f"romeo@{SIP}", mbody="hello ejabberd", mtype="chat"
        )
        await links.send_confirmed(SIP, msg)
        await client.wait_message(lambda m: m["body"] == "hello ejabberd")
    finally:
        await client.disconnect()

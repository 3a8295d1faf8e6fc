"""Issue 22 through ejabberd: what an XMPP client on ejabberd sees of bridged SIP contacts,
and clean departures and returns (item 5).

Real peers: the session ejabberd (Debian 23.01, one node for the whole run: it is slow to
start), the gateway PROCESS with one mirrored component (`sip.localhost`) and a user file
giving romeo a display name and a linked XMPP account, slixmpp clients logged in to
ejabberd, and baresip as romeo registering with Digest.

One component only, on the session node's shared listener: ejabberd 23.01 gives every
connection of an `ejabberd_service` listener the routes of all the listener's `hosts`, so
two gateway domains need a listener each (`[[xmpp.components]] port`);
test_ejabberd_listeners.py runs two domains that way; docs/interop.md.

Everything a client checks goes through ejabberd's routing to the XEP-0114 component:

* presence from romeo carries a XEP-0115 <c/>; the client fetches disco#info at
  ``node#ver`` and recomputes ``ver`` with the tests' own §5.1 (tests/harness/caps.py,
  never the gateway's), over whatever the gateway answers (identities, features, forms);
* romeo's vCard: FN, the SIP URI in TEL/NUMBER and URL (RFC 7081 §3.1), JABBERID;
* disco#info of the component domain (XEP-0100 §4.1: gateway/simple, jabber:iq:gateway);
* the XEP-0100 prompt (§6.3), and its errors (escaped mode: test_xmpp_link.py);
* SIGTERM: the watcher is told `unavailable` for romeo's device before the link closes;
  a restart over the same state shows romeo again unasked and answers probes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import account_line
from tests.harness.caps import caps_ver
from tests.harness.ejabberd import EjabberdServer
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_presence_baresip import PresenceBaresip

pytestmark = pytest.mark.integration

SIP = "sip.localhost"  # mirrored
ROMEO = f"romeo@{SIP}"
LIMIT = 30.0
CAPS = "{http://jabber.org/protocol/caps}c"
INFO = "{http://jabber.org/protocol/disco#info}"
V = "{vcard-temp}"
IQ_GATEWAY = "{jabber:iq:gateway}"


def config(server: EjabberdServer, tmp_path: Path, port: int, *, auto_approve: bool) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:{ROMEO}", None, "romeo"),
        ha1_sha256=None,  # MD5 only: baresip 1.0 cannot answer SHA-256
        display_name="Romeo Montague",
        xmpp=f"romeo@{server.domain}",  # RFC 7081: his XMPP account
    )
    users.write_text(format_user(romeo))
    users.chmod(0o600)
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": server.component_port,
            "components": [
                {"domain": SIP, "secret": server.components[SIP], "addressing": "mirrored"}
            ],
        },
        sip={
            "hosted_domains": [SIP],
            "served_xmpp_domains": [server.domain],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        presence={"notify_interval": 0.5, "auto_approve_hosted": auto_approve},
        admin={"enabled": False},
    )


def start_gateway(conf: str, workdir: Path) -> GatewayProcess:
    gw = GatewayProcess(conf, workdir, log_level="info")
    gw.start()
    gw.wait_for_log(rf"xmpp link {re.escape(SIP)} up", timeout=LIMIT)
    return gw


def romeo_baresip(workdir: Path, port: int, contacts: list[str]) -> PresenceBaresip:
    account = account_line(f"sip:{ROMEO}", "romeo", (LOOPBACK, port), regint=600)
    return PresenceBaresip(workdir, account=account, contact_lines=contacts)


def ptype(stanza: Any) -> str:
    return stanza.xml.get("type") or "available"


def from_romeo(kind: str, seen: set[int]) -> Callable[[Any], bool]:
    """A presence from romeo of `kind` that arrived after the ones in `seen`."""
    return lambda p: p["from"].bare == ROMEO and ptype(p) == kind and id(p) not in seen


async def client_on(
    ejabberd: EjabberdServer, xmpp_account: Callable[..., Account], xmpp_client: ClientFactory
) -> tuple[XmppTestClient, Account]:
    acct = xmpp_account("juliet", ejabberd)
    client = await xmpp_client(acct, server=ejabberd)
    client.xmpp.auto_authorize = None  # the test decides: no automatic roster answers
    client.xmpp.auto_subscribe = False
    return client, acct


async def iq_get(client: XmppTestClient, to: str, payload: ET.Element) -> ET.Element:
    iq = client.xmpp.make_iq_get(ito=to)
    iq.append(payload)
    result = await iq.send(timeout=LIMIT)
    return result.xml  # type: ignore[no-any-return]


async def prompt(client: XmppTestClient, to: str, text: str) -> str:
    """XEP-0100 §6.3: <prompt/> set -> the <jid/> the gateway answers."""
    iq = client.xmpp.make_iq_set(ito=to)
    query = ET.Element(f"{IQ_GATEWAY}query")
    ET.SubElement(query, f"{IQ_GATEWAY}prompt").text = text
    iq.append(query)
    result = await iq.send(timeout=LIMIT)
    return result.xml.findtext(f"{IQ_GATEWAY}query/{IQ_GATEWAY}jid") or ""


async def test_contact_card_disco_caps_and_prompt_through_ejabberd(
    ejabberd: EjabberdServer,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    require_binary("baresip")
    port = free_port()
    gw = start_gateway(config(ejabberd, tmp_path, port, auto_approve=True), tmp_path / "gw")
    bs: PresenceBaresip | None = None
    try:
        juliet, _ = await client_on(ejabberd, xmpp_account, xmpp_client)
        bs = romeo_baresip(tmp_path / "baresip", port, [])
        await bs.start()
        juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribe")
        online = await juliet.wait_presence(from_romeo("available", set()), LIMIT)

        # XEP-0115: the <c/>, then disco#info at node#ver, hashed here as a client does
        c = online.xml.find(CAPS)
        assert c is not None, ET.tostring(online.xml)
        assert c.get("hash") == "sha-1" and c.get("node") and c.get("ver")
        node = f"{c.get('node')}#{c.get('ver')}"
        info = await juliet.disco_info(online["from"], node=node, timeout=LIMIT)
        query = info.xml.find(f"{INFO}query")
        assert query is not None and query.get("node") == node
        assert caps_ver(query) == c.get("ver")  # XEP-0115 §5.4 step 7
        categories = {i.get("category") for i in query.findall(f"{INFO}identity")}
        assert "client" in categories  # client/phone or client/pc (issue 22 item 2)
        features = {f.get("var") for f in query.findall(f"{INFO}feature")}
        assert {"http://jabber.org/protocol/disco#info", "vcard-temp"} <= features
        # the contact's own disco#info (no node) is what the caps describe
        plain = await juliet.disco_info(online["from"], timeout=LIMIT)
        plain_query = plain.xml.find(f"{INFO}query")
        assert plain_query is not None and caps_ver(plain_query) == c.get("ver")

        # XEP-0054: the card of the bridged contact, bare and full JID alike
        for to in (ROMEO, str(online["from"])):
            result = await iq_get(juliet, to, ET.Element(f"{V}vCard"))
            card = result.find(f"{V}vCard")
            assert card is not None, ET.tostring(result)
            assert card.findtext(f"{V}FN") == "Romeo Montague"  # the user file's display_name
            assert card.findtext(f"{V}TEL/{V}NUMBER") == f"sip:{ROMEO}"  # RFC 7081 §3.1
            assert card.find(f"{V}TEL/{V}VOICE") is not None
            assert card.findtext(f"{V}URL") == f"sip:{ROMEO}"
            assert card.findtext(f"{V}JABBERID") == f"romeo@{ejabberd.domain}"  # linked

        # disco#info of the component domain (XEP-0100 §4.1)
        domain_info = await juliet.disco_info(SIP, timeout=LIMIT)
        dq = domain_info.xml.find(f"{INFO}query")
        assert dq is not None
        idents = {(i.get("category"), i.get("type")) for i in dq.findall(f"{INFO}identity")}
        assert ("gateway", "simple") in idents
        domain_features = {f.get("var") for f in dq.findall(f"{INFO}feature")}
        assert {"jabber:iq:gateway", "http://jabber.org/protocol/disco#info"} <= domain_features

        # XEP-0100 §6.3: the prompt, then what the user types -> the JID to add
        asked = await iq_get(juliet, SIP, ET.Element(f"{IQ_GATEWAY}query"))
        assert asked.findtext(f"{IQ_GATEWAY}query/{IQ_GATEWAY}prompt")
        assert asked.findtext(f"{IQ_GATEWAY}query/{IQ_GATEWAY}desc")
        for typed in (f"sip:{ROMEO}", "romeo", ROMEO, f'"Romeo" <sip:{ROMEO}>'):
            assert await prompt(juliet, SIP, typed) == ROMEO, typed
        for typed, condition in (
            ("romeo@example.com", "not-acceptable"),  # no component reaches that domain
            (f"sips:{ROMEO}", "not-acceptable"),  # RFC 7247 §8: sips never crosses
            ("Romeo Montague", "bad-request"),  # not an address
        ):
            with pytest.raises(IqError) as err:
                await prompt(juliet, SIP, typed)
            assert err.value.iq["error"]["condition"] == condition, typed
            assert err.value.iq["error"]["text"]  # the reason, for the user

        # a vCard for a JID that names no SIP user: an error, logged
        with pytest.raises(IqError) as err:
            await iq_get(juliet, SIP, ET.Element(f"{V}vCard"))
        assert err.value.iq["error"]["condition"] == "item-not-found"
        assert re.search(r"answering iq .*to=sip\.localhost.* cancel/item-not-found", gw.log_text())
    finally:
        if bs is not None:
            await bs.stop()
        if gw.running:
            gw.terminate()


async def test_stop_departs_and_restart_returns_through_ejabberd(
    ejabberd: EjabberdServer,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    """Issue 22 item 5 on ejabberd: approval by the hosted user (baresip subscribes back),
    SIGTERM -> unavailable confirmed before the link closed, restart -> romeo shown again
    with nobody asking, and a probe answered."""
    require_binary("baresip")
    port = free_port()
    conf = config(ejabberd, tmp_path, port, auto_approve=False)
    gw = start_gateway(conf, tmp_path / "gw-1")
    bs: PresenceBaresip | None = None
    try:
        juliet, acct = await client_on(ejabberd, xmpp_account, xmpp_client)
        juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribe")
        async with asyncio.timeout(LIMIT):
            while "hosted watcher asks" not in gw.log_text():
                await asyncio.sleep(0.1)
        bs = romeo_baresip(tmp_path / "baresip", port, [f'"Juliet" <sip:{acct.jid}>;presence=p2p'])
        await bs.start()
        online = await juliet.wait_presence(from_romeo("available", set()), LIMIT)
        device = online["from"].resource
        assert device

        assert await asyncio.to_thread(gw.terminate) == 0
        gone = await juliet.wait_presence(from_romeo("unavailable", set()), LIMIT)
        assert gone["from"].resource == device
        text = gw.log_text()
        confirmed = re.search(r"departures sent .*domain=sip\.localhost.*count=1", text)
        assert confirmed is not None, gw.tail()
        assert confirmed.start() < text.index("stopped")  # before the link closed
        seen = {id(p) for p in juliet.presences}

        gw = start_gateway(conf, tmp_path / "gw-2")
        back = await juliet.wait_presence(from_romeo("available", seen), LIMIT)
        assert back["from"].resource == device
        assert back.xml.find(CAPS) is not None  # re-announced presence carries caps too
        assert "hosted watcher asks" not in gw.log_text()  # nobody asked again

        seen = {id(p) for p in juliet.presences}
        juliet.xmpp.send_presence(pto=ROMEO, ptype="probe")
        probed = await juliet.wait_presence(from_romeo("available", seen), LIMIT)
        assert probed["from"].resource == device
    finally:
        if bs is not None:
            await bs.stop()
        if gw.running:
            gw.terminate()

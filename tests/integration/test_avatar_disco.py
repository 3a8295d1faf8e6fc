"""issue 22 against a real server: avatars (XEP-0153), XEP-0100 discovery and bad IQs.

Real peers: the gateway PROCESS, the session Prosody with slixmpp users, and (for the
avatar) baresip as the hosted user romeo, registering with Digest.

* romeo's user file entry names an avatar (relative to the file). juliet subscribes; the
  presence she gets carries ``<x xmlns='vcard-temp:x:update'><photo>`` with the SHA-1 of
  the file's bytes, and romeo's vCard, fetched through Prosody, holds the image in
  PHOTO/BINVAL. SIGHUP with another image: juliet gets a presence with the new hash at
  once and the vCard changes; SIGHUP with an oversized
  one: the reload is refused with a log line naming the key, the old image stays.
* XEP-0100 §4.1.1 discovery as a client does it: disco#items at the user's server lists
  the gateway (Prosody lists the components under its host), disco#info at the gateway
  says gateway/simple with jabber:iq:gateway, disco#items at the gateway is an empty
  result, and the prompt turns a SIP address into the JID to add.
* Hostile IQs sent through Prosody (thousands of children, deep nesting, 200 kB of text,
  two payloads, an address-less prompt, JIDs that map to no SIP user): each is answered
  with a stanza error and logged by the gateway, or refused by Prosody itself before it
  reaches the gateway; the gateway keeps answering afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
import secrets
import signal
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatcherId

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import account_line
from tests.harness.gateway_proc import GatewayProcess, GatewayProcessError, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_presence_baresip import PresenceBaresip

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ROMEO = f"romeo@{COMPONENT}"
LIMIT = 30.0
V = "{vcard-temp}"
UPDATE = "{vcard-temp:x:update}"
INFO = "{http://jabber.org/protocol/disco#info}"
ITEMS = "{http://jabber.org/protocol/disco#items}"
STANZAS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"
PNG = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(600)
GIF = b"GIF89a" + secrets.token_bytes(300)


def config(prosody: ProsodyServer, tmp_path: Path, port: int, avatar: str | None) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:{ROMEO}", None, "romeo"),
        ha1_sha256=None,  # MD5 only: baresip 1.0 cannot answer SHA-256
        display_name="Romeo Montague",
        avatar=avatar,
    )
    users.write_text(format_user(romeo))
    users.chmod(0o600)
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        presence={"notify_interval": 0.5, "auto_approve_hosted": True},
        admin={"enabled": False},
    )


def ptype(stanza: Any) -> str:
    return stanza.xml.get("type") or "available"


def photo_hash(presence: Any) -> str | None:
    return presence.xml.findtext(f"{UPDATE}x/{UPDATE}photo")


async def vcard_photo(client: XmppTestClient, jid: str) -> tuple[str | None, bytes]:
    iq = client.xmpp.make_iq_get(ito=jid)
    iq.append(ET.Element(f"{V}vCard"))
    result = await iq.send(timeout=LIMIT)
    photo = result.xml.find(f"{V}vCard/{V}PHOTO")
    assert photo is not None, ET.tostring(result.xml)
    return photo.findtext(f"{V}TYPE"), base64.b64decode(photo.findtext(f"{V}BINVAL") or "")


async def test_avatar_in_presence_and_vcard_and_reload(
    prosody: ProsodyServer,
    xmpp_account: object,
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    require_binary("baresip")
    (tmp_path / "avatars").mkdir()
    picture = tmp_path / "avatars" / "romeo.png"
    picture.write_bytes(PNG)
    port = free_port()
    cfg = config(prosody, tmp_path, port, avatar="avatars/romeo.png")  # relative to the file
    gw = GatewayProcess(cfg, tmp_path / "gw", log_level="info")
    gw.start()
    bs: PresenceBaresip | None = None
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        acct: Account = xmpp_account("juliet")  # type: ignore[operator]
        juliet = await xmpp_client(acct)
        bs = PresenceBaresip(
            tmp_path / "baresip",
            account=account_line(f"sip:{ROMEO}", "romeo", (LOOPBACK, port), regint=600),
            contact_lines=[],
        )
        await bs.start()
        juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribe")
        online = await juliet.wait_presence(
            lambda p: p["from"].bare == ROMEO and ptype(p) == "available", LIMIT
        )
        xs = online.xml.findall(f"{UPDATE}x")
        assert len(xs) == 1, ET.tostring(online.xml)
        assert [(c.tag, c.text) for c in xs[0]] == [
            (f"{UPDATE}photo", hashlib.sha1(PNG).hexdigest())  # XEP-0153 §3.1
        ]
        assert await vcard_photo(juliet, ROMEO) == ("image/png", PNG)

        picture.write_bytes(GIF)  # the operator changes the image, then reloads
        gw.send_signal(signal.SIGHUP)
        gw.wait_for_log(r"configuration reloaded", timeout=LIMIT)
        gif_hash = hashlib.sha1(GIF).hexdigest()  # announced at once to the watchers
        await juliet.wait_presence(
            lambda p: p["from"].bare == ROMEO and photo_hash(p) == gif_hash, LIMIT
        )
        assert await vcard_photo(juliet, ROMEO) == ("image/gif", GIF)

        picture.write_bytes(PNG[:8] + bytes(70_000))  # too large: refused, old one kept
        gw.send_signal(signal.SIGHUP)
        line = gw.wait_for_log(r"user file reload failed.*", timeout=LIMIT).group(0)
        assert 'users."romeo@sip.localhost".avatar' in line and "more than" in line
        assert await vcard_photo(juliet, ROMEO) == ("image/gif", GIF)
        assert gw.running
    finally:
        if bs is not None:
            await bs.stop()
        if gw.running:
            gw.terminate()


def test_unreadable_avatar_stops_the_start_with_the_key(
    prosody: ProsodyServer, tmp_path: Path
) -> None:
    cfg = config(prosody, tmp_path, free_port(), avatar="missing.png")
    gw = GatewayProcess(cfg, tmp_path / "gw", log_level="info")
    with pytest.raises(GatewayProcessError, match="exited with 1 before ready"):
        gw.start()
    text = gw.log_text()
    key = r'users\."romeo@sip\.localhost"\.avatar'
    assert re.search(rf"cannot start: .*users_file: .*{key}: cannot read .*missing\.png", text)
    assert "Traceback" not in text


async def test_xep0100_discovery_and_hostile_iqs(
    prosody: ProsodyServer, xmpp_client: ClientFactory, tmp_path: Path
) -> None:
    gw = GatewayProcess(
        config(prosody, tmp_path, free_port(), avatar=None), tmp_path / "gw", log_level="info"
    )
    gw.start()
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        juliet = await xmpp_client(prefix="juliet")
        await discovery(juliet)
        await hostile(juliet, gw, prosody)
        assert gw.running
    finally:
        if gw.running:
            gw.terminate()


async def discovery(juliet: XmppTestClient) -> None:
    """XEP-0100 §4.1.1 steps 1-2 and §6.3 (Add Contact), as a client walks them."""
    server = juliet.xmpp.boundjid.domain
    items = await juliet.disco_items(server, timeout=LIMIT)
    jids = [i.get("jid") for i in items.xml.findall(f"{ITEMS}query/{ITEMS}item")]
    assert COMPONENT in jids, jids  # the gateway is an item of the user's server
    info = await juliet.disco_info(COMPONENT, timeout=LIMIT)
    query = info.xml.find(f"{INFO}query")
    assert query is not None
    assert ("gateway", "simple") in [
        (i.get("category"), i.get("type")) for i in query.findall(f"{INFO}identity")
    ]
    assert "jabber:iq:gateway" in {f.get("var") for f in query.findall(f"{INFO}feature")}
    own = await juliet.disco_items(COMPONENT, timeout=LIMIT)
    own_query = own.xml.find(f"{ITEMS}query")
    assert own.xml.get("type") == "result" and own_query is not None and len(own_query) == 0
    answer = await ask(juliet, COMPONENT, "<query xmlns='jabber:iq:gateway'><prompt>"
                       "sip:tybalt@sip.localhost</prompt></query>", "set")  # fmt: skip
    assert answer.get("type") == "result"
    assert answer.findtext("{jabber:iq:gateway}query/{jabber:iq:gateway}jid") == (
        f"tybalt@{COMPONENT}"
    )


async def ask(
    client: XmppTestClient, to: str, payload: str, iq_type: str = "get", iq_id: str = ""
) -> ET.Element:
    """Send an IQ written by hand (slixmpp's own serializer recurses: no deep payloads)
    and wait for the answer with its id."""
    iq_id = iq_id or secrets.token_hex(6)
    done: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()

    def answered(stanza: Any) -> None:
        if not done.done():
            done.set_result(stanza.xml)

    client.xmpp.register_handler(Callback(f"ans-{iq_id}", MatcherId(iq_id), answered, once=True))
    client.send_raw(f"<iq type='{iq_type}' id='{iq_id}' to='{to}'>{payload}</iq>")
    return await asyncio.wait_for(done, LIMIT)


def _deep(depth: int) -> str:
    return "<a>" * depth + "</a>" * depth


HOSTILE: list[tuple[str, str, str, str]] = [
    # (name, to, payload, type)
    ("vcard children", ROMEO, "<vCard xmlns='vcard-temp'>" + "<x/>" * 5000 + "</vCard>", "get"),
    ("vcard deep", ROMEO, "<vCard xmlns='vcard-temp'>" + _deep(2000) + "</vCard>", "get"),
    ("vcard text", ROMEO, "<vCard xmlns='vcard-temp'>" + "A" * 200_000 + "</vCard>", "get"),
    ("disco deep", COMPONENT,
     "<query xmlns='http://jabber.org/protocol/disco#info'>" + _deep(2000) + "</query>", "get"),
    ("items children", COMPONENT,
     "<query xmlns='http://jabber.org/protocol/disco#items'>" + "<i/>" * 5000 + "</query>",
     "get"),
    ("gateway get with text", COMPONENT,
     "<query xmlns='jabber:iq:gateway'>" + "B" * 100_000 + "</query>", "get"),
    ("prompt long", COMPONENT,
     "<query xmlns='jabber:iq:gateway'><prompt>" + "a " * 60_000 + "</prompt></query>", "set"),
    ("prompt deep", COMPONENT,
     "<query xmlns='jabber:iq:gateway'><prompt>" + _deep(2000) + "</prompt></query>", "set"),
    ("prompt no address", COMPONENT,
     "<query xmlns='jabber:iq:gateway'><prompt>romeo montague</prompt></query>", "set"),
]  # fmt: skip


async def hostile(juliet: XmppTestClient, gw: GatewayProcess, prosody: ProsodyServer) -> None:
    for name, to, payload, iq_type in HOSTILE:
        iq_id = f"bad{secrets.token_hex(4)}"
        reply = await ask(juliet, to, payload, iq_type, iq_id)
        assert reply.get("type") == "error", (name, ET.tostring(reply)[:300])
        error = reply.find("{jabber:client}error")
        assert error is not None and error.find(f"{STANZAS}bad-request") is not None, name
        assert error.get("type") == "modify", name
        assert (error.findtext(f"{STANZAS}text") or "").strip(), name  # says why
        gw.wait_for_log(rf"answering iq type={iq_type} id={iq_id} .* modify/bad-request", LIMIT)
    # RFC 6120 §8.2.3: two payloads. Prosody answers bad-request itself; nothing reaches us
    iq_id = f"two{secrets.token_hex(4)}"
    reply = await ask(juliet, ROMEO, "<vCard xmlns='vcard-temp'/>" * 2, "get", iq_id)
    error = reply.find("{jabber:client}error")
    assert error is not None and error.find(f"{STANZAS}bad-request") is not None
    assert await juliet.ping(COMPONENT, timeout=LIMIT) >= 0  # ordered after the IQ
    assert iq_id not in gw.log_text()
    # JIDs that map to no SIP user (XEP-0106: `\5c` must escape a backslash sequence)
    for ns in ("vcard-temp", "http://jabber.org/protocol/disco#info",
               "http://jabber.org/protocol/disco#items"):  # fmt: skip
        for to, condition in ((f"a\\5cb@{COMPONENT}", "jid-malformed"),
                              (f"romeo@{COMPONENT}/x", None)):  # fmt: skip
            root = "vCard" if ns == "vcard-temp" else "query"
            iq_id = f"map{secrets.token_hex(4)}"
            reply = await ask(juliet, to, f"<{root} xmlns='{ns}'/>", "get", iq_id)
            if condition is None:
                assert reply.get("type") == "result", (ns, to)
                continue
            error = reply.find("{jabber:client}error")
            assert error is not None and error.find(f"{STANZAS}{condition}") is not None, ns
            gw.wait_for_log(rf"answering iq type=get id={iq_id} .*{condition}", LIMIT)
    # and the gateway still answers
    assert await juliet.ping(COMPONENT, timeout=LIMIT) >= 0

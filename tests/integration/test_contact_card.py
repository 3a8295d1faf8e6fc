"""issue 22 items 1-2 against a real server: what an XMPP client sees of a bridged SIP contact.

Real peers: the gateway PROCESS with a user file giving romeo a `display_name`, the session
Prosody with a slixmpp user (juliet), and baresip as romeo, registering with Digest. With
`auto_approve_hosted`, juliet's subscription is approved at once and she gets romeo's
registered device as available presence. She then checks, through Prosody:

* the presence carries a XEP-0115 ``<c/>`` (hash sha-1, the documented node);
* disco#info at ``node#ver`` answers client/phone and romeo's features (none of the optional
  message features: his SIP peer has shown none yet, issue 22 item 2), and the §5.1
  hash of that answer, computed here independently, is the presence's ``ver``;
* romeo's vCard has the user file's display name as FN, the SIP URI in TEL and URL, and
  the XMPP account the user file links to him in JABBERID (RFC 7081, issue 22 item 4);
* a vCard request to the component's own domain is an item-not-found error.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import account_line
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_presence_baresip import PresenceBaresip

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ROMEO = f"romeo@{COMPONENT}"
LIMIT = 30.0
CAPS = "{http://jabber.org/protocol/caps}c"
INFO = "{http://jabber.org/protocol/disco#info}"
V = "{vcard-temp}"


def config(prosody: ProsodyServer, tmp_path: Path, port: int) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:{ROMEO}", None, "romeo"),
        ha1_sha256=None,  # MD5 only: baresip 1.0 cannot answer SHA-256
        display_name="Romeo Montague",
        xmpp=f"romeo@{prosody.domain}",  # RFC 7081: his XMPP account
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


def caps_ver_of(query: ET.Element) -> str:
    """XEP-0115 §5.1 over a disco#info <query/> (no forms), written here from the spec."""
    idents = sorted(
        (
            i.get("category", ""),
            i.get("type", ""),
            i.get("{http://www.w3.org/XML/1998/namespace}lang", ""),
            i.get("name", ""),
        )
        for i in query.findall(f"{INFO}identity")
    )
    features = sorted(f.get("var", "") for f in query.findall(f"{INFO}feature"))
    s = "".join(f"{c}/{t}/{lang}/{n}<" for c, t, lang, n in idents)
    s += "".join(f"{f}<" for f in features)
    return base64.b64encode(hashlib.sha1(s.encode("utf-8")).digest()).decode()


def ptype(stanza: Any) -> str:
    return stanza.xml.get("type") or "available"


async def test_contact_vcard_disco_and_caps_through_prosody(
    prosody: ProsodyServer,
    xmpp_account: object,
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    require_binary("baresip")
    port = free_port()
    gw = GatewayProcess(config(prosody, tmp_path, port), tmp_path / "gw", log_level="info")
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
        c = online.xml.find(CAPS)
        assert c is not None, ET.tostring(online.xml)
        assert c.get("hash") == "sha-1"
        assert c.get("node") == "https://cpim-gateway.invalid/caps"  # docs/xmpp.md
        node = f"{c.get('node')}#{c.get('ver')}"

        info = await juliet.disco_info(online["from"], node=node, timeout=LIMIT)
        query = info.xml.find(f"{INFO}query")
        assert query is not None and query.get("node") == node
        assert [(i.get("category"), i.get("type")) for i in query.findall(f"{INFO}identity")] == [
            ("client", "phone")
        ]
        features = {f.get("var") for f in query.findall(f"{INFO}feature")}
        # issue 22 item 2: romeo's baresip has sent no isComposing, no IMDN, no Accept
        # text/html yet, so none of the optional features holds for him; file links
        # (XEP-0066) always reach SIP, as FT-HTTP or as text (issue 17)
        assert features == {
            "http://jabber.org/protocol/disco#info",
            "urn:xmpp:ping",
            "vcard-temp",
            "jabber:x:oob",
        }
        assert caps_ver_of(query) == c.get("ver")  # XEP-0115 §5.4 step 7, as a client does
        plain = await juliet.disco_info(online["from"], timeout=LIMIT)  # no node: the same
        plain_query = plain.xml.find(f"{INFO}query")
        assert plain_query is not None and caps_ver_of(plain_query) == c.get("ver")

        iq = juliet.xmpp.make_iq_get(ito=ROMEO)
        iq.append(ET.Element(f"{V}vCard"))
        result = await iq.send(timeout=LIMIT)
        card = result.xml.find(f"{V}vCard")
        assert card is not None
        assert card.findtext(f"{V}FN") == "Romeo Montague"  # the user file's display_name
        assert card.findtext(f"{V}TEL/{V}NUMBER") == f"sip:{ROMEO}"
        assert card.find(f"{V}TEL/{V}VOICE") is not None
        assert card.findtext(f"{V}URL") == f"sip:{ROMEO}"
        assert card.findtext(f"{V}JABBERID") == f"romeo@{prosody.domain}"  # the user file's xmpp

        bad = juliet.xmpp.make_iq_get(ito=COMPONENT)
        bad.append(ET.Element(f"{V}vCard"))
        with pytest.raises(IqError) as err:
            await bad.send(timeout=LIMIT)
        assert err.value.iq["error"]["condition"] == "item-not-found"
        assert re.search(r"answering iq .*to=sip\.localhost.* cancel/item-not-found", gw.log_text())
    finally:
        if bs is not None:
            await bs.stop()
        if gw.running:
            gw.terminate()

"""Two gateway domains through ejabberd, each on its own `ejabberd_service` listener.

ejabberd 23.01 gives every connection of an `ejabberd_service` listener the routes of
all the listener's `hosts`: with two gateway domains on one listener, ejabberd picks
either stream for a stanza to either domain, and the wrong component answers
item-not-found (docs/interop.md). The fix operators use: one listener per domain, and
`[[xmpp.components]] port` pointing each component at its own (docs/configuration.md).

Real peers: the session ejabberd (Debian 23.01; `own_listeners`: each session component
also has a listener of its own), the gateway PROCESS with a mirrored `sip.localhost` and
an escaped `gw.localhost` component, each with its own `port`, and a slixmpp client
logged in to ejabberd. The client alternates requests between the two domains (vCards,
contact disco#info, the XEP-0100 prompt): every answer must come from the right
component. With both components on the shared listener this test fails (most requests
of one domain or the other get item-not-found).
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.ejabberd import EjabberdServer
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.integration.conftest import Account, ClientFactory
from tests.integration.test_contacts_ejabberd import INFO, IQ_GATEWAY, LIMIT, V, iq_get, prompt

pytestmark = pytest.mark.integration

SIP, GW = "sip.localhost", "gw.localhost"  # mirrored, escaped
ROMEO_SIP = f"romeo@{SIP}"  # a hosted user (display name from the user file)
ROMEO_GW = f"romeo\\40example.com@{GW}"  # sip:romeo@example.com, XEP-0106 escaped
ROUNDS = 20  # requests per kind, alternating between the domains


def component_ports(server: EjabberdServer) -> Mapping[str, int]:
    """The port each gateway component connects to: its own listener's."""
    return {d: server.component_ports[d] for d in (SIP, GW)}


def config(server: EjabberdServer, tmp_path: Path, ports: Mapping[str, int]) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:{ROMEO_SIP}", None, "romeo"), display_name="Romeo Montague"
    )
    users.write_text(format_user(romeo))
    users.chmod(0o600)
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": server.component_port,  # the shared listener: the default, not used
            "components": [
                {
                    "domain": SIP,
                    "secret": server.components[SIP],
                    "addressing": "mirrored",
                    "port": ports[SIP],
                },
                {
                    "domain": GW,
                    "secret": server.components[GW],
                    "addressing": "escaped",
                    "port": ports[GW],
                },
            ],
        },
        sip={
            "hosted_domains": [SIP],
            "served_xmpp_domains": [server.domain],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}],
        },
        registrar={"users_file": str(users)},
        admin={"enabled": False},
    )


def check_card(to: str, result: ET.Element) -> None:
    card = result.find(f"{V}vCard")
    assert card is not None, ET.tostring(result)
    if to == ROMEO_SIP:
        assert card.findtext(f"{V}FN") == "Romeo Montague"
        assert card.findtext(f"{V}URL") == f"sip:{ROMEO_SIP}"
    else:
        assert card.findtext(f"{V}FN") == "romeo"  # the user part: no name known
        assert card.findtext(f"{V}URL") == "sip:romeo@example.com"


async def test_two_domains_each_on_its_own_ejabberd_listener(
    ejabberd: EjabberdServer,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    ports = component_ports(ejabberd)
    gw = GatewayProcess(config(ejabberd, tmp_path, ports), tmp_path / "gw", log_level="info")
    gw.start()
    try:
        for domain in (SIP, GW):  # each link up on its own port
            gw.wait_for_log(
                rf"xmpp link {re.escape(domain)} up \({LOOPBACK}:{ports[domain]}\)", timeout=LIMIT
            )
        juliet = await xmpp_client(xmpp_account("juliet", ejabberd), server=ejabberd)

        for i in range(ROUNDS):  # XEP-0054 vCards, alternating
            to = (ROMEO_SIP, ROMEO_GW)[i % 2]
            check_card(to, await iq_get(juliet, to, ET.Element(f"{V}vCard")))

        for i in range(ROUNDS):  # XEP-0030 disco#info of the contacts, alternating
            to = (ROMEO_SIP, ROMEO_GW)[i % 2]
            info = await juliet.disco_info(to, timeout=LIMIT)
            query = info.xml.find(f"{INFO}query")
            assert query is not None, ET.tostring(info.xml)
            features = {f.get("var") for f in query.findall(f"{INFO}feature")}
            assert "vcard-temp" in features, (to, features)

        # XEP-0100: disco#info of each domain, the prompt, and what the user types
        for domain in (SIP, GW):
            dq = (await juliet.disco_info(domain, timeout=LIMIT)).xml.find(f"{INFO}query")
            assert dq is not None
            idents = {(i.get("category"), i.get("type")) for i in dq.findall(f"{INFO}identity")}
            assert ("gateway", "simple") in idents, domain
            asked = await iq_get(juliet, domain, ET.Element(f"{IQ_GATEWAY}query"))
            assert asked.findtext(f"{IQ_GATEWAY}query/{IQ_GATEWAY}prompt"), domain
        typed = {SIP: f"sip:{ROMEO_SIP}", GW: "sip:romeo@example.com"}
        for i in range(ROUNDS):
            domain = (SIP, GW)[i % 2]
            assert await prompt(juliet, domain, typed[domain]) == (ROMEO_SIP, ROMEO_GW)[i % 2]

        assert "item-not-found" not in gw.log_text()  # no stranger answers at all
    finally:
        if gw.running:
            gw.terminate()

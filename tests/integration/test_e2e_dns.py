"""Issue 9 end to end: an XMPP user messages a SIP user of a domain found only through DNS.

The gateway's escaped component (gw.localhost) carries `romeo\\40far.test@gw.localhost`;
far.test exists only in a dnsmasq on loopback (`_sip._udp.far.test` SRV -> a sipp UAS), and
the gateway has federation on, no static route and no trusted peer. The XMPP -> SIP message
is located by RFC 7247 §5 + RFC 3263 and delivered to the UAS; the SIP user's answer (a
MESSAGE from sip:romeo@far.test) comes back to the XMPP user from the very JID she wrote to.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp import JID

from tests.harness import LOOPBACK
from tests.harness.dns import DnsServer, Host, Record, Srv
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.conftest import ClientFactory
from tests.integration.test_pager import (
    body_of,
    fill,
    header,
    header_lines,
    received_requests,
    see_all_messages,
    text_of,
)

pytestmark = pytest.mark.asyncio

GW = "gw.localhost"
LIMIT = 30.0


@pytest.fixture
def uas_port() -> int:
    return free_port()


@pytest.fixture
def dns(tmp_path: Path, uas_port: int) -> Iterator[DnsServer]:
    records: list[Record] = [
        Srv("_sip._udp.far.test", "sipuas.far.test", uas_port),
        Host("sipuas.far.test", LOOPBACK),
    ]
    with DnsServer(tmp_path / "dns", zones=["far.test"], records=records, ttl=60) as server:
        yield server


async def test_xmpp_user_messages_sip_user_found_by_dns_and_gets_the_reply(
    *,
    prosody: ProsodyServer,
    dns: DnsServer,
    uas_port: int,
    sipp: Sipp,
    xmpp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    port = free_port()
    config = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [
                {"domain": GW, "secret": prosody.components[GW], "addressing": "escaped"}
            ],
        },
        sip={
            "hosted_domains": [],
            "served_xmpp_domains": [prosody.domain],
            "federation": True,
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        dns={"servers": [f"{dns.address[0]}:{dns.address[1]}"], "timeout": 1.0},
        admin={"enabled": False},
    )
    gw = GatewayProcess(config, tmp_path / "gateway", log_level="info")
    await asyncio.to_thread(gw.start)
    try:
        await asyncio.to_thread(gw.wait_for_log, rf"xmpp link {re.escape(GW)} up", LIMIT)
        juliet = see_all_messages(await xmpp_client(prefix="juliet"))
        romeo_jid = f"romeo\\40far.test@{GW}"
        uas_scenario = fill(
            "pager_uas.xml", tmp_path / "uas.xml", {"STATUS": "200 OK", "HEADERS": ""}
        )
        with sipp.uas(uas_scenario, local_port=uas_port, timeout=40) as uas:
            juliet.send_message(romeo_jid, "found you through DNS", mtype="normal")
            result = await asyncio.to_thread(uas.wait)
        assert result.ok, result.describe()
        (req,) = received_requests(result)
        assert req.startswith("MESSAGE sip:romeo@far.test SIP/2.0")
        assert f"sip:{juliet.jid.local}@localhost;gr=test" in (header(req, "From") or "")
        assert body_of(req).strip() == "found you through DNS"
        dns.sync()
        asked = dns.queries("_sip._udp.far.test", "SRV")
        assert asked, dns.queries()  # it really was DNS that found the UAS

        # the reply: a MESSAGE from the SIP user, federated (no trusted peer)
        uac_scenario = fill(
            "pager_uac.xml",
            tmp_path / "uac.xml",
            {
                "STATUS": "200",
                "CONTENT_TYPE": "text/plain",
                "HEADERS": header_lines(()),
                "BODY": "and I answer",
                "MAX_FORWARDS": "70",
            },
        )
        result = await asyncio.to_thread(
            lambda: sipp.run(
                uac_scenario,
                remote=f"{LOOPBACK}:{port}",
                keys={"to_uri": f"sip:{juliet.jid.bare}", "from_uri": "sip:romeo@far.test"},
                timeout=20,
            )
        )
        assert result.ok, result.describe()
        reply = await juliet.wait_message(lambda m: text_of(m) == "and I answer", timeout=LIMIT)
        assert JID(reply["from"]).bare == romeo_jid  # the JID juliet wrote to
    finally:
        if gw.running:
            gw.kill()

"""The resource list server (RFC 4662, RFC 5367) against real peers: the gateway PROCESS,
the session Prosody with a slixmpp user (juliet), and sipp as a hosted SIP user (alice)
subscribing to a request-contained list that holds juliet (`lists_rls_uac.xml`).

Checked: 200 with `Require: eventlist`; NOTIFYs multipart/related whose RLMI part
validates against the RFC 4662 schema (tests/vectors/standards/schemas/rlmi.xsd), version
0 full state first with juliet `pending` (her approval is outstanding), then partial
states with version +1 each; juliet's approval makes her `active` and her PIDF (with
`<show>away</show>` after she changes presence) arrives in a part named by the RLMI cid;
the unsubscribe gets a final NOTIFY with RLMI. sipp sends from 127.0.0.1, a trusted peer.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from lxml import etree

from mappings.rlmi import parse_list_body
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp, SippProcess
from tests.integration.conftest import ClientFactory
from tests.unit.listdocs_support import assert_valid

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
ALICE = f"alice@{COMPONENT}"
LIMIT = 30.0


def gateway(prosody: ProsodyServer, tmp_path: Path, port: int, **lists: object) -> str:
    return gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "trusted_peers": [LOOPBACK],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        presence={"notify_interval": 0.5},
        lists={"min_interval": 0.5, **lists},
        admin={"enabled": False},
    )


async def sipp_saw(proc: SippProcess, pattern: str) -> None:
    trace = proc.workdir / "messages.log"
    async with asyncio.timeout(LIMIT):
        while not trace.exists() or not re.search(pattern, trace.read_text(errors="replace")):
            await asyncio.sleep(0.1)


def notifies(trace: str) -> list[tuple[dict[str, str], bytes]]:
    """Every NOTIFY sipp received, as (headers, body), from its message trace."""
    out = []
    for chunk in re.split(r"\n-{10,}[^\n]*\n", trace):
        what, _, text = chunk.partition("\n")  # "UDP message received [n] bytes :"
        text = text.lstrip("\r\n")
        if "received" not in what or not text.startswith("NOTIFY "):
            continue
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        headers = {}
        for line in head.split("\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        out.append((headers, body.encode()[: length or None]))
    return out


def rlmi_root(body: bytes) -> bytes:
    """The first part's body (the RLMI document) of a multipart/related body."""
    first = re.split(rb"\r?\n\r?\n", body, maxsplit=2)
    return first[1].split(b"\n--", 1)[0].strip()


async def test_request_contained_list_carries_an_xmpp_contacts_presence(
    prosody: ProsodyServer, xmpp_client: ClientFactory, sipp: Sipp, tmp_path: Path
) -> None:
    port = free_port()
    gw = GatewayProcess(gateway(prosody, tmp_path, port), tmp_path / "gw", log_level="info")
    gw.start()
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        juliet = await xmpp_client(prefix="juliet")
        juliet.xmpp.auto_authorize = None
        juliet.xmpp.auto_subscribe = False
        juliet_uri = f"sip:{juliet.jid.user}@{juliet.jid.domain}"
        alice = SippProcess(
            "lists_rls_uac.xml",
            remote=f"{LOOPBACK}:{port}",
            timeout=90,
            workdir=sipp.workdir,
            keys={"juliet": juliet_uri},
        )
        run = asyncio.create_task(asyncio.to_thread(alice.wait))

        # the back-end subscription: `subscribe` from alice's JID, pending until juliet decides
        await juliet.wait_presence(
            lambda p: p["from"].bare == ALICE and p.xml.get("type") == "subscribe", LIMIT
        )
        await sipp_saw(alice, r'version="0" fullState="true"')
        juliet.xmpp.send_presence(pto=ALICE, ptype="subscribed")
        await sipp_saw(alice, r'fullState="false"')
        await asyncio.sleep(1.0)  # past the list's min_interval: a NOTIFY of its own
        juliet.xmpp.send_presence(pshow="away", pstatus="on the balcony")

        result = await run
        assert result.ok, result.describe()
        log = gw.log_text()
        assert "list subscribed" in log, gw.tail()
    finally:
        gw.terminate()

    seen = notifies(result.messages)
    assert len(seen) >= 3, result.messages[-3000:]
    versions = []
    for headers, body in seen:
        assert headers["require"] == "eventlist"
        parsed = parse_list_body(headers["content-type"], body)  # every cid has its part
        assert_valid("rlmi", rlmi_root(body))
        versions.append(parsed.rlmi.version)
        assert [r.uri for r in parsed.rlmi.resources][:1] == [juliet_uri]
    assert versions == list(range(len(seen)))  # version +1 per NOTIFY, no gap
    first = parse_list_body(seen[0][0]["content-type"], seen[0][1])
    assert first.rlmi.full_state and first.rlmi.resources[0].instances[0].state == "pending"
    away = [parse_list_body(h["content-type"], b) for h, b in seen[1:-1]]
    assert all(not p.rlmi.full_state for p in away)
    last_partial = away[-1]
    inst = last_partial.rlmi.resources[0].instances[0]
    assert inst.state == "active" and inst.cid is not None
    pidf = last_partial.parts[inst.cid].body
    assert b"<show>away</show>" in pidf or b">away</" in pidf
    assert etree.fromstring(pidf).tag.endswith("presence")
    assert seen[-1][0]["subscription-state"].startswith("terminated")


async def test_refused_list_subscriptions_get_their_status_and_a_log_line(
    prosody: ProsodyServer, sipp: Sipp, tmp_path: Path
) -> None:
    """Bad input (issue 24) through the gateway process: 421 without eventlist, 400 for a
    malformed body and for hostile XML, 413 past max_entries, 403 past max_depth and for a
    loop (`lists_refused_uac.xml` checks each status), one log line per refusal."""
    port = free_port()
    config = gateway(prosody, tmp_path, port, max_entries=3, max_depth=2)
    gw = GatewayProcess(config, tmp_path / "gw", log_level="info")
    gw.start()
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        result = await asyncio.to_thread(
            sipp.run, "lists_refused_uac.xml", remote=f"{LOOPBACK}:{port}", timeout=60
        )
        assert result.ok, result.describe()
        log = gw.log_text()
    finally:
        gw.terminate()
    refused = re.findall(r"list subscription refused status=(\d+)", log)
    assert refused == ["421", "400", "413", "403", "403", "400"], log[-3000:]
    assert "list subscribed" not in log

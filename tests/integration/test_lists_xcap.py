"""Lists from XCAP served by the resource list server (issue 24), against the gateway
PROCESS: alice stores her resource-lists document over real HTTP (aiohttp with Digest
against the user file), then sipp as alice (a trusted peer) subscribes to bob's list URI
(403: only a list's owner may; a list reveals its members' presence) and to her own,
`sip:alice-list@sip.localhost` without a body (RFC 4662 §4), and gets a full-state RLMI
NOTIFY naming the member of her document (`lists_xcap_uac.xml`); the RLMI validates
against the RFC 4662 schema.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import pytest

from gateway.registrar.users import format_user, hash_password
from mappings.rlmi import parse_list_body
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.test_lists_rls import notifies, rlmi_root
from tests.unit.listdocs_support import assert_valid

pytestmark = pytest.mark.integration

DOMAIN = "sip.localhost"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}
LIMIT = 30.0
LIST = b"""<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="friends"><entry uri="sip:bob@sip.localhost"/></list>
</resource-lists>
"""


async def test_a_users_xcap_list_is_served_to_its_owner_only(
    prosody: ProsodyServer, sipp: Sipp, tmp_path: Path
) -> None:
    users = tmp_path / "users.toml"
    users.write_text(
        "".join(
            format_user(hash_password(f"{u}@{DOMAIN}", None, pw)) for u, pw in PASSWORDS.items()
        )
    )
    users.chmod(0o600)
    port, xcap_port = free_port(), free_port()
    conf = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": DOMAIN, "secret": prosody.components[DOMAIN]}],
        },
        sip={
            "hosted_domains": [DOMAIN],
            "served_xmpp_domains": [prosody.domain],
            "trusted_peers": [LOOPBACK],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        xcap={"enabled": True, "host": LOOPBACK, "port": xcap_port},
        lists={"min_interval": 0.5},
        admin={"enabled": False},
    )
    gw = GatewayProcess(conf, tmp_path / "gw", log_level="info")
    gw.start()
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(DOMAIN)} up", timeout=LIMIT)
        gw.wait_for_log("xcap server listening", timeout=LIMIT)
        for user in ("alice", "bob"):  # each stores a list: bob's exists, alice may not see it
            url = (
                f"http://{LOOPBACK}:{xcap_port}/xcap/resource-lists/users/sip:{user}@{DOMAIN}/index"
            )
            digest = aiohttp.DigestAuthMiddleware(user, PASSWORDS[user])
            async with aiohttp.ClientSession(middlewares=(digest,)) as client:
                headers = {"Content-Type": "application/resource-lists+xml"}
                async with client.put(url, data=LIST, headers=headers) as r:
                    assert r.status == 201, await r.text()
        result = await asyncio.to_thread(
            sipp.run, "lists_xcap_uac.xml", remote=f"{LOOPBACK}:{port}", timeout=60
        )
        assert result.ok, result.describe()
        log = gw.log_text()
    finally:
        gw.terminate()
    assert re.search(r"list subscription refused status=403 reason=.the list of another", log)
    assert "list subscribed" in log, log[-3000:]
    seen = notifies(result.messages)
    assert len(seen) >= 2
    headers, body = seen[0]
    first = parse_list_body(headers["content-type"], body)
    assert_valid("rlmi", rlmi_root(body))
    assert first.rlmi.full_state and first.rlmi.uri == f"sip:alice-list@{DOMAIN}"
    assert [r.uri for r in first.rlmi.resources] == [f"sip:bob@{DOMAIN}"]
    assert seen[-1][0]["subscription-state"].startswith("terminated")

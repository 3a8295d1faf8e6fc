"""Issue 23, the location service against sipp as the real peer (loopback, bounded): the
two cases tests/component/test_location_service.py covers in memory.

* A GRUU whose binding is gone: the phone registers, SUBSCRIBEs to an XMPP user with its
  public GRUU as Contact and gets the first NOTIFY, then un-REGISTERs. When the XMPP user
  approves, the gateway's NOTIFY to the GRUU fails locally with 480 (RFC 3261 §16.5,
  RFC 5627 §5.3), never through DNS, and the dialog is removed (RFC 6665 §4.2.2).
* Path (RFC 3327): sipp relays the REGISTER as an edge proxy with a Path; the 200 echoes
  it with Supported: path (§5.3), and an XMPP user's MESSAGE to the AOR comes back over
  that flow with the Path as its Route (the proxy's sipp checks it and answers 200).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.conftest import Account, ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0
ROMEO = f"romeo@{COMPONENT}"


def config(prosody: ProsodyServer, tmp_path: Path, port: int, admin_port: int) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(hash_password(f"sip:{ROMEO}", None, "romeo"), ha1_sha256=None)
    users.write_text(format_user(romeo))  # MD5 only: what sipp answers
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
        admin={"listen": f"{LOOPBACK}:{admin_port}"},
        dns={"servers": []},  # any DNS lookup fails loudly ("DNS is disabled")
    )


def received(messages: str, start: str) -> str:
    """The first message sipp received (its -trace_msg log) whose first line starts with
    `start` (a retransmission may follow it: UDP)."""
    for entry in re.split(r"^-{20,} .*$", messages, flags=re.M):
        kind, _, rest = entry.partition(" bytes :")
        message = rest.strip()
        if "message received" in kind and message.startswith(start):
            return message
    raise AssertionError(f"sipp received no {start!r}:\n{messages[-3000:]}")


async def listing(admin_port: int, name: str) -> list[dict[str, Any]]:
    """The rows of the admin API's /registrations or /subscriptions."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{LOOPBACK}:{admin_port}/{name}") as resp,
    ):
        assert resp.status == 200
        listed = await resp.json()
    rows: list[dict[str, Any]] = listed[name]
    return rows


async def s2x_subscriptions(admin_port: int) -> list[dict[str, Any]]:
    return [r for r in await listing(admin_port, "subscriptions") if r["direction"] == "s2x"]


async def test_notify_to_a_gruu_whose_binding_is_gone_fails_locally_with_480(
    prosody: ProsodyServer,
    sipp: Sipp,
    tmp_path: Path,
    xmpp_account: Callable[..., Account],
    xmpp_client: ClientFactory,
) -> None:
    require_binary("sipp")
    port, sipp_port, admin_port = free_port(), free_port(), free_port()
    acct = xmpp_account("juliet")
    juliet = await xmpp_client(acct)
    juliet.xmpp.auto_authorize = None  # juliet decides herself, below
    juliet.xmpp.auto_subscribe = False
    with GatewayProcess(
        config(prosody, tmp_path, port, admin_port), tmp_path / "gw", log_level="info"
    ) as gw:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        result = await asyncio.to_thread(
            sipp.run,
            "location_gruu_unregister_uac",
            remote=f"{LOOPBACK}:{port}",
            local_port=sipp_port,
            keys={"user": "romeo", "domain": COMPONENT, "watched": f"sip:{acct.jid}"},
            extra_args=["-au", "romeo", "-ap", "romeo"],
            timeout=LIMIT,
        )
        assert result.ok, result.describe() + "\n" + gw.tail()
        assert f"NOTIFY sip:romeo@{LOOPBACK}:{sipp_port} SIP/2.0" in result.messages
        call_id = re.search(r"^Call-ID:\s*(\S+)", result.messages, re.M | re.I)
        assert call_id is not None
        # The dialog is still there; the binding is not (the un-REGISTER's 200).
        listed = await s2x_subscriptions(admin_port)
        assert [r["call_id"] for r in listed] == [call_id.group(1)], listed
        assert await listing(admin_port, "registrations") == []
        assert "NOTIFY failed" not in gw.log_text()

        # Juliet approves: the next NOTIFY (active) has nowhere to go.
        await juliet.wait_presence(
            lambda p: p.xml.get("type") == "subscribe" and p["from"] == ROMEO, LIMIT
        )
        juliet.xmpp.send_presence(pto=ROMEO, ptype="subscribed")
        await asyncio.to_thread(gw.wait_for_log, r"watcher dialog removed", LIMIT)
        log = gw.log_text()
        assert re.search(r"no binding for target .*method=NOTIFY .*status=480", log), log
        assert re.search(r"NOTIFY failed .*has no registered contact", log), log
        assert re.search(r"watcher dialog removed .*reason=notify-failed status=480", log), log
        assert "DNS is disabled" not in log  # the location service answered, not DNS
        async with asyncio.timeout(LIMIT):
            while await s2x_subscriptions(admin_port):
                await asyncio.sleep(0.05)
        assert "Traceback" not in gw.log_text()


async def test_message_to_an_aor_registered_through_a_path_takes_it_as_route(
    prosody: ProsodyServer,
    sipp: Sipp,
    tmp_path: Path,
    xmpp_client: ClientFactory,
) -> None:
    require_binary("sipp")
    port, proxy_port, phone_port, admin_port = free_port(), free_port(), free_port(), free_port()
    juliet = await xmpp_client(prefix="juliet")
    with GatewayProcess(
        config(prosody, tmp_path, port, admin_port), tmp_path / "gw", log_level="info"
    ) as gw:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        registered = await asyncio.to_thread(
            sipp.run,
            "location_path_register_uac",
            remote=f"{LOOPBACK}:{port}",
            local_port=proxy_port,
            keys={"user": "romeo", "domain": COMPONENT, "phone_port": str(phone_port)},
            extra_args=["-au", "romeo", "-ap", "romeo"],
            timeout=LIMIT,
        )
        assert registered.ok, registered.describe() + "\n" + gw.tail()
        path = f"<sip:proxy@{LOOPBACK}:{proxy_port};lr>"
        ok = received(registered.messages, "SIP/2.0 200")
        assert f"\nPath: {path}" in ok, ok  # echoed with Supported: path (RFC 3327 §5.3)
        assert re.search(r"^Supported:.*\bpath\b", ok, re.M | re.I), ok
        # The proxy, again on its port (the registered flow), takes the MESSAGE.
        with sipp.uas("location_path_message_uas", local_port=proxy_port, timeout=LIMIT) as uas:
            juliet.send_message(ROMEO, "over the edge proxy", mtype="normal")
            result = await asyncio.to_thread(uas.wait)
        assert result.ok, result.describe() + "\n" + gw.tail()
        # To the phone's contact, over the proxy's flow, routed by the Path (§5.3).
        message = received(result.messages, "MESSAGE ")
        assert message.startswith(f"MESSAGE sip:romeo@{LOOPBACK}:{phone_port} SIP/2.0"), message
        assert f"\nRoute: {path}" in message, message
        assert message.endswith("over the edge proxy"), message
        await asyncio.to_thread(gw.wait_for_log, r"message .*fate=delivered", LIMIT)
        await asyncio.sleep(0.5)  # an error stanza would follow the outcome at once
        errors = [m for m in juliet.messages if m["type"] == "error"]
        assert not errors, errors
        assert "DNS is disabled" not in gw.log_text()

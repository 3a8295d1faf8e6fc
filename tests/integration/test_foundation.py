"""Issue 2, done-when: the gateway process, started through the CLI with a config
file, connects to a real Prosody as a component; a real XMPP client gets a
service-discovery answer from it; /readyz follows the link; SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import json
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable

from tests.harness.gateway_proc import GatewayProcess
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory


def _readyz(proc: GatewayProcess) -> tuple[int, dict[str, object]]:
    cfg = tomllib.loads(proc.config_path.read_text(encoding="utf-8"))
    port = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def test_gateway_serves_disco_to_a_real_client_and_stops_cleanly(
    gateway: Callable[..., GatewayProcess], xmpp_client: ClientFactory
) -> None:
    proc = gateway()
    proc.wait_for_log(r"xmpp link sip\.localhost up", timeout=30)
    client = await xmpp_client()
    info = await client.disco_info("sip.localhost", timeout=10)
    identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
    assert ("gateway", "simple") in identities
    features = set(info["disco_info"]["features"])
    assert {
        "http://jabber.org/protocol/disco#info",
        "jabber:iq:gateway",
        "urn:xmpp:ping",
    } <= features

    status, body = await asyncio.to_thread(_readyz, proc)
    assert status == 200, body
    assert body["ready"] is True

    assert proc.terminate(timeout=20) == 0, proc.tail()
    log = proc.log_text()
    assert "shutting down" in log and "stopped" in log
    assert "Traceback" not in log


async def test_readyz_reports_a_down_link(
    gateway: Callable[..., GatewayProcess], prosody: ProsodyServer
) -> None:
    # A secret Prosody refuses: the process runs, the link stays down, /readyz says 503.
    proc = gateway(xmpp={"components": [{"domain": "sip.localhost", "secret": "wrong"}]})
    proc.wait_for_log(r"not-authorized|not authori[sz]ed", timeout=30)
    status, body = await asyncio.to_thread(_readyz, proc)
    assert status == 503
    assert body["ready"] is False
    assert "wrong" not in proc.log_text().replace("wrong secret", "")
    assert proc.terminate(timeout=20) == 0, proc.tail()

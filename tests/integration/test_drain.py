"""SIGTERM during traffic: sipp sends MESSAGEs at a bounded rate through the gateway to a
real XMPP client on Prosody; the gateway is stopped in the middle.

What must hold (issue 10): the gateway exits 0, and no message got a 2xx without being
delivered: every body whose MESSAGE sipp saw answered 2xx reaches the XMPP client.
Requests arriving once the drain began may only get 503 (or nothing, once the listener
is closed); never a 2xx for a message the XMPP side did not take.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, config_of
from tests.harness.ports import free_port
from tests.harness.sipp import Sipp, SippProcess
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.asyncio

COMPONENT = "sip.localhost"
CALLS = 400
RATE = 20  # MESSAGEs per second: 20 s of traffic unless the gateway stops first
STOP_AFTER = 40  # delivered messages before SIGTERM

# A 503 (drain) ends the call as expected; any other final status aborts it
# (-default_behaviors abortunexp: no BYE is sent for a MESSAGE).
SCENARIO = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="MESSAGE during drain">
  <send retrans="500">
    <![CDATA[

      MESSAGE [to_uri] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <[from_uri]>;tag=[pid]SIPpTag00[call_number]
      To: <[to_uri]>
      Call-ID: [call_id]
      CSeq: 1 MESSAGE
      Content-Type: text/plain
      Content-Length: [len]

      drain-[run]-[call_number]
    ]]>
  </send>
  <recv response="100" optional="true" />
  <recv response="503" optional="true" next="refused" />
  <recv response="200" />
  <label id="refused" />
</scenario>
"""

_BLOCK = re.compile(r"^-{10,}.*$", re.MULTILINE)


def exchanges(messages_log: str) -> tuple[dict[str, str], dict[str, list[int]]]:
    """From sipp's -trace_msg log: Call-ID -> body sent, Call-ID -> statuses received."""
    bodies: dict[str, str] = {}
    statuses: dict[str, list[int]] = {}
    for block in _BLOCK.split(messages_log):
        head, _, sip = block.partition("\n\n")
        sip = sip.strip("\r\n")
        call_id = re.search(r"^Call-ID:\s*(\S+)", sip, re.MULTILINE | re.IGNORECASE)
        if not call_id:
            continue
        cid = call_id.group(1)
        if "message sent" in head and sip.startswith("MESSAGE "):
            body = re.search(r"(drain-\S+)", sip)
            if body:
                bodies[cid] = body.group(1)
        elif "message received" in head:
            status = re.match(r"SIP/2\.0 (\d{3})", sip)
            if status:
                statuses.setdefault(cid, []).append(int(status.group(1)))
    return bodies, statuses


async def test_sigterm_during_traffic_never_2xx_undelivered(
    gateway: Callable[..., GatewayProcess],
    xmpp_client: ClientFactory,
    sipp: Sipp,
    tmp_path: Path,
) -> None:
    proc = gateway(sip={"trusted_peers": [LOOPBACK]}, gateway={"drain_timeout": 10})
    sip_port = int(config_of(proc.config_path.read_text())["sip"]["listeners"][0]["port"])
    juliet = await xmpp_client(prefix="juliet")
    run = secrets.token_hex(4)
    scenario = tmp_path / "drain_uac.xml"
    scenario.write_text(SCENARIO, encoding="utf-8")

    uac = SippProcess(
        scenario,
        remote=f"{LOOPBACK}:{sip_port}",
        calls=CALLS,
        rate=RATE,
        keys={
            "to_uri": f"sip:{juliet.jid.bare}",
            "from_uri": f"sip:romeo@{COMPONENT}",
            "run": run,
        },
        extra_args=["-default_behaviors", "abortunexp", "-max_non_invite_retrans", "3"],
        timeout=CALLS / RATE + 60,
        workdir=sipp.workdir,
    )
    try:
        deadline = time.monotonic() + 60
        while len(juliet.messages) < STOP_AFTER:
            assert uac.running or len(juliet.messages) >= STOP_AFTER, "sipp ended early"
            assert time.monotonic() < deadline, f"only {len(juliet.messages)} delivered"
            await asyncio.sleep(0.05)
        code = await asyncio.to_thread(proc.terminate, 60)
        # The gateway is gone: no answer can come any more; end sipp with what it has.
        result = await asyncio.to_thread(uac.stop)
    finally:
        if uac.running:
            uac.stop()

    assert code == 0, proc.tail()
    log = proc.log_text()
    assert "shutting down" in log
    assert re.search(r"sip requests drained|drain timeout", log)
    assert re.search(r"INFO gateway\.app: stopped", log)
    assert "Traceback" not in log and " exc=" not in log, proc.tail(80)

    bodies, statuses = exchanges(result.messages)
    assert len(bodies) >= STOP_AFTER, result.describe()
    accepted = {bodies[cid] for cid, st in statuses.items() if any(200 <= s < 300 for s in st)}
    refused = {cid for cid, st in statuses.items() if 503 in st}
    unanswered = {cid for cid in bodies if not statuses.get(cid)}
    assert len(accepted) >= STOP_AFTER, result.describe()
    assert len(accepted) < len(bodies), "the gateway stopped before the traffic ended"

    # Every 2xx'd message reaches the client (Prosody may still be delivering the last).
    def received() -> set[str]:
        return {m["body"].strip() for m in juliet.messages}

    deadline = time.monotonic() + 20
    while not accepted <= received() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    missing = sorted(accepted - received())
    assert not missing, f"2xx given but never delivered: {missing[:10]}"
    print(
        f"\n[drain] sent {len(bodies)}, 2xx {len(accepted)}, 503 {len(refused)}, "
        f"unanswered {len(unanswered)}, delivered {len(received())}"
    )


# A SIP user agent that takes its time: the gateway's XMPP->SIP transaction is in flight
# when SIGTERM arrives, and the drain must wait for its answer.
SLOW_UAS = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="slow MESSAGE UAS">
  <recv request="MESSAGE" crlf="true" />
  <pause milliseconds="4000" />
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def wait_received(log: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and text in log.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{text!r} not received by sipp"
        time.sleep(0.05)


async def readyz(url: str) -> tuple[int, dict[str, object]]:
    import aiohttp

    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s,
        s.get(url + "/readyz") as r,
    ):
        return r.status, await r.json()


async def test_drain_waits_for_in_flight_and_refuses_new_with_503(
    gateway: Callable[..., GatewayProcess],
    xmpp_client: ClientFactory,
    sipp: Sipp,
    tmp_path: Path,
) -> None:
    uas_port = free_port()
    proc = gateway(
        sip={
            "trusted_peers": [LOOPBACK],
            "hosted_domains": [],  # romeo is reached by the static route, not the registrar
            "routes": [{"domain": COMPONENT, "target": f"sip:{LOOPBACK}:{uas_port}"}],
        },
        gateway={"drain_timeout": 20},
    )
    cfg = config_of(proc.config_path.read_text())
    sip_port = int(cfg["sip"]["listeners"][0]["port"])
    admin = f"http://{cfg['admin']['listen']}"
    juliet = await xmpp_client(prefix="juliet")
    (tmp_path / "slow_uas.xml").write_text(SLOW_UAS, encoding="utf-8")
    (tmp_path / "drain_uac.xml").write_text(SCENARIO, encoding="utf-8")

    with sipp.uas(tmp_path / "slow_uas.xml", local_port=uas_port, timeout=60) as uas:
        juliet.send_message(f"romeo@{COMPONENT}", "in flight at SIGTERM")
        await asyncio.to_thread(wait_received, uas.workdir / "messages.log", "MESSAGE sip:")
        proc.send_signal(signal.SIGTERM)
        proc.wait_for_log(r"shutting down", timeout=20)

        # While the UAS holds its answer: not ready, and a new MESSAGE gets 503.
        status, body = await readyz(admin)
        assert status == 503
        assert body["checks"]["accepting"] is False  # type: ignore[index]
        late = await asyncio.to_thread(
            sipp.run,
            tmp_path / "drain_uac.xml",
            remote=f"{LOOPBACK}:{sip_port}",
            keys={
                "to_uri": f"sip:{juliet.jid.bare}",
                "from_uri": f"sip:romeo@{COMPONENT}",
                "run": "late",
            },
            extra_args=["-default_behaviors", "abortunexp"],
            timeout=20,
        )
        _, statuses = exchanges(late.messages)
        assert [s for st in statuses.values() for s in st] == [503], late.describe()
        assert re.search(r"^Retry-After:\s*\d+", late.messages, re.MULTILINE)
        assert proc.running, "the gateway must wait for the transaction in flight"

        uas_result = await asyncio.to_thread(uas.wait, 30)
        assert uas_result.ok, uas_result.describe()
        code = await asyncio.to_thread(proc.proc.wait, 40)

    assert code == 0, proc.tail()
    log = proc.log_text()
    assert re.search(r"message .*direction=xmpp_to_sip .*fate=delivered", log), proc.tail()
    assert "Traceback" not in log and " exc=" not in log, proc.tail(80)
    assert not [m for m in juliet.messages if m["type"] == "error"]

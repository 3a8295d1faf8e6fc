"""deploy/kamailio/kamailio.cfg, unchanged, in front of the gateway (Kamailio from Debian).

Kamailio listens on 127.0.0.2 (its own loopback address, so that the gateway's trusted
peer is Kamailio and not sipp on 127.0.0.1), is registrar of example.com, and routes the
XMPP domain `localhost` to the gateway. The gateway runs the beside-Kamailio shape of
deploy/examples/beside-ejabberd-kamailio.toml (escaped component, federation, a static
route back to Kamailio) against the session Prosody (and ejabberd for SIP -> XMPP).

- SIP -> XMPP: sipp sends a MESSAGE to Kamailio only; the XMPP client receives it from
  romeo\\40example.com@gw.localhost, and Kamailio's log shows it took the gateway route.
- XMPP -> SIP: a sipp UAS registers with Kamailio; the XMPP client writes to
  romeo\\40example.com@gw.localhost; the gateway's static route sends it to Kamailio,
  whose location lookup delivers it to the UAS.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import LOOPBACK, require_binary, stop_group
from tests.harness.ejabberd import EjabberdServer
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port, udp_port_bound
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
KAMAILIO_CFG = ROOT / "deploy" / "kamailio" / "kamailio.cfg"
KAMAILIO_ADDR = "127.0.0.2"
SIP_DOMAIN = "example.com"
COMPONENT = "gw.localhost"
MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

REGISTER_UAC = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="REGISTER with Kamailio">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:romeo@example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:romeo@example.com>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:romeo@127.0.0.1:[contact_port]>
      Expires: 300
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" />
</scenario>
"""

MESSAGE_UAS = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="MESSAGE UAS">
  <recv request="MESSAGE" crlf="true" />
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


@dataclass
class Kamailio:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def kamailio_modules() -> Path:
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    return found[0] if found else MODULES


@pytest.fixture
def kamailio(tmp_path: Path) -> Iterator[Callable[[int], Kamailio]]:
    """start(gateway_port) -> Kamailio running deploy/kamailio/kamailio.cfg in the foreground."""
    binary = require_binary("kamailio")
    started: list[Kamailio] = []

    def start(gateway_port: int) -> Kamailio:
        work = tmp_path / "kamailio"
        work.mkdir()
        port = free_port()
        log_path = work / "kamailio.log"
        args = [
            binary,
            *("-DD", "-E", "-f", str(KAMAILIO_CFG)),
            *("-P", str(work / "kamailio.pid"), "-Y", str(work), "-w", str(work)),
            *("-L", str(kamailio_modules()), "-m", "32", "-M", "8"),
            *("-A", f"LISTEN_ADDR={KAMAILIO_ADDR}", "-A", f"LISTEN_PORT={port}"),
            *("-A", f'SIP_DOMAIN="{SIP_DOMAIN}"', "-A", 'XMPP_DOMAINS="^localhost$"'),
            *("-A", f'GATEWAY="sip:{LOOPBACK}:{gateway_port}"'),
        ]
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=work,
                start_new_session=True,
            )
        kam = Kamailio(proc, port, log_path)
        started.append(kam)
        deadline = time.monotonic() + 30
        while not udp_port_bound(port, KAMAILIO_ADDR):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kamailio did not start:\n{kam.log_text()[-3000:]}")
            time.sleep(0.05)
        return kam

    try:
        yield start
    finally:
        for kam in started:
            stop_group(kam.proc, 10)


def gateway_behind_kamailio(
    gateway: Callable[..., GatewayProcess],
    server: ProsodyServer | EjabberdServer,
    gw_port: int,
    kam_port: int,
) -> GatewayProcess:
    """The beside-Kamailio shape (deploy/examples/beside-ejabberd-kamailio.toml)."""
    return gateway(
        xmpp={
            "port": server.component_port,
            "components": [
                {
                    "domain": COMPONENT,
                    "secret": server.components[COMPONENT],
                    "addressing": "escaped",
                }
            ],
        },
        sip={
            "hosted_domains": [],
            "served_xmpp_domains": ["localhost"],
            "trusted_peers": [KAMAILIO_ADDR],
            "federation": True,
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": gw_port}],
            "routes": [
                {"domain": SIP_DOMAIN, "target": f"sip:{KAMAILIO_ADDR}:{kam_port};transport=udp"}
            ],
        },
    )


async def wait_link(proc: GatewayProcess) -> None:
    await asyncio.to_thread(proc.wait_for_log, rf"xmpp link {COMPONENT} up", 30)


@pytest.mark.parametrize("server_name", ["prosody", "ejabberd"])
async def test_kamailio_routes_a_sipp_message_to_the_gateway(
    request: pytest.FixtureRequest,
    server_name: str,
    *,
    kamailio: Callable[[int], Kamailio],
    gateway: Callable[..., GatewayProcess],
    xmpp_client: ClientFactory,
    sipp: Sipp,
) -> None:
    server: ProsodyServer | EjabberdServer = request.getfixturevalue(server_name)
    gw_port = free_port()
    kam = kamailio(gw_port)
    proc = gateway_behind_kamailio(gateway, server, gw_port, kam.port)
    await wait_link(proc)
    juliet = await xmpp_client(prefix="juliet", server=server)

    result = await asyncio.to_thread(
        sipp.run,
        "message_uac",
        remote=f"{KAMAILIO_ADDR}:{kam.port}",  # sipp knows Kamailio only
        keys={
            "to_uri": f"sip:{juliet.jid.bare}",
            "from_uri": f"sip:romeo@{SIP_DOMAIN}",
            "body": "through kamailio",
        },
        timeout=30,
    )
    assert result.ok, result.describe() + "\n" + kam.log_text()[-2000:]
    msg = await juliet.wait_message(lambda m: m["body"].strip() == "through kamailio", timeout=15)
    assert str(msg["from"].bare) == f"romeo\\40{SIP_DOMAIN}@{COMPONENT}"
    assert f"to gateway: MESSAGE sip:{juliet.jid.bare}" in kam.log_text()
    # The 200 came back along the Via path: Kamailio's Via was on the gateway's answer.
    assert result.messages.count("SIP/2.0 200") >= 1
    assert proc.terminate(timeout=30) == 0


async def test_xmpp_reply_reaches_a_phone_registered_with_kamailio(
    kamailio: Callable[[int], Kamailio],
    gateway: Callable[..., GatewayProcess],
    prosody: ProsodyServer,
    xmpp_client: ClientFactory,
    sipp: Sipp,
) -> None:
    gw_port = free_port()
    kam = kamailio(gw_port)
    proc = gateway_behind_kamailio(gateway, prosody, gw_port, kam.port)
    await wait_link(proc)
    juliet = await xmpp_client(prefix="juliet")
    tmp_path = sipp.workdir
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "register.xml").write_text(REGISTER_UAC, encoding="utf-8")
    (tmp_path / "uas.xml").write_text(MESSAGE_UAS, encoding="utf-8")
    phone_port = free_port()

    with sipp.uas(tmp_path / "uas.xml", local_port=phone_port, timeout=60) as phone:
        reg = await asyncio.to_thread(
            sipp.run,
            tmp_path / "register.xml",
            remote=f"{KAMAILIO_ADDR}:{kam.port}",
            keys={"contact_port": str(phone_port)},
            timeout=20,
        )
        assert reg.ok, reg.describe() + "\n" + kam.log_text()[-2000:]
        juliet.send_message(f"romeo\\40{SIP_DOMAIN}@{COMPONENT}", "wherefore art thou")
        got = await asyncio.to_thread(phone.wait, 30)
    assert got.ok, got.describe() + "\n" + proc.tail() + "\n" + kam.log_text()[-2000:]
    assert f"MESSAGE sip:romeo@127.0.0.1:{phone_port}" in got.messages  # location lookup
    assert "wherefore art thou" in got.messages
    assert f"Via: SIP/2.0/UDP {KAMAILIO_ADDR}:{kam.port}" in got.messages
    await asyncio.to_thread(
        proc.wait_for_log, r"message .*direction=xmpp_to_sip .*fate=delivered", 15
    )
    assert proc.terminate(timeout=30) == 0

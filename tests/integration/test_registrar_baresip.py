"""baresip registers with the gateway PROCESS (Digest over UDP, TCP and TLS) and exchanges
messages with an XMPP client through it; a registration survives a gateway restart.

Real peers only: the gateway started through its CLI (tests.harness.gateway_proc), the
session Prosody with the `sip.localhost` component, an XmppTestClient for the XMPP user,
and a headless baresip (tests.harness.baresip) for the SIP user. No trusted peers are
configured, so every SIP request has to prove its identity (Digest, then the registered
flow). The registrar in-process tests are tests/integration/test_registrar.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import Baresip, account_line
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA, server certificate, key) for the gateway's TLS listener."""
    require_binary("openssl")
    d = tmp_path_factory.mktemp("gw-pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", "ca.key",
            "-out", "ca.pem", "-subj", "/CN=Gateway Test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "gw.key", "-out", "gw.csr",
            "-subj", f"/CN={COMPONENT}")  # fmt: skip
    (d / "ext.cnf").write_text(
        f"subjectAltName=DNS:{COMPONENT},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "gw.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "gw.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d / "ca.pem", d / "gw.pem", d / "gw.key"


GatewayFactory = Callable[[], GatewayProcess]


@pytest.fixture
def gateway_factory(
    prosody: ProsodyServer, tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> Iterator[tuple[GatewayFactory, dict[str, int]]]:
    """start() -> a ready gateway process; every call uses the same config, ports and
    state directory (so a second call is a restart)."""
    _, cert, key = tls_files
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(hash_password(f"romeo@{COMPONENT}", None, "romeo"), ha1_sha256=None)
    users.write_text(format_user(romeo))  # MD5 only: baresip 1.0 cannot answer SHA-256
    users.chmod(0o600)
    ports = {"udp": free_port(), "tls": free_port()}
    config = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [
                {"transport": "udp", "address": LOOPBACK, "port": ports["udp"]},
                {"transport": "tcp", "address": LOOPBACK, "port": ports["udp"]},
                {
                    "transport": "tls",
                    "address": LOOPBACK,
                    "port": ports["tls"],
                    "certificate": str(cert),
                    "private_key": str(key),
                },
            ],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        admin={"enabled": False},
    )
    ports["tcp"] = ports["udp"]
    procs: list[GatewayProcess] = []

    def start() -> GatewayProcess:
        gw = GatewayProcess(config, tmp_path / f"gateway-{len(procs) + 1}", log_level="info")
        procs.append(gw)
        gw.start()
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        return gw

    try:
        yield start, ports
    finally:
        for gw in procs:
            if gw.running:
                gw.kill()


@pytest.fixture
async def baresip(
    tmp_path: Path, tls_files: tuple[Path, Path, Path]
) -> AsyncIterator[Callable[[tuple[str, ...]], Awaitable[Baresip]]]:
    started: list[Baresip] = []

    async def make(contacts: tuple[str, ...]) -> Baresip:
        ua = Baresip(tmp_path / f"baresip-{len(started)}", contacts=contacts, ca_file=tls_files[0])
        started.append(ua)
        return await ua.start()

    try:
        yield make
    finally:
        for ua in started:
            await ua.stop()


def bare(jid: object) -> str:
    return str(jid).partition("/")[0]


def _body(stanza: Any) -> str:
    return str(stanza["body"])


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_baresip_and_xmpp_client_exchange_messages(
    transport: str,
    gateway_factory: tuple[GatewayFactory, dict[str, int]],
    baresip: Callable[[tuple[str, ...]], Awaitable[Baresip]],
    xmpp_client: ClientFactory,
) -> None:
    start, ports = gateway_factory
    gw = await asyncio.to_thread(start)
    juliet = await xmpp_client(prefix="juliet")
    juliet_sip = f"sip:{bare(juliet.jid)}"
    romeo = await baresip((juliet_sip,))
    proxy = (LOOPBACK, ports[transport])
    outcome = await romeo.register(
        account_line(f"sip:romeo@{COMPONENT}", "romeo", proxy, transport=transport)
    )
    assert outcome["type"] == "REGISTER_OK", f"{romeo.tail()}\n{gw.tail()}"

    # XMPP -> SIP: delivered over romeo's registered flow.
    juliet.send_message(f"romeo@{COMPONENT}", f"wherefore art thou ({transport})")
    got = await romeo.wait_message(f"wherefore art thou ({transport})", timeout=LIMIT)
    assert got.peer.startswith(juliet_sip)

    # SIP -> XMPP: from the registered flow, no trusted peer involved.
    await romeo.send_message(juliet_sip, f"by a name I know not ({transport})")
    stanza = await juliet.wait_message(
        lambda m: _body(m) == f"by a name I know not ({transport})", timeout=LIMIT
    )
    assert str(stanza["from"]).startswith(f"romeo@{COMPONENT}")


async def test_baresip_wrong_password_cannot_register(
    gateway_factory: tuple[GatewayFactory, dict[str, int]],
    baresip: Callable[[tuple[str, ...]], Awaitable[Baresip]],
) -> None:
    start, ports = gateway_factory
    gw = await asyncio.to_thread(start)
    ua = await baresip(())
    outcome = await ua.register(
        account_line(f"sip:romeo@{COMPONENT}", "montague", (LOOPBACK, ports["udp"]))
    )
    assert outcome["type"] == "REGISTER_FAIL"
    line = await asyncio.to_thread(
        gw.wait_for_log, r"request refused .*reason=auth-failed.*", LIMIT
    )
    assert "method=REGISTER" in line.group(0) and f"sip:romeo@{COMPONENT}" in line.group(0)


async def test_registration_survives_a_gateway_restart(
    gateway_factory: tuple[GatewayFactory, dict[str, int]],
    baresip: Callable[[tuple[str, ...]], Awaitable[Baresip]],
    xmpp_client: ClientFactory,
) -> None:
    start, ports = gateway_factory
    gw = await asyncio.to_thread(start)
    romeo = await baresip(())
    outcome = await romeo.register(
        account_line(f"sip:romeo@{COMPONENT}", "romeo", (LOOPBACK, ports["udp"]))
    )
    assert outcome["type"] == "REGISTER_OK"
    assert await asyncio.to_thread(gw.terminate) == 0

    again = await asyncio.to_thread(start)  # same state directory, same ports
    await asyncio.to_thread(again.wait_for_log, r"registrar ready .*bindings=1", LIMIT)
    juliet = await xmpp_client(prefix="juliet")
    juliet.send_message(f"romeo@{COMPONENT}", "after the restart")
    got = await romeo.wait_message("after the restart", timeout=LIMIT)
    assert got.peer.startswith(f"sip:{bare(juliet.jid)}")
    registers = romeo.log_path.read_text(errors="replace").count("REGISTER sip:")
    assert registers == 2  # the challenged and the authenticated one: no re-registration

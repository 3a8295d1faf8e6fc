"""The reg event (RFC 3680) against real peers: the gateway PROCESS (its CLI, its config,
its registrar with a user file) and sipp as SIP users authenticating with Digest.

* alice registers and subscribes to her own registration state on her registered flow
  (`regevent_watch_uac.xml`): full state, then a partial NOTIFY when a second device
  of hers registers (`regevent_device_uac.xml`), another when that binding expires, the
  full state again on refresh, and the final NOTIFY. Every NOTIFY body sipp received is
  validated against reginfo.xsd (tests/vectors/standards/schemas).
* bob, registered and authenticated too, asks for alice's state: 403, with a log line
  (`regevent_stranger_uac.xml`).

No trusted peers: every SIP identity here is proven by Digest or a registered flow.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest
from lxml import etree

from gateway.registrar.users import format_user, hash_password
from mappings.reginfo import parse_reginfo
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp, SippProcess

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0
SCHEMA = Path(__file__).resolve().parents[1] / "vectors" / "standards" / "schemas" / "reginfo.xsd"
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}


def config(prosody: ProsodyServer, tmp_path: Path, port: int) -> str:
    users = tmp_path / "users.toml"
    users.write_text(
        "".join(
            format_user(  # MD5 only: sipp's Digest
                dataclasses.replace(
                    hash_password(f"sip:{name}@{COMPONENT}", None, pw), ha1_sha256=None
                )
            )
            for name, pw in PASSWORDS.items()
        )
    )
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
        registrar={"users_file": str(users), "min_expires": 1},
        reg_event={"notify_interval": 0.2},
        admin={"enabled": False},
    )


def auth(name: str) -> list[str]:
    return ["-au", name, "-ap", PASSWORDS[name]]


async def log_line(gw: GatewayProcess, pattern: str) -> None:
    async with asyncio.timeout(LIMIT):
        while not re.search(pattern, gw.log_text()):
            await asyncio.sleep(0.1)


def notify_bodies(proc: SippProcess) -> list[bytes]:
    """The reginfo bodies of the NOTIFYs in sipp's message trace, in order."""
    trace = (proc.workdir / "messages.log").read_text(errors="replace")
    return [
        m.encode()
        for m in re.findall(r"NOTIFY sip:.*?(<\?xml.*?</reginfo>)", trace, flags=re.DOTALL)
    ]


async def test_own_user_sees_full_then_partial_state_and_a_stranger_gets_403(
    prosody: ProsodyServer, sipp: Sipp, tmp_path: Path
) -> None:
    port = free_port()
    gw = GatewayProcess(config(prosody, tmp_path, port), tmp_path / "gw", log_level="info")
    gw.start()
    try:
        gw.wait_for_log(r"registrar ready", timeout=LIMIT)
        remote = f"{LOOPBACK}:{port}"
        alice = SippProcess("regevent_watch_uac.xml", remote=remote, timeout=60,
                            workdir=sipp.workdir, extra_args=auth("alice"))  # fmt: skip
        run = asyncio.create_task(asyncio.to_thread(alice.wait))
        await log_line(gw, r"reg subscription aor=sip:alice@sip.localhost")

        device = await asyncio.to_thread(
            sipp.run, "regevent_device_uac.xml", remote=remote, keys={"expires": "2"},
            extra_args=auth("alice"),
        )  # fmt: skip
        assert device.ok, device.describe()
        stranger = await asyncio.to_thread(
            sipp.run, "regevent_stranger_uac.xml", remote=remote, extra_args=auth("bob")
        )
        assert stranger.ok, stranger.describe()

        result = await run
        assert result.ok, result.describe()
        log = gw.log_text()
        assert re.search(r"reg subscription refused aor=sip:alice@sip.localhost "
                         r"subscriber=sip:bob@sip.localhost", log), gw.tail()  # fmt: skip
        assert "registration expired" in log

        schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
        bodies = notify_bodies(alice)
        docs = [parse_reginfo(b) for b in bodies]
        for body in bodies:
            assert schema.validate(etree.fromstring(body)), (schema.error_log, body)
        assert [(d.version, d.state) for d in docs[:4]] == [
            (0, "full"), (1, "partial"), (2, "partial"), (3, "full"),
        ]  # fmt: skip
        first, added, expired, refreshed = (d.registrations[0] for d in docs[:4])
        assert len(first.contacts) == 1 and len(added.contacts) == 1
        assert added.contacts[0].id != first.contacts[0].id
        assert expired.contacts[0].id == added.contacts[0].id
        assert (expired.contacts[0].state, expired.contacts[0].event) == ("terminated", "expired")
        assert [c.id for c in refreshed.contacts] == [first.contacts[0].id]
        assert {r.id for r in (first, added, expired, refreshed)} == {first.id}  # §5.1
    finally:
        gw.terminate()

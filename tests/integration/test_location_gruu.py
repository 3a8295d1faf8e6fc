"""Issue 23, the bug measured with Linphone, reproduced with sipp: a phone registers with
GRUU support and uses the public GRUU it was given as the Contact of its SUBSCRIBE. The
gateway (a real process, with the session Prosody) must send the first NOTIFY through its
location service to the phone's registered flow: sipp receives it at its own address,
with the registered contact as Request-URI. Before issue 23 the gateway resolved the
GRUU's host through DNS ("DNS is disabled ... and no static route") and removed the
dialog.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0


def config(prosody: ProsodyServer, tmp_path: Path, port: int) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:romeo@{COMPONENT}", None, "romeo"), ha1_sha256=None
    )
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
        admin={"enabled": False},
    )


async def test_notify_to_the_gruu_contact_reaches_the_registered_flow(
    prosody: ProsodyServer, sipp: Sipp, tmp_path: Path
) -> None:
    require_binary("sipp")
    port, sipp_port = free_port(), free_port()
    with GatewayProcess(config(prosody, tmp_path, port), tmp_path / "gw", log_level="info") as gw:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        result = await asyncio.to_thread(
            sipp.run,
            "location_gruu_contact_uac",
            remote=f"{LOOPBACK}:{port}",
            local_port=sipp_port,
            keys={
                "user": "romeo",
                "domain": COMPONENT,
                "watched": f"sip:juliet@{prosody.domain}",
            },
            extra_args=["-au", "romeo", "-ap", "romeo"],
            timeout=LIMIT,
        )
        assert result.ok, result.describe() + "\n" + gw.tail()
        # The registered contact, not the GRUU (RFC 5627 §6.1: `gr` not carried forward).
        assert f"NOTIFY sip:romeo@{LOOPBACK}:{sipp_port} SIP/2.0" in result.messages
        log = gw.log_text()
        assert "DNS is disabled" not in log
        assert "NOTIFY failed" not in log

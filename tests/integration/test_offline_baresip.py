"""Store-and-forward for an offline hosted user (issue 17, docs/offline.md), real peers only:
the gateway PROCESS (tests.harness.gateway_proc), the session Prosody with the
`sip.localhost` component, a slixmpp juliet, and a headless baresip as romeo.

Juliet writes to romeo while he has no binding: the messages are stored (juliet gets the
informational headline, no error); the gateway is killed with SIGKILL and started again;
romeo registers and receives them once each, in the order they were written. A message
to a user the user file does not know gets item-not-found "no such user" at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK
from tests.harness.baresip import Baresip, account_line
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0
STANZA_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
# Messages stored before the SIGKILL in the fault test; the issue asks for 500
# (`OFFLINE_FAULT_N=500`), the default keeps the suite quick on a shared machine.
FAULT_N = int(os.environ.get("OFFLINE_FAULT_N", "60"))


@dataclasses.dataclass
class Rig:
    config: dict[str, Any]
    tmp: Path
    port: int
    procs: list[GatewayProcess]

    def start(self, **offline: Any) -> GatewayProcess:
        text = gateway_config(**self.config, offline={"max_messages": 4, **offline})
        gw = GatewayProcess(text, self.tmp / f"gateway-{len(self.procs) + 1}")
        self.procs.append(gw)
        gw.start()
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        return gw


@pytest.fixture
def rig(prosody: ProsodyServer, tmp_path: Path) -> Iterator[Rig]:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(hash_password(f"romeo@{COMPONENT}", None, "romeo"), ha1_sha256=None)
    users.write_text(format_user(romeo))  # MD5 only: baresip 1.0 cannot answer SHA-256
    users.chmod(0o600)
    port = free_port()
    config = {
        "gateway": {"state_dir": str(tmp_path / "state")},
        "xmpp": {
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        "sip": {
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
            "timers": {"t1": 0.1},
        },
        "registrar": {"users_file": str(users)},
        "admin": {"enabled": False},
    }
    r = Rig(config, tmp_path, port, [])
    try:
        yield r
    finally:
        for gw in r.procs:
            if gw.running:
                gw.kill()


@pytest.fixture
async def romeo_ua(tmp_path: Path) -> AsyncIterator[Baresip]:
    ua = Baresip(tmp_path / "baresip", contacts=())
    try:
        yield await ua.start()
    finally:
        await ua.stop()


def _error(stanza: Any) -> tuple[str | None, str | None]:
    err = stanza.xml.find("{jabber:client}error")
    if err is None:
        return None, None
    cond = next((c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{STANZA_NS}}}")), None)
    text = err.find(f"{{{STANZA_NS}}}text")
    return cond, None if text is None else text.text


async def test_stored_messages_survive_kill_and_arrive_in_order(
    rig: Rig, romeo_ua: Baresip, xmpp_client: ClientFactory
) -> None:
    gw = await asyncio.to_thread(rig.start)
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    texts = [f"while you were away {i}" for i in range(1, 5)]
    for text in texts:
        juliet.send_message(f"romeo@{COMPONENT}", text)
        notice = await juliet.wait_message(lambda m: m["type"] == "headline", timeout=LIMIT)
        assert "message stored" in str(notice["body"]), gw.tail()
        assert str(notice["from"]).startswith(f"romeo@{COMPONENT}")

    # over the quota (4 messages): refused at once, recipient-unavailable with a text
    juliet.send_message(f"romeo@{COMPONENT}", "one too many")
    refused = await juliet.wait_message(lambda m: m["type"] == "error", timeout=LIMIT)
    condition, text = _error(refused)
    assert condition == "recipient-unavailable" and text and "quota" in text, refused

    # unknown user: item-not-found "no such user" (RFC 7247 tables), not 480
    juliet.send_message(f"nobody@{COMPONENT}", "anyone there?")
    unknown = await juliet.wait_message(lambda m: m["type"] == "error", timeout=LIMIT)
    condition, text = _error(unknown)
    assert condition == "item-not-found" and text and "no such user" in text, unknown

    gw.kill()  # SIGKILL: the messages were committed before juliet heard anything
    gw = await asyncio.to_thread(rig.start)
    await asyncio.to_thread(gw.wait_for_log, r"offline queues restored .*users=1", LIMIT)

    outcome = await romeo_ua.register(
        account_line(f"sip:romeo@{COMPONENT}", "romeo", (LOOPBACK, rig.port))
    )
    assert outcome["type"] == "REGISTER_OK", f"{romeo_ua.tail()}\n{gw.tail()}"
    await romeo_ua.wait_message(texts[-1], timeout=LIMIT)
    got = [m.text for m in romeo_ua.messages]
    assert got == texts, f"{got}\n{gw.tail()}"  # in order, each once
    assert all(
        m.peer.startswith(f"sip:{str(juliet.jid).partition('/')[0]}") for m in romeo_ua.messages
    )
    await asyncio.sleep(1.0)  # nothing delivered twice
    assert [m.text for m in romeo_ua.messages] == texts
    assert "one too many" not in [m.text for m in romeo_ua.messages]


async def test_kill_9_with_many_stored_messages_each_delivered_once(
    rig: Rig, romeo_ua: Baresip, xmpp_client: ClientFactory
) -> None:
    """The fault test of issue 17: FAULT_N messages stored, SIGKILL, restart; every message
    reaches romeo exactly once (counted at baresip), in order."""
    gw = await asyncio.to_thread(rig.start, max_messages=FAULT_N)
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    texts = [f"fault {i:04d}" for i in range(FAULT_N)]
    for text in texts:
        juliet.send_message(f"romeo@{COMPONENT}", text)
    limit = LIMIT + FAULT_N * 0.2
    for _ in texts:  # a notice per stored message: each was committed before it
        await juliet.wait_message(lambda m: m["type"] == "headline", timeout=limit)
    gw.kill()
    gw = await asyncio.to_thread(rig.start, max_messages=FAULT_N)
    outcome = await romeo_ua.register(
        account_line(f"sip:romeo@{COMPONENT}", "romeo", (LOOPBACK, rig.port))
    )
    assert outcome["type"] == "REGISTER_OK", f"{romeo_ua.tail()}\n{gw.tail()}"
    await romeo_ua.wait_message(texts[-1], timeout=limit)
    await asyncio.sleep(1.0)
    got = [m.text for m in romeo_ua.messages]
    assert got == texts, f"{len(got)} of {FAULT_N}\n{gw.tail()}"

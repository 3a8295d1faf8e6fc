"""The gateway's RFC 4976 relay client through Kamailio's msrp module (a real relay):
AUTH with Digest, Use-Path in our a=path, SENDs and REPORTs relayed both ways end to end
to the independent test client (which authenticates with the same relay)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import MsrpConfig
from gateway.msrp.message import parse_path
from gateway.msrp.transport import IncomingMessage, MsrpConnectError, MsrpService
from tests.harness.kamailio_msrp import KamailioRelay, start_relay
from tests.harness.msrpclient import MsrpClient

pytestmark = pytest.mark.asyncio
HOST = "127.0.0.1"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[KamailioRelay]:
    kam = start_relay(tmp_path / "kamailio")
    try:
        yield kam
    finally:
        kam.stop()


def _config(relay: KamailioRelay, password: str | None = None) -> MsrpConfig:
    return MsrpConfig(enabled=True, address=HOST, port=0, relay=relay.uri,
                      relay_username="gateway", relay_password=password or relay.password,
                      connect_timeout=5.0)  # fmt: skip


async def test_auth_use_path_and_send_relayed_end_to_end(relay: KamailioRelay) -> None:
    client = MsrpClient(f"msrp://{HOST}:9/relayclient;tcp")
    await client.connect(relay.address, relay.port)
    use_path, expires = await client.auth(relay.uri, "client", relay.password)
    assert use_path.startswith(f"msrp://{relay.address}:{relay.port}/") and expires
    client_path = f"{use_path} {client.path}"  # its SDP a=path (RFC 4976 §5.1)

    inbox: asyncio.Queue[IncomingMessage] = asyncio.Queue()
    svc = MsrpService(_config(relay))
    await svc.start()
    try:
        session = await svc.new_session(inbox.put_nowait)
        relay_uri, ours = session.local_path
        assert (relay_uri.host, relay_uri.port) == (relay.address, relay.port)
        assert relay_uri.session_id and ours == session.local_uri
        log = relay.log_text()
        assert "MSRPAUTH challenge" in log and "MSRPAUTH accepted gateway" in log
        await session.connect(parse_path(client_path), "passive")

        to = f"{use_path} {' '.join(map(str, session.local_path))}"
        tid, mid = client.send(to, b"through kamailio")
        assert (await client.response(tid)).code == 200  # the relay's hop-by-hop 200
        msg = await asyncio.wait_for(inbox.get(), 10)
        assert msg.body == b"through kamailio" and msg.message_id == mid
        msg.accept()
        report = await client.next_report()
        assert report.get("Message-ID") == mid and report.get("Status") == "000 200 OK"

        sending = asyncio.create_task(session.send_message("text/plain", b"back through it"))
        got = await client.message()
        assert got.body == b"back through it"
        assert (got.get("From-Path") or "").split(" ")[-1] == str(session.local_uri)
        client.report(got, 200)
        outcome = await asyncio.wait_for(sending, 10)
        assert outcome.ok, outcome
        assert "MSRPRELAY SEND to saved connection" in relay.log_text()
    finally:
        await svc.stop()
        await client.close()


async def test_wrong_relay_password_is_refused(relay: KamailioRelay) -> None:
    svc = MsrpService(replace(_config(relay), relay_password="wrong"))
    await svc.start()
    try:
        with pytest.raises(MsrpConnectError, match="relay refused AUTH"):
            await svc.new_session(lambda m: None)
    finally:
        await svc.stop()

"""RFC 7573 chat sessions through the gateway process (issue 18, docs/sessions.md).

Real peers: Prosody with slixmpp clients on the XMPP side; on the SIP side sipp for the
INVITE/ACK/BYE leg, whose SDP a=path names the independent MSRP test client
(tests/harness/msrpclient.py, which imports no gateway code) listening on loopback with
a=setup:passive, so the gateway connects to it after the ACK. Everything waits for
conditions with bounded timeouts; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slixmpp.stanza import Message

from tests.harness import LOOPBACK, require_binary
from tests.harness import msrpclient as mc
from tests.harness.gateway_proc import GatewayProcess, gateway_config, merge
from tests.harness.kamailio_msrp import start_relay
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import SCENARIO_DIR, Sipp, SippResult
from tests.harness.xmpp_client import XmppTestClient
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.asyncio

COMPONENT = "sip.localhost"
ROMEO = f"sip:romeo@{COMPONENT}"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_RECEIPTS = "urn:xmpp:receipts"


@dataclass
class Rig:
    gw: GatewayProcess
    port: int
    sipp: Sipp
    scratch: Path

    def scenario(self, template: str, fields: Mapping[str, str]) -> Path:
        text = (SCENARIO_DIR / template).read_text(encoding="utf-8")
        for key, value in fields.items():
            text = text.replace(f"@@{key}@@", value)
        assert "@@" not in text, f"unfilled field in {template}"
        path = self.scratch / f"{secrets.token_hex(4)}-{template}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def invite(
        self,
        to: str,
        msrp_port: int,
        *,
        template: str = "session_msrp_wait_bye_uac.xml",
        path: str | None = None,
        **more: str,
    ) -> asyncio.Task[SippResult]:
        """sipp's INVITE with an offer naming the test client at `msrp_port`, in a thread."""
        path = self.scenario(
            template,
            {"MSRP_PORT": str(msrp_port), "MSRP_PROTO": "TCP/MSRP", "MSRP_EXTRA": "",
             "MSRP_PATH": path or f"msrp://127.0.0.1:{msrp_port}/passive1;tcp",
             **more},
        )  # fmt: skip
        return asyncio.create_task(
            asyncio.to_thread(
                self.sipp.run,
                path,
                remote=f"{LOOPBACK}:{self.port}",
                transport="u1",
                keys={"to_uri": to, "from_uri": ROMEO},
                timeout=40,
            )
        )

    async def log(self, pattern: str, timeout: float = 15) -> str:
        found = await asyncio.to_thread(self.gw.wait_for_log, pattern, timeout)
        return found.group(0)


@pytest.fixture
def rig(prosody: ProsodyServer, sipp: Sipp, tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    procs: list[GatewayProcess] = []

    def start(**over: Any) -> Rig:
        port = free_port()
        base: dict[str, Any] = {
            "gateway": {"state_dir": str(tmp_path / "state")},
            "xmpp": {
                "port": prosody.component_port,
                "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
            },
            "sip": {
                "listeners": [
                    {"transport": "udp", "address": LOOPBACK, "port": port},
                    {"transport": "tcp", "address": LOOPBACK, "port": port},
                ],
                "hosted_domains": [],
                "trusted_peers": ["127.0.0.1"],
                "timers": {"t1": 0.1},
            },
            "msrp": {"enabled": True, "address": LOOPBACK, "port": free_port()},
            "sessions": {"receipt_wait": 20},
            "admin": {"enabled": False},
        }
        gw = GatewayProcess(gateway_config(**merge(base, over)), tmp_path / "gw", log_level="info")
        procs.append(gw)
        gw.start()
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=20)
        return Rig(gw, port, sipp, tmp_path / "scenarios")

    try:
        yield start
    finally:
        for gw in procs:
            if gw.running:
                gw.kill()


async def connected_client() -> tuple[asyncio.Server, asyncio.Queue[mc.MsrpClient], int]:
    return await mc.listen("127.0.0.1")


async def gateway_leg(
    accepted: asyncio.Queue[mc.MsrpClient], scheme: str = "msrp"
) -> tuple[mc.MsrpClient, str]:
    """The gateway's connection to the test client and its path (from the bodiless SEND
    it binds the session with, RFC 4975 §5.4)."""
    client = await asyncio.wait_for(accepted.get(), 15)
    first = await client.message(timeout=15)
    assert first.body is None
    path = first.get("From-Path")
    assert path is not None and path.startswith(f"{scheme}://127.0.0.1:")
    return client, path


def chat_state(msg: Message) -> str | None:
    for child in msg.xml:
        if child.tag.startswith(f"{{{NS_CHATSTATES}}}"):
            return str(child.tag.split("}", 1)[1])
    return None


def status_code(report: mc.Msg) -> int:
    status = report.get("Status") or ""
    return int(status.split()[1])


async def test_sip_initiated_session_both_ways(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """RFC 7573 §5: text over MSRP reaches the XMPP user as type=chat; its XEP-0184
    receipt becomes the success REPORT (§7); the reply comes back as a message/cpim SEND;
    isComposing <-> chat states (§6); <gone/> ends the session with a BYE (§6.1)."""
    r = rig()
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    server, accepted, port = await connected_client()
    try:
        call = r.invite(f"sip:{juliet.jid.bare}", port)
        client, gw_path = await gateway_leg(accepted)
        _, mid = client.send(gw_path, b"What man art thou?", "text/plain")
        msg = await juliet.wait_message(lambda m: m["body"] == "What man art thou?", timeout=15)
        assert msg["type"] == "chat"
        assert str(msg["from"].bare) == f"romeo@{COMPONENT}"
        assert msg.xml.find(f"{{{NS_RECEIPTS}}}request") is not None
        with pytest.raises(TimeoutError):  # held until the receipt (RFC 7573 §7)
            await client.next_report(timeout=1.0)
        juliet.send_raw(
            f"<message to='{msg['from']}' id='r1'><received xmlns='{NS_RECEIPTS}' "
            f"id='{msg['id']}'/></message>"
        )
        report = await client.next_report(timeout=15)
        assert report.get("Message-ID") == mid and status_code(report) == 200

        juliet.send_raw(
            f"<message to='{msg['from']}' type='chat' id='reply1'><body>My name, dear saint,"
            f" is hateful</body><request xmlns='{NS_RECEIPTS}'/></message>"
        )
        send = await client.message(timeout=15)
        assert (send.get("Content-Type") or "").startswith("message/cpim")
        assert send.body is not None and b"My name, dear saint, is hateful" in send.body
        assert f"From: <sip:{juliet.jid.bare}>".encode() in send.body
        client.report(send)  # its success REPORT -> XEP-0184 <received/> (RFC 7573 §7)
        await r.log(r"session message .*direction=xmpp_to_sip.*fate=delivered")
        receipt = await juliet.wait_message(
            lambda m: m.xml.find(f"{{{NS_RECEIPTS}}}received") is not None, timeout=15
        )
        assert receipt.xml.find(f"{{{NS_RECEIPTS}}}received").get("id") == "reply1"

        composing = (
            b"<?xml version='1.0' encoding='UTF-8'?>\n<isComposing "
            b"xmlns='urn:ietf:params:xml:ns:im-iscomposing'><state>active</state>"
            b"<contenttype>text/plain</contenttype></isComposing>"
        )
        client.send(gw_path, composing, "application/im-iscomposing+xml", success_report=False)
        typing = await juliet.wait_message(lambda m: chat_state(m) == "composing", timeout=15)
        assert not typing["body"]
        juliet.send_raw(
            f"<message to='{msg['from']}' type='chat'>"
            f"<composing xmlns='{NS_CHATSTATES}'/></message>"
        )
        state = await client.message(timeout=15)
        assert state.body is not None and b"<state>active</state>" in state.body
        assert b"application/im-iscomposing+xml" in state.body  # wrapped in message/cpim

        juliet.send_raw(
            f"<message to='{msg['from']}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
        )
        result = await call
        assert result.ok, result.describe()
        await r.log(r"session ended .*reason=bye-sent")
        await asyncio.wait_for(client.closed.wait(), 15)
    finally:
        server.close()


async def test_bye_from_sip_sends_gone(rig: Callable[..., Rig], xmpp_client: ClientFactory) -> None:
    """A BYE from the SIP user ends the session: <gone/> to the XMPP user (§6.1), the
    MSRP connection closes, and later XMPP messages take pager mode again."""
    r = rig()
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    server, accepted, port = await connected_client()
    try:
        call = r.invite(
            f"sip:{juliet.jid.bare}", port, template="session_msrp_bye_uac.xml", HOLD="1500"
        )
        client, gw_path = await gateway_leg(accepted)
        client.send(gw_path, b"parting is such sweet sorrow", "text/plain", success_report=False)
        await juliet.wait_message(lambda m: m["body"] == "parting is such sweet sorrow", 15)
        result = await call
        assert result.ok, result.describe()
        gone = await juliet.wait_message(lambda m: chat_state(m) == "gone", timeout=15)
        assert str(gone["from"].bare) == f"romeo@{COMPONENT}"
        await r.log(r"session ended .*reason=bye-received")
        await asyncio.wait_for(client.closed.wait(), 15)
    finally:
        server.close()


async def test_undeliverable_gets_failure_report(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """An XMPP user that does not exist: Prosody bounces the stanza, the MSRP sender gets a
    failure REPORT (RFC 4975 §7.1.2) with the mapped code (RFC 7247 Table 2 -> 403)."""
    r = rig()
    juliet = await xmpp_client(prefix="juliet")  # only for the XMPP domain's name
    nobody = f"sip:nobody-{secrets.token_hex(3)}@{juliet.jid.domain}"
    server, accepted, port = await connected_client()
    try:
        call = r.invite(nobody, port)
        client, gw_path = await gateway_leg(accepted)
        _, mid = client.send(gw_path, b"is anybody there?", "text/plain")
        report = await client.next_report(timeout=15)
        assert report.get("Message-ID") == mid
        assert status_code(report) == 403
        await r.log(r"session message .*fate=rejected.*status=403")
        client.send(gw_path, b"unknown type", "application/octet-stream")
        report = await client.next_report(timeout=15)
        assert status_code(report) == 415
        await client.close()  # the connection's loss ends the session: the gateway BYEs
        result = await call
        assert result.ok, result.describe()
    finally:
        server.close()


def route_to(port: int) -> list[dict[str, str]]:
    return [{"domain": COMPONENT, "target": f"sip:{LOOPBACK}:{port}"}]


async def learn_msrp(r: Rig, juliet: XmppTestClient) -> None:
    """Romeo's client INVITEs with MSRP once (the gateway learns that it takes sessions),
    and Juliet's <gone/> ends that session."""
    server, accepted, port = await connected_client()
    try:
        call = r.invite(f"sip:{juliet.jid.bare}", port)
        client, gw_path = await gateway_leg(accepted)
        client.send(gw_path, b"I take MSRP", "text/plain", success_report=False)
        msg = await juliet.wait_message(lambda m: m["body"] == "I take MSRP", timeout=15)
        juliet.send_raw(
            f"<message to='{msg['from']}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
        )
        result = await call
        assert result.ok, result.describe()
        await r.log(r"session ended .*reason=bye-sent")
    finally:
        server.close()


async def test_xmpp_initiated_session(rig: Callable[..., Rig], xmpp_client: ClientFactory) -> None:
    """RFC 7573 §4: with preference "session", a chat message to a SIP user known to take
    MSRP opens a session (INVITE with an MSRP offer, answered by sipp pointing at the test
    client); the next message reuses it; <gone/> ends it."""
    uas_port = free_port()
    r = rig(sip={"routes": route_to(uas_port)}, sessions={"preference": "session"})
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    await learn_msrp(r, juliet)
    server, accepted, port = await connected_client()
    romeo = f"romeo@{COMPONENT}"
    try:
        uas = r.scenario("session_msrp_uas.xml", {"MSRP_PORT": str(port)})
        with r.sipp.uas(uas, local_port=uas_port, calls=1, timeout=40) as proc:
            juliet.send_message(romeo, "Deny thy father")
            client, _ = await gateway_leg(accepted)
            first = await client.message(timeout=15)
            assert first.body == b"Deny thy father"  # text/plain: no wrapped types offered
            juliet.send_message(romeo, "and refuse thy name")
            second = await client.message(timeout=15)
            assert second.body == b"and refuse thy name"
            await r.log(r"session opened .*outcome=established")
            juliet.send_raw(
                f"<message to='{romeo}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
            )
            result = await asyncio.to_thread(proc.wait)
            assert result.ok, result.describe()  # one INVITE, the gateway's BYE answered
    finally:
        server.close()


async def test_xmpp_initiated_session_to_hosted_user(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """The SIP user is hosted (registered with the gateway): the INVITE goes to its
    registered contact over its flow, not through DNS or static routes; an unregistered
    hosted user gets no INVITE (the message goes by pager mode and fails there)."""
    uas_port = free_port()
    r = rig(sip={"hosted_domains": [COMPONENT]}, sessions={"preference": "session"})
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    reg = await asyncio.to_thread(
        r.sipp.run,
        "session_msrp_register_uac.xml",
        remote=f"{LOOPBACK}:{r.port}",
        local_port=uas_port,
        keys={"device": f"{LOOPBACK}:{uas_port}"},
        timeout=20,
    )
    assert reg.ok, reg.describe()
    await learn_msrp(r, juliet)
    server, accepted, port = await connected_client()
    romeo = f"romeo@{COMPONENT}"
    try:
        uas = r.scenario("session_msrp_uas.xml", {"MSRP_PORT": str(port)})
        with r.sipp.uas(uas, local_port=uas_port, calls=1, timeout=40) as proc:
            juliet.send_message(romeo, "Wherefore art thou Romeo")
            client, _ = await gateway_leg(accepted)
            assert (await client.message(timeout=15)).body == b"Wherefore art thou Romeo"
            await r.log(r"session opened .*outcome=established")
            juliet.send_raw(
                f"<message to='{romeo}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
            )
            result = await asyncio.to_thread(proc.wait)
        assert result.ok, result.describe()
        assert f"INVITE sip:romeo@{LOOPBACK}:{uas_port}" in result.messages  # its contact
    finally:
        server.close()


async def test_xmpp_initiated_fallback_to_pager(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """The SIP user refuses the session (488): the message goes by pager MESSAGE, once."""
    uas_port = free_port()
    r = rig(sip={"routes": route_to(uas_port)}, sessions={"preference": "session"})
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    await learn_msrp(r, juliet)
    uas = r.scenario("session_msrp_488_uas.xml", {})
    with r.sipp.uas(uas, local_port=uas_port, calls=2, timeout=40) as proc:
        juliet.send_message(f"romeo@{COMPONENT}", "Call me but love")
        result = await asyncio.to_thread(proc.wait)
    assert result.ok, result.describe()
    assert result.messages.count("Call me but love") == 1, result.messages
    await r.log(r"session not opened, pager mode .*outcome=fallback.*status=488")
    await r.log(r"gateway\.bridge\.pager: message .*fate=delivered")


async def test_msrp_failure_reaches_xmpp_sender(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """A failure REPORT from the SIP side for an XMPP user's message comes back to them as
    an error stanza (RFC 7247 Table 3: 403 -> forbidden)."""
    r = rig()
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    server, accepted, port = await connected_client()
    try:
        call = r.invite(f"sip:{juliet.jid.bare}", port)
        client, gw_path = await gateway_leg(accepted)
        client.send(gw_path, b"speak again", "text/plain", success_report=False)
        msg = await juliet.wait_message(lambda m: m["body"] == "speak again", timeout=15)
        sent = juliet.send_message(msg["from"], "not for your eyes")
        send = await client.message(timeout=15)
        client.report(send, 403)
        error = await juliet.wait_message(
            lambda m: m["type"] == "error" and m["id"] == sent["id"], timeout=15
        )
        assert error["error"]["condition"] == "forbidden"
        await client.close()
        result = await call
        assert result.ok, result.describe()
    finally:
        server.close()


async def test_idle_session_ends_with_bye(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """[msrp] idle_timeout without a message: the gateway ends the session with a BYE."""
    r = rig(msrp={"idle_timeout": 1.0})
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    server, accepted, port = await connected_client()
    try:
        call = r.invite(f"sip:{juliet.jid.bare}", port)
        client, _ = await gateway_leg(accepted)
        result = await call
        assert result.ok, result.describe()
        await r.log(r"session media ended .*reason=\"idle timeout\"")
        await r.log(r"session ended .*reason=bye-sent")
        await asyncio.wait_for(client.closed.wait(), 15)
    finally:
        server.close()


async def test_gateway_stop_ends_sessions(
    rig: Callable[..., Rig], xmpp_client: ClientFactory
) -> None:
    """Stopping the gateway hangs up its sessions (BYE) and closes their MSRP connections."""
    r = rig()
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    server, accepted, port = await connected_client()
    try:
        call = r.invite(f"sip:{juliet.jid.bare}", port)
        client, _ = await gateway_leg(accepted)
        await r.log(r"session up ")
        assert await asyncio.to_thread(r.gw.terminate) == 0
        result = await call
        assert result.ok, result.describe()
        await asyncio.wait_for(client.closed.wait(), 15)
        assert re.search(r"session ended .*reason=bye-sent", r.gw.log_text())
    finally:
        server.close()


async def test_session_through_kamailio_relay(
    rig: Callable[..., Rig], xmpp_client: ClientFactory, tmp_path: Path
) -> None:
    """[msrp] relay: the gateway's session runs through Kamailio's msrp module (RFC 4976),
    to a test client that is itself behind the relay; text both ways and the held REPORT."""
    relay = start_relay(tmp_path / "kamailio")
    try:
        r = rig(msrp={"relay": relay.uri, "relay_username": "gateway",
                      "relay_password": relay.password})  # fmt: skip
        juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
        client = mc.MsrpClient("msrp://127.0.0.1:9/relayclient;tcp")
        await client.connect(relay.address, relay.port)
        use_path, _ = await client.auth(relay.uri, "client", relay.password)
        call = r.invite(f"sip:{juliet.jid.bare}", 9, path=f"{use_path} {client.path}")
        first = await client.message(timeout=15)  # the gateway's bodiless SEND, relayed
        gw_path = first.get("From-Path") or ""
        assert first.body is None and gw_path.startswith(f"msrp://{relay.address}:{relay.port}/")
        _, mid = client.send(gw_path, b"through the relay", "text/plain")
        msg = await juliet.wait_message(lambda m: m["body"] == "through the relay", timeout=15)
        juliet.send_raw(
            f"<message to='{msg['from']}' id='r2'><received xmlns='{NS_RECEIPTS}' "
            f"id='{msg['id']}'/></message>"
        )
        report = await client.next_report(timeout=15)
        assert report.get("Message-ID") == mid and status_code(report) == 200
        juliet.send_message(msg["from"], "and back")
        send = await client.message(timeout=15)
        assert send.body is not None and b"and back" in send.body
        juliet.send_raw(
            f"<message to='{msg['from']}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
        )
        result = await call
        assert result.ok, result.describe()
        assert "MSRPAUTH accepted gateway" in relay.log_text()
        await client.close()
    finally:
        relay.stop()


async def test_options_teaches_msrp(rig: Callable[..., Rig], xmpp_client: ClientFactory) -> None:
    """RFC 7573 §4 discovery: the first message to an unknown SIP user goes by pager mode
    while an OPTIONS asks it; its 200 shows an MSRP endpoint, so the next message opens a
    session."""
    uas_port = free_port()
    r = rig(sip={"routes": route_to(uas_port)}, sessions={"preference": "session"})
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    server, accepted, port = await connected_client()
    romeo = f"romeo@{COMPONENT}"
    try:
        uas = r.scenario("session_msrp_options_uas.xml", {"MSRP_PORT": str(port)})
        with r.sipp.uas(uas, local_port=uas_port, calls=3, timeout=40) as proc:
            juliet.send_message(romeo, "What light through yonder window breaks")
            await r.log(r"session capability .*msrp=True.*learnt=options")
            await r.log(r"gateway\.bridge\.pager: message .*fate=delivered")
            juliet.send_message(romeo, "It is the east")
            client, _ = await gateway_leg(accepted)
            assert (await client.message(timeout=15)).body == b"It is the east"
            juliet.send_raw(
                f"<message to='{romeo}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
            )
            result = await asyncio.to_thread(proc.wait)
        assert result.ok, result.describe()
        assert result.messages.count("What light through yonder window breaks") == 1
        assert "It is the east" not in result.messages  # it went over MSRP only
    finally:
        server.close()


@pytest.mark.parametrize(
    ("mline", "path", "status", "header_re"),
    [
        # TLS-only offer to a gateway without an msrps listener: RFC 3261 §20.43 code 302
        ("m=message 7394 TCP/TLS/MSRP *", "msrps://127.0.0.1:7394/tls1;tcp", "488",
         "Warning: 302 "),
        ("m=audio 7396 RTP/AVP 0", None, "488", "Warning: 304 "),
    ],
)  # fmt: skip
async def test_unusable_offers_refused_with_warning(
    rig: Callable[..., Rig], mline: str, path: str | None, status: str, header_re: str
) -> None:
    """With `[msrp] enabled`, the real `MsrpMedia` refuses what it cannot run."""
    r = rig()
    lines = ["v=0", "o=sipp 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0", mline,
             "a=accept-types:text/plain"]  # fmt: skip
    if path is not None:
        lines += [f"a=path:{path}", "a=fingerprint:SHA-256 " + ":".join(["AB"] * 32)]
    scenario = r.scenario(
        "session_invite_refused_uac.xml",
        {"CONTENT_TYPE": "application/sdp", "BODY": "".join(f"      {x}\n" for x in lines),
         "STATUS": status, "HEADER_RE": header_re},
    )  # fmt: skip
    result = await asyncio.to_thread(
        r.sipp.run, scenario, remote=f"{LOOPBACK}:{r.port}", transport="u1",
        keys={"to_uri": "sip:juliet@localhost", "from_uri": ROMEO}, timeout=20,
    )  # fmt: skip
    assert result.ok, result.describe()


def _cert(d: Path, name: str) -> tuple[Path, Path]:
    require_binary("openssl")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-keyout", f"{name}.key", "-out", f"{name}.pem",
         "-subj", f"/CN={name}"],
        cwd=d, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


async def test_tls_session(
    rig: Callable[..., Rig], xmpp_client: ClientFactory, tmp_path: Path
) -> None:
    """An msrps session (RFC 4975 §14.4): sipp offers TCP/TLS/MSRP with the test client's
    certificate fingerprint; the gateway connects over TLS, checks it, and bridges."""
    gw_cert, gw_key = _cert(tmp_path, "gateway")
    client_cert, client_key = _cert(tmp_path, "client")
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(client_cert.read_text())).hexdigest()
    fingerprint = ":".join(digest[i : i + 2] for i in range(0, 64, 2)).upper()
    r = rig(msrp={"tls_port": free_port(), "certificate": str(gw_cert),
                  "private_key": str(gw_key)})  # fmt: skip
    juliet = (await xmpp_client(prefix="juliet")).see_all_messages()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(client_cert), str(client_key))
    server, accepted, port = await mc.listen("127.0.0.1", tls=ctx)
    try:
        call = r.invite(
            f"sip:{juliet.jid.bare}",
            port,
            path=f"msrps://127.0.0.1:{port}/passive1;tcp",
            MSRP_PROTO="TCP/TLS/MSRP",
            MSRP_EXTRA=f"      a=fingerprint:SHA-256 {fingerprint}\n",
        )
        client, gw_path = await gateway_leg(accepted, scheme="msrps")
        client.send(gw_path, b"sealed with a kiss", "text/plain", success_report=False)
        msg = await juliet.wait_message(lambda m: m["body"] == "sealed with a kiss", timeout=15)
        juliet.send_raw(
            f"<message to='{msg['from']}' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>"
        )
        result = await call
        assert result.ok, result.describe()
    finally:
        server.close()

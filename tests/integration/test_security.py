"""Security as tests (issue 12): what no other file covers yet.

docs/reliability.md ("Security") lists which test proves each item: From spoofing,
relaying and the registrar's brute-force limit are in test_registrar.py and
test_pager.py; refused untrusted TLS certificates in test_sip_tls.py. Here: secrets never
reach the log. The gateway process runs at debug level with both wire traces switched on
(POST /trace) through a failed and a successful Digest REGISTER, an authenticated MESSAGE
to XMPP and an XMPP message to the registered phone; then the whole log is searched for
the component secret, the users' passwords, their HA1 hashes (MD5 and SHA-256) and the
Digest nonce secret, in every encoding they could be written in.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.registrar.service import SECRET_FILENAME
from gateway.registrar.users import User, format_user, hash_password
from gateway.sip.auth import build_authorization, select_challenge
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import IncomingRequest
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, config_of, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.xmpp_client import XmppTestClient

pytestmark = pytest.mark.integration

DOMAIN = "sip.localhost"
LIMIT = 30.0


class Phone:
    """A registered SIP phone: a real SipEndpoint that answers MESSAGE 200."""

    def __init__(self, aor: str) -> None:
        self.aor = aor
        self.user = aor.partition("@")[0]
        self.port = free_port()
        cfg = SipConfig(
            listeners=(ListenerConfig(Transport.UDP, LOOPBACK, self.port),),
            timers=SipTimers(t1=0.1),
        )
        self.endpoint = SipEndpoint(cfg, self)
        self.received: list[SipRequest] = []
        self.arrived = asyncio.Event()
        self.call_id = f"sec-{secrets.token_hex(6)}"
        self.cseq = 0

    def handle(self, incoming: IncomingRequest) -> None:
        if incoming.request.method == "MESSAGE":
            self.received.append(incoming.request)
            self.arrived.set()
            incoming.reply(200)
        elif incoming.request.method != "ACK":
            incoming.reply(405)

    async def send(self, request: SipRequest, gw_port: int) -> SipResponse:
        target = Target("udp", LOOPBACK, LOOPBACK, gw_port)
        return await asyncio.wait_for(self.endpoint.request(request, target), LIMIT)

    def register(self, auth: str | None = None) -> SipRequest:
        self.cseq += 1
        headers = [
            ("From", f"<sip:{self.aor}>;tag=reg"),
            ("To", f"<sip:{self.aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<sip:{self.user}@{LOOPBACK}:{self.port}>"),
            ("Expires", "300"),
        ]
        if auth is not None:
            headers.append(("Authorization", auth))
        return SipRequest("REGISTER", parse_uri(f"sip:{DOMAIN}"), Headers(headers))

    def message(self, to: str, body: str, auth: str | None = None) -> SipRequest:
        headers = [
            ("From", f"<sip:{self.aor}>;tag=m{secrets.token_hex(3)}"),
            ("To", f"<sip:{to}>"),
            ("Call-ID", f"msg-{secrets.token_hex(6)}"),
            ("CSeq", "1 MESSAGE"),
            ("Content-Type", "text/plain"),
        ]
        if auth is not None:
            headers.append(("Proxy-Authorization", auth))
        return SipRequest("MESSAGE", parse_uri(f"sip:{to}"), Headers(headers), body.encode())


def encodings(secret: bytes) -> list[str]:
    """The ways a byte secret could be written to a text log."""
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]


def leaks(log: str, secrets_: dict[str, str]) -> list[str]:
    """The names of the secrets found in `log` (case-insensitive for hex)."""
    low = log.lower()
    return [name for name, value in secrets_.items() if value in log or value.lower() in low]


async def test_secrets_never_logged_with_debug_and_wire_traces(
    prosody_factory: Callable[..., ProsodyServer], tmp_path: Path
) -> None:
    component_secret = f"cmp-{secrets.token_urlsafe(18)}"
    prosody = prosody_factory(components={DOMAIN: component_secret})
    juliet_pw = f"jp-{secrets.token_urlsafe(12)}"
    prosody.add_user("juliet", juliet_pw)
    passwords = {
        "romeo": f"rp-{secrets.token_urlsafe(15)}",
        "mercutio": f"mp-{secrets.token_urlsafe(15)}",
    }
    users: list[User] = [hash_password(f"{u}@{DOMAIN}", None, pw) for u, pw in passwords.items()]
    users_file = tmp_path / "users.toml"
    users_file.write_text("\n".join(format_user(u) for u in users), encoding="utf-8")
    state_dir = tmp_path / "state"
    sip_port = free_port()
    gw = GatewayProcess(
        gateway_config(
            gateway={"state_dir": str(state_dir)},
            xmpp={
                "port": prosody.component_port,
                "components": [{"domain": DOMAIN, "secret": component_secret}],
            },
            sip={
                "listeners": [{"transport": "udp", "address": LOOPBACK, "port": sip_port}],
                "hosted_domains": [DOMAIN],
                "served_xmpp_domains": ["localhost"],
            },
            registrar={"users_file": str(users_file)},
        ),
        tmp_path / "gateway",
        log_level="debug",
    )
    admin = config_of(gw.config_path.read_text())["admin"]["listen"]
    phone = Phone(f"romeo@{DOMAIN}")
    await phone.endpoint.start()
    juliet = XmppTestClient("juliet@localhost", juliet_pw, port=prosody.c2s_port)
    try:
        gw.start()
        gw.wait_for_log(rf"xmpp link {DOMAIN} up", timeout=30)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://{admin}/trace", json={"sip": True, "xmpp": True}) as resp,
        ):
            assert await resp.json() == {"sip": True, "xmpp": True}
        # the link comes up again under the trace: the XEP-0114 handshake is on the wire
        prosody.restart()
        gw.wait_for_log(rf"(?s)xmpp link {DOMAIN} up.*xmpp link {DOMAIN} up", timeout=30)
        await juliet.connect()

        # Digest REGISTER: a wrong password first, then the right one
        challenge = await phone.send(phone.register(), sip_port)
        assert challenge.status == 401
        ch = select_challenge(list(challenge.headers.get_all("WWW-Authenticate")))
        uri = f"sip:{DOMAIN}"
        wrong = build_authorization(ch, "REGISTER", uri, "romeo", password=passwords["mercutio"])
        assert (await phone.send(phone.register(wrong), sip_port)).status == 401
        right = build_authorization(ch, "REGISTER", uri, "romeo", password=passwords["romeo"], nc=2)
        assert (await phone.send(phone.register(right), sip_port)).status == 200

        # SIP -> XMPP, authenticated (407 then Proxy-Authorization) if the flow is not enough
        to = "juliet@localhost"
        first = await phone.send(phone.message(to, "hello from romeo"), sip_port)
        if first.status == 407:
            pch = select_challenge(list(first.headers.get_all("Proxy-Authenticate")))
            auth = build_authorization(
                pch, "MESSAGE", f"sip:{to}", "romeo", password=passwords["romeo"]
            )
            first = await phone.send(phone.message(to, "hello from romeo", auth), sip_port)
        assert first.status in (200, 202), first.status
        got = await juliet.wait_message(lambda m: m["body"] == "hello from romeo", LIMIT)
        assert got is not None

        # XMPP -> SIP: to the registered phone
        juliet.send_message(f"romeo@{DOMAIN}", "hello back")
        async with asyncio.timeout(LIMIT):
            while not any(r.body == b"hello back" for r in phone.received):
                phone.arrived.clear()
                await phone.arrived.wait()
    finally:
        await juliet.disconnect()
        await phone.endpoint.stop()
        if gw.running:
            assert gw.terminate(30) == 0

    log = gw.log_text()
    # the traces were on: the log holds the wire, Digest headers included
    assert "REGISTER sip:" in log and "Authorization: Digest" in log
    assert "hello back" in log and "hello from romeo" in log
    assert "<handshake" in log  # its SHA-1 digest may be logged, never the secret
    nonce_secret = (state_dir / SECRET_FILENAME).read_bytes()
    assert len(nonce_secret) == 32
    searched: dict[str, str] = {"component secret": component_secret}
    searched.update({f"password of {u}": pw for u, pw in passwords.items()})
    searched["password of juliet (XMPP)"] = juliet_pw
    for u in users:
        searched[f"HA1 MD5 of {u.aor}"] = u.ha1_md5 or "-"
        searched[f"HA1 SHA-256 of {u.aor}"] = u.ha1_sha256 or "-"
    for i, form in enumerate(encodings(nonce_secret)):
        searched[f"nonce secret (form {i})"] = form
    assert leaks(log, searched) == []
    # control: the search does find what the wire trace did write (the public nonce)
    assert leaks(log, {"nonce": ch.nonce, "juliet": "juliet@localhost"}) == ["nonce", "juliet"]

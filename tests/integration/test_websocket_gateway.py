"""A WebSocket client without GRUU against the gateway process (issue 20, RFC 7118 §5):
it registers a `.invalid` Contact with digest over a ws listener, subscribes to a
slixmpp juliet's presence from that Contact, and gets every NOTIFY over its own
connection (the dialog's remote target is the `.invalid` URI: the gateway finds the
binding's flow, never DNS). A second connection's MESSAGE to juliet is challenged,
then delivered. Raw SIP over aiohttp's client: every byte of the exchange is visible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
from pathlib import Path

import aiohttp
import pytest

from gateway.registrar.users import format_user, hash_password
from gateway.sip.auth import build_authorization, select_challenge
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.parser import parse_message
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 30.0
HOST = f"{secrets.token_hex(5)}.invalid"
CONTACT = f"sip:romeo-tab@{HOST};transport=ws"


def config(prosody: ProsodyServer, tmp_path: Path, ws: int) -> str:
    users = tmp_path / "users.toml"
    romeo = dataclasses.replace(
        hash_password(f"sip:romeo@{COMPONENT}", None, "romeo-pw"), ha1_sha256=None
    )
    users.write_text(format_user(romeo))
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
            "listeners": [{"transport": "ws", "address": LOOPBACK, "port": ws}],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        admin={"enabled": False},
    )


class WsSip:
    """One SIP-over-WebSocket connection: requests out, responses and requests in
    (incoming requests are answered 200 and kept)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.requests: asyncio.Queue[SipRequest] = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read())
        self.cseq = 0

    async def _read(self) -> None:
        async for msg in self.ws:
            data = msg.data.encode() if isinstance(msg.data, str) else msg.data
            parsed = parse_message(data)
            if isinstance(parsed, SipResponse):
                await self.responses.put(parsed)
                continue
            await self.ws.send_str(ok_for(parsed))
            await self.requests.put(parsed)

    async def request(
        self, method: str, uri: str, headers: list[tuple[str, str]], body: str = ""
    ) -> SipResponse:
        self.cseq += 1
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/WS {HOST};branch=z9hG4bK{secrets.token_hex(6)}",
            "Max-Forwards: 70",
            f"CSeq: {self.cseq} {method}",
            *(f"{n}: {v}" for n, v in headers),
            f"Content-Length: {len(body.encode())}",
        ]
        await self.ws.send_str("\r\n".join(lines) + "\r\n\r\n" + body)
        while True:
            resp = await asyncio.wait_for(self.responses.get(), LIMIT)
            if resp.status >= 200:
                return resp

    async def authed(
        self, method: str, uri: str, headers: list[tuple[str, str]], body: str = ""
    ) -> SipResponse:
        """`request`, answering one 401/407 challenge with romeo's credentials."""
        resp = await self.request(method, uri, headers, body)
        if resp.status not in (401, 407):
            return resp
        name = "WWW-Authenticate" if resp.status == 401 else "Proxy-Authenticate"
        challenge = select_challenge(list(resp.headers.get_all(name)))
        value = build_authorization(challenge, method, uri, "romeo", password="romeo-pw")
        auth = "Authorization" if resp.status == 401 else "Proxy-Authorization"
        return await self.request(method, uri, [*headers, (auth, value)], body)

    def close(self) -> None:
        self._reader.cancel()


def ok_for(req: SipRequest) -> str:
    keep = ("Via", "From", "To", "Call-ID", "CSeq")
    lines = ["SIP/2.0 200 OK"]
    lines += [f"{n}: {v}" for n, v in req.headers.items() if n in keep]  # To has our tag
    lines.append("Content-Length: 0")
    return "\r\n".join(lines) + "\r\n\r\n"


async def test_invalid_contact_without_gruu_gets_its_notifies_over_the_websocket(
    prosody: ProsodyServer, xmpp_client: ClientFactory, tmp_path: Path
) -> None:
    ws_port = free_port()
    cfg = config(prosody, tmp_path, ws_port)
    with GatewayProcess(cfg, tmp_path / "gw", log_level="info") as gw:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        juliet = await xmpp_client(prefix="juliet")
        aor = f"sip:romeo@{COMPONENT}"
        async with aiohttp.ClientSession() as session:
            url = f"http://{LOOPBACK}:{ws_port}/"
            async with session.ws_connect(url, protocols=("sip",)) as ws:
                sip = WsSip(ws)
                reg = await sip.authed(
                    "REGISTER",
                    f"sip:{COMPONENT}",
                    [
                        ("From", f"<{aor}>;tag={secrets.token_hex(4)}"),
                        ("To", f"<{aor}>"),
                        ("Call-ID", f"reg-{secrets.token_hex(6)}"),
                        ("Contact", f"<{CONTACT}>;expires=600"),
                    ],
                )
                assert reg.status == 200, reg
                assert "gr=" not in str(reg.headers.get("Contact"))  # no GRUU asked for
                watched = f"sip:{juliet.jid.bare}"
                sub = await sip.request(
                    "SUBSCRIBE",
                    watched,
                    [
                        ("From", f"<{aor}>;tag={secrets.token_hex(4)}"),
                        ("To", f"<{watched}>"),
                        ("Call-ID", f"sub-{secrets.token_hex(6)}"),
                        ("Contact", f"<{CONTACT}>"),
                        ("Event", "presence"),
                        ("Accept", "application/pidf+xml"),
                        ("Expires", "600"),
                    ],
                )
                assert sub.status in (200, 202), sub  # the registered flow vouches for romeo
                first = await asyncio.wait_for(sip.requests.get(), LIMIT)
                assert first.method == "NOTIFY"
                assert str(first.uri) == CONTACT  # the remote target: the .invalid Contact
                juliet.xmpp.send_presence(pshow="away", pstatus="on the balcony")

                async def balcony() -> SipRequest:
                    while True:
                        req = await sip.requests.get()
                        if b"on the balcony" in req.body:
                            return req

                away = await asyncio.wait_for(balcony(), LIMIT)
                assert away.method == "NOTIFY" and str(away.uri) == CONTACT
                sip.close()
            # Another connection is not the registered flow: its MESSAGE needs digest.
            async with session.ws_connect(url, protocols=("sip",)) as ws2:
                other = WsSip(ws2)
                text = f"two households {secrets.token_hex(4)}"
                headers = [
                    ("From", f"<{aor}>;tag={secrets.token_hex(4)}"),
                    ("To", f"<{watched}>"),
                    ("Call-ID", f"msg-{secrets.token_hex(6)}"),
                    ("Content-Type", "text/plain"),
                ]
                first_try = await other.request("MESSAGE", watched, headers, text)
                assert first_try.status in (401, 407)
                sent = await other.authed("MESSAGE", watched, headers, text)
                assert sent.status in (200, 202), sent
                got = await juliet.wait_message(lambda m: str(m["body"]) == text, timeout=LIMIT)
                assert got["from"].bare == f"romeo@{COMPONENT}"
                other.close()
        log = gw.log_text()
        assert "DNS is disabled" not in log
        assert "NOTIFY failed" not in log

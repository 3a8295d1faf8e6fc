"""A SIP proxy trusted by its TLS client certificate on an INCOMING connection (issue 8,
docs/security.md "Trusting a proxy by certificate").

Real peers: the gateway process (tests.harness.gateway_proc) with a TLS listener whose
`client_ca` is a throwaway CA made with the openssl CLI, the session Prosody with the
`sip.localhost` component and an XmppTestClient as the XMPP recipient. The "proxy" is a
Python `ssl` client that writes a MESSAGE claiming `sip:romeo@sip.localhost` (a hosted
domain, with a registrar) without any Digest credentials:

- a client certificate from that CA whose subjectAltName DNS name (or, lacking a
  subjectAltName, CN) is in `sip.trusted_tls_names` -> 200 and delivered over XMPP;
- one from the same CA with another name, or no certificate at all -> 407, not delivered;
- one from another CA -> the handshake fails (CERT_OPTIONAL verifies what is presented).

After SIGHUP (the TLS certificate reload) the listener still asks for and verifies client
certificates, against the CA bundle `client_ca` names now.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from slixmpp.stanza import Message

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.integration.conftest import ClientFactory

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

COMPONENT = "sip.localhost"
ROMEO = f"sip:romeo@{COMPONENT}"
TRUSTED_NAME = "proxy.trusted.test"
CN_ONLY_NAME = "cn-proxy.trusted.test"
LIMIT = 30.0


@dataclass(frozen=True)
class Pki:
    dir: Path
    ca: Path

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA, a server certificate for the gateway and client certificates:
    trusted (SAN DNS:TRUSTED_NAME), cn-only (CN=CN_ONLY_NAME, no SAN), other (same CA,
    SAN DNS:proxy.other.test) and stranger (TRUSTED_NAME, but from another CA)."""
    require_binary("openssl")
    d = tmp_path_factory.mktemp("client-trust-pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    for ca in ("ca", "wrong-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-subj", f"/CN=Test {ca}")  # fmt: skip

    def issue(name: str, cn: str, ext: str, ca: str = "ca") -> None:
        (d / f"{name}.cnf").write_text(f"basicConstraints=CA:FALSE\n{ext}")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", "-subj", f"/CN={cn}")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.cnf")  # fmt: skip

    issue(
        "server",
        COMPONENT,
        f"subjectAltName=DNS:{COMPONENT},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    client = "extendedKeyUsage=clientAuth\n"
    issue("trusted", "Trusted Proxy", f"subjectAltName=DNS:{TRUSTED_NAME}\n{client}")
    issue("cn-only", CN_ONLY_NAME, client)
    issue("other", TRUSTED_NAME, f"subjectAltName=DNS:proxy.other.test\n{client}")
    issue("stranger", TRUSTED_NAME, f"subjectAltName=DNS:{TRUSTED_NAME}\n{client}", "wrong-ca")
    return Pki(d, d / "ca.pem")


@pytest.fixture
def gateway(
    prosody: ProsodyServer, tmp_path: Path, pki: Pki
) -> Iterator[tuple[GatewayProcess, int]]:
    """A ready gateway with a registrar for sip.localhost (romeo has a password, so an
    unproven claim is challenged) and a TLS listener that asks for client certificates."""
    users = tmp_path / "users.toml"
    users.write_text(format_user(hash_password(ROMEO[4:], None, "pw")))
    users.chmod(0o600)
    port = free_port()
    cert, key = pki.pair("server")
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
                {
                    "transport": "tls",
                    "address": LOOPBACK,
                    "port": port,
                    "certificate": str(cert),
                    "private_key": str(key),
                    "client_ca": str(pki.ca),
                }
            ],
            "trusted_tls_names": [TRUSTED_NAME.upper(), CN_ONLY_NAME],
            "timers": {"t1": 0.1},
        },
        registrar={"users_file": str(users)},
        admin={"enabled": False},
    )
    gw = GatewayProcess(config, tmp_path / "gateway", log_level="info")
    try:
        gw.start()
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        yield gw, port
    finally:
        if gw.running:
            gw.kill()


def message(to: str, body: str, call_id: str, local_port: int) -> bytes:
    payload = body.encode()
    head = (
        f"MESSAGE {to} SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS {LOOPBACK}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <{ROMEO}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <{to}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 MESSAGE\r\n"
        "Content-Type: text/plain\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def read_final(conn: ssl.SSLSocket) -> tuple[int, str]:
    """The first final response on the connection: (status, whole message text)."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed before a final response: {buf!r}")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        m = re.search(rb"^content-length\s*:\s*(\d+)", head, re.IGNORECASE | re.MULTILINE)
        length = int(m.group(1)) if m else 0
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed inside a response body")
            rest += chunk
        text = (head + b"\r\n\r\n" + rest[:length]).decode("utf-8", "replace")
        buf = rest[length:]
        status = int(text.split(" ", 2)[1])
        if status >= 200:
            return status, text


def send_over_tls(pki: Pki, port: int, client: str | None, to: str, body: str) -> tuple[int, str]:
    """Connect with the client certificate `client` (a pki name, or None for none),
    send one MESSAGE and return the final response."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki.ca))
    if client is not None:
        cert, key = pki.pair(client)
        ctx.load_cert_chain(str(cert), str(key))
    with (
        socket.create_connection((LOOPBACK, port), timeout=LIMIT) as raw,
        ctx.wrap_socket(raw, server_hostname=COMPONENT) as conn,
    ):
        call_id = f"{secrets.token_hex(6)}@client-trust"
        conn.sendall(message(to, body, call_id, conn.getsockname()[1]))
        return read_final(conn)


def has_body(body: str) -> Callable[[Message], bool]:
    return lambda m: str(m["body"]) == body


async def send(pki: Pki, port: int, client: str | None, to: str, body: str) -> tuple[int, str]:
    return await asyncio.to_thread(send_over_tls, pki, port, client, to, body)


async def test_proxy_trusted_by_client_certificate(
    gateway: tuple[GatewayProcess, int], pki: Pki, xmpp_client: ClientFactory
) -> None:
    gw, port = gateway
    juliet = await xmpp_client(prefix="juliet")
    to = f"sip:{juliet.jid.bare}"

    refused: list[str] = []
    for client in ("other", None):
        body = f"unproven via {client or 'no certificate'}"
        status, text = await send(pki, port, client, to, body)
        assert status == 407, text
        assert re.search(r"^Proxy-Authenticate:\s*Digest ", text, re.MULTILINE), text
        refused.append(body)

    for client in ("trusted", "cn-only"):
        body = f"vouched for by {client}"
        status, text = await send(pki, port, client, to, body)
        assert status == 200, text
        msg = await juliet.wait_message(has_body(body), timeout=LIMIT)
        assert str(msg["from"]).startswith(f"romeo@{COMPONENT}")

    # The challenged MESSAGEs were answered (finally) before the trusted ones were sent.
    assert not [m for m in juliet.messages if str(m["body"]) in refused]
    assert not re.search(r"fate=(?!delivered)", gw.log_text()), gw.tail()


async def test_certificate_from_another_ca_fails_the_handshake(
    gateway: tuple[GatewayProcess, int], pki: Pki
) -> None:
    _, port = gateway
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await send(pki, port, "stranger", f"sip:nobody@{COMPONENT}", "never read")
    # the listener is still serving
    status, text = await send(pki, port, None, f"sip:nobody@{COMPONENT}", "after")
    assert status == 407, text


async def test_sighup_reload_keeps_client_ca(
    gateway: tuple[GatewayProcess, int], pki: Pki, xmpp_client: ClientFactory
) -> None:
    """The reload keeps asking for client certificates and loads the new `client_ca`
    bundle: after it also names the other CA, the stranger's certificate is accepted."""
    gw, port = gateway
    juliet = await xmpp_client(prefix="juliet")
    to = f"sip:{juliet.jid.bare}"
    bundle = gw.workdir / "client-ca-bundle.pem"
    bundle.write_text(pki.ca.read_text() + (pki.dir / "wrong-ca.pem").read_text())
    text = gw.config_path.read_text()
    assert str(pki.ca) in text
    gw.config_path.write_text(text.replace(str(pki.ca), str(bundle)))
    gw.send_signal(signal.SIGHUP)
    line = gw.wait_for_log(r"configuration reloaded.*", timeout=LIMIT).group(0)
    assert "certificates=1" in line, line
    status, text = await send(pki, port, "trusted", to, "after the reload")
    assert status == 200, text
    await juliet.wait_message(has_body("after the reload"), timeout=LIMIT)
    status, text = await send(pki, port, "stranger", to, "stranger after the reload")
    assert status == 200, text
    await juliet.wait_message(
        lambda m: str(m["body"]) == "stranger after the reload", timeout=LIMIT
    )
    for client in ("other", None):
        status, text = await send(pki, port, client, to, "unproven after the reload")
        assert status == 407, text

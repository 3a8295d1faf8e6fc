"""SIP over TLS on loopback: the endpoint as a client of baresip (a real TLS SIP peer) and
as a TLS server for a Python `ssl` client. A throwaway CA and server certificate are made
with the openssl CLI per test module; a second, unrelated CA plays the wrong trust anchor.

baresip (Debian 1.0) listens for TLS on its `sip_listen` port + 1. It answers an OPTIONS
for an unknown user with 404 (a final response is all we need: it proves the TLS
handshake, the certificate check and the framing on both sides). Its DNS client is
pointed at a closed loopback port, so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import ListenerConfig, SipConfig, SipTimers, TlsClientConfig, Transport
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import IncomingRequest, TransportFailure
from tests.harness import LOOPBACK, log_tail, require_binary, stop_group
from tests.harness.ports import free_port, free_port_block, tcp_accepting

pytestmark = pytest.mark.integration

LIMIT = 30.0


@dataclass(frozen=True)
class Pki:
    ca: Path
    wrong_ca: Path
    cert: Path
    key: Path
    bundle: Path  # cert + key in one file (baresip's sip_certificate)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_binary("openssl")
    d = tmp_path_factory.mktemp("pki")
    for name in ("ca", "wrong-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN=Test {name}",
            cwd=d,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=d,
    )  # fmt: skip
    (d / "ext.cnf").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=d,
    )  # fmt: skip
    bundle = d / "bundle.pem"
    bundle.write_text((d / "server.pem").read_text() + (d / "server.key").read_text())
    return Pki(d / "ca.pem", d / "wrong-ca.pem", d / "server.pem", d / "server.key", bundle)


@dataclass(frozen=True)
class Baresip:
    tls_port: int
    log: Path


@pytest.fixture
def baresip(pki: Pki, tmp_path: Path) -> Iterator[Baresip]:
    binary = require_binary("baresip")
    conf = tmp_path / "baresip"
    conf.mkdir()
    base = free_port_block((0, 1))
    closed = free_port()  # DNS goes nowhere but loopback
    (conf / "config").write_text(
        f"sip_listen\t{LOOPBACK}:{base}\n"
        f"sip_certificate\t{pki.bundle}\n"
        f"net_interface\t{LOOPBACK}\n"
        f"dns_server\t{LOOPBACK}:{closed}\n"
        "module_path\t/usr/lib/baresip/modules\n"
    )
    (conf / "accounts").write_text(f"<sip:bob@{LOOPBACK}>;regint=0\n")
    log = tmp_path / "baresip.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, "-f", str(conf), "-s"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + LIMIT
        while not tcp_accepting(base + 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"baresip did not listen on TLS {base + 1}:\n{log_tail(log)}")
            time.sleep(0.05)
        yield Baresip(base + 1, log)
    finally:
        stop_group(proc)


def options(uri: str, call_id: str) -> SipRequest:
    return SipRequest(
        "OPTIONS",
        parse_uri(uri),
        Headers(
            [
                ("From", "<sip:gw@127.0.0.1>;tag=gw"),
                ("To", f"<{uri}>"),
                ("Call-ID", call_id),
                ("CSeq", "1 OPTIONS"),
            ]
        ),
    )


MakeEndpoint = Callable[..., Awaitable[SipEndpoint]]


class Answer200:
    def __init__(self) -> None:
        self.seen: list[IncomingRequest] = []

    def handle(self, request: IncomingRequest) -> None:
        self.seen.append(request)
        request.reply(200)


@pytest.fixture
async def make_endpoint() -> AsyncIterator[MakeEndpoint]:
    eps: list[SipEndpoint] = []

    async def make(config: SipConfig, handler: Answer200 | None = None) -> SipEndpoint:
        ep = SipEndpoint(config, handler or Answer200())
        await ep.start()
        eps.append(ep)
        return ep

    try:
        yield make
    finally:
        for ep in eps:
            await ep.stop()


def client_config(ca: Path) -> SipConfig:
    return SipConfig(
        listeners=(ListenerConfig(Transport.UDP, LOOPBACK, free_port()),),
        timers=SipTimers(t1=0.05),
        tls_client=TlsClientConfig(verify=True, ca_file=ca),
    )


async def test_options_to_baresip_over_verified_tls(
    baresip: Baresip, pki: Pki, make_endpoint: MakeEndpoint
) -> None:
    ep = await make_endpoint(client_config(pki.ca))
    uri = f"sip:bob@127.0.0.1:{baresip.tls_port};transport=tls"
    target = Target("tls", "localhost", LOOPBACK, baresip.tls_port)
    first = await asyncio.wait_for(ep.request(options(uri, "tls-1"), target), LIMIT)
    second = await asyncio.wait_for(ep.request(options(uri, "tls-2"), target), LIMIT)
    assert first.status >= 200 and second.status >= 200
    assert "baresip" in (first.headers.get("Server") or "")
    via = first.top_via
    assert via is not None and via.transport == "TLS" and via.received == LOOPBACK
    (conn,) = ep.connections.connections()  # both requests used one TLS connection
    assert conn.transport_name == "tls" and conn.peercert is not None
    assert ep.connections.opened == 1
    log = baresip.log.read_text(errors="replace")
    assert "OPTIONS sip:bob@127.0.0.1" in log and "TLS 127.0.0.1:" in log


async def test_wrong_ca_is_refused(baresip: Baresip, pki: Pki, make_endpoint: MakeEndpoint) -> None:
    ep = await make_endpoint(client_config(pki.wrong_ca))
    uri = f"sip:bob@127.0.0.1:{baresip.tls_port};transport=tls"
    target = Target("tls", "localhost", LOOPBACK, baresip.tls_port)
    with pytest.raises(TransportFailure, match="CERTIFICATE_VERIFY_FAILED") as info:
        await asyncio.wait_for(ep.request(options(uri, "tls-bad"), target), LIMIT)
    assert info.value.connect_failed
    assert "OPTIONS sip:" not in baresip.log.read_text(errors="replace")


async def test_wrong_host_name_is_refused(
    baresip: Baresip, pki: Pki, make_endpoint: MakeEndpoint
) -> None:
    ep = await make_endpoint(client_config(pki.ca))
    uri = f"sip:bob@sip.example.org:{baresip.tls_port};transport=tls"
    target = Target("tls", "sip.example.org", LOOPBACK, baresip.tls_port)  # address given
    with pytest.raises(TransportFailure, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(ep.request(options(uri, "tls-name"), target), LIMIT)


async def _ask_over_tls(port: int, ca: Path, data: bytes) -> SipResponse:
    ctx = ssl.create_default_context(cafile=str(ca))
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(LOOPBACK, port, ssl=ctx, server_hostname="localhost"), LIMIT
    )
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LIMIT)
    finally:
        writer.close()
    msg = parse_message(head)
    assert isinstance(msg, SipResponse)
    return msg


def _request(method: str, port: int, call_id: str) -> bytes:
    return (
        f"{method} sip:gw@localhost:{port};transport=tls SIP/2.0\r\n"
        f"Via: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sips:alice@localhost>;tag=a1\r\n"
        "To: <sips:gw@localhost>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Type: text/plain\r\n"
        "Content-Length: 2\r\n\r\nhi"
    ).encode()


async def test_tls_listener_answers(pki: Pki, make_endpoint: MakeEndpoint) -> None:
    port = free_port()
    handler = Answer200()
    config = SipConfig(
        listeners=(ListenerConfig(Transport.TLS, LOOPBACK, port, pki.cert, pki.key),),
        timers=SipTimers(t1=0.05),
    )
    await make_endpoint(config, handler)
    resp = await _ask_over_tls(port, pki.ca, _request("OPTIONS", port, "tls-in-1"))
    assert resp.status == 200 and "MESSAGE" in resp.allow
    resp = await _ask_over_tls(port, pki.ca, _request("MESSAGE", port, "tls-in-2"))
    assert resp.status == 200
    (incoming,) = handler.seen
    assert incoming.transport == "tls" and incoming.listener == f"tls:{LOOPBACK}:{port}"
    assert incoming.connection_id is not None and incoming.request.body == b"hi"

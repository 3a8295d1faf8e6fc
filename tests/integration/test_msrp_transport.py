"""gateway.msrp.transport against an MSRP client that shares no code with it
(tests/harness/msrpclient.py, written from RFC 4975): TCP and TLS, both connection roles
(RFC 6135), connection reuse (RFC 4975 §5.4), reports, and the bad input of issue 18.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.config import MsrpConfig
from gateway.msrp.transport import IncomingMessage, MsrpConnectError, MsrpService, MsrpSession
from gateway.msrp.uri import parse_uri
from gateway.sdp.msrp import (
    Answer,
    Negotiated,
    Offer,
    answer_offer,
    fingerprint_of,
    make_offer,
    offered_tls,
    parse_answer,
)
from tests.harness import require_binary
from tests.harness.msrpclient import MsrpClient, build, listen, new_id

pytestmark = pytest.mark.asyncio
HOST = "127.0.0.1"


def _cert(d: Path, name: str) -> tuple[Path, Path]:
    require_binary("openssl")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-keyout", f"{name}.key", "-out", f"{name}.pem",
         "-subj", f"/CN={name}"],
        cwd=d, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("msrp-pki")
    return {n: _cert(d, n) for n in ("gateway", "client", "mallory")}


def _config(certs: dict[str, tuple[Path, Path]], **kw: object) -> MsrpConfig:
    cert, key = certs["gateway"]
    base = MsrpConfig(enabled=True, address=HOST, port=0, tls_port=0, certificate=cert,
                      private_key=key, partial_timeout=2.0, connect_timeout=3.0)  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[IncomingMessage] = asyncio.Queue()
        self.closed: list[str] = []

    def __call__(self, msg: IncomingMessage) -> None:
        self.queue.put_nowait(msg)

    async def get(self) -> IncomingMessage:
        return await asyncio.wait_for(self.queue.get(), 10)


@pytest.fixture
async def service(certs: dict[str, tuple[Path, Path]]) -> AsyncIterator[MsrpService]:
    svc = MsrpService(_config(certs))
    await svc.start()
    yield svc
    await svc.stop()


async def _session(svc: MsrpService, tls: bool = False) -> tuple[MsrpSession, Inbox]:
    inbox = Inbox()
    session = await svc.new_session(inbox, inbox.closed.append, tls=tls)
    return session, inbox


def _client_ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(*map(str, cert))
    return ctx


def _server_ctx(cert: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*map(str, cert))
    return ctx


def _der(cert: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(cert.read_text())


async def _exchange(session: MsrpSession, inbox: Inbox, client: MsrpClient) -> None:
    """Both directions with reports: client -> gateway (200 response, success REPORT
    after accept) and gateway -> client (outcome 200 after the client's REPORT)."""
    to = str(session.local_uri)
    tid, mid = client.send(to, b"hello gateway")
    assert (await client.response(tid)).code == 200
    msg = await inbox.get()
    assert (msg.body, msg.content_type, msg.message_id) == (b"hello gateway", "text/plain", mid)
    assert client.reports.empty()  # RFC 7573: held until accept()
    msg.accept()
    report = await client.next_report()
    assert (
        report.get("Message-ID") == mid
        and report.get(
            "Status",
        )
        == "000 200 OK"
    )
    assert report.get("Byte-Range") == "1-13/13"
    sending = asyncio.create_task(session.send_message("text/plain", b"hello client"))
    got = await client.message()
    while got.body is None:  # the bodiless binding SEND of an active gateway (§5.4)
        got = await client.message()
    assert got.body == b"hello client" and got.get("Success-Report") == "yes"
    client.report(got, 200)
    outcome = await asyncio.wait_for(sending, 10)
    assert outcome.ok and outcome.message_id == got.get("Message-ID")


async def test_tcp_gateway_passive(service: MsrpService) -> None:
    session, inbox = await _session(service)
    client = MsrpClient(f"msrp://{HOST}:9/client1;tcp")
    await session.connect([parse_uri(client.path)], "passive")
    await client.connect(HOST, service.port)
    await _exchange(session, inbox, client)
    assert session.connected
    await client.close()


async def test_tcp_gateway_active_and_connection_reuse(service: MsrpService) -> None:
    server, accepted, port = await listen(HOST)
    try:
        s1, in1 = await _session(service)
        s2, in2 = await _session(service)
        uri1 = f"msrp://{HOST}:{port}/peerone;tcp"
        uri2 = f"msrp://{HOST}:{port}/peertwo;tcp"
        await s1.connect([parse_uri(uri1)], "active")
        client = await asyncio.wait_for(accepted.get(), 5)
        client.path = uri1
        first = await client.message()  # §5.4: the active end sends at once
        assert first.body is None and first.get("To-Path") == uri1
        await s2.connect([parse_uri(uri2)], "active")  # same host, port, scheme: reused
        second = await client.message()
        assert second.get("To-Path") == uri2
        assert accepted.empty() and service.connections == 1
        await _exchange(s1, in1, client)
        client.path = uri2
        await _exchange(s2, in2, client)
        s1.close()
        assert service.connections == 1  # s2 still uses it
        s2.close()
        await asyncio.sleep(0.1)
        assert service.connections == 0
        await client.close()
    finally:
        server.close()


async def test_tls_gateway_passive(
    service: MsrpService, certs: dict[str, tuple[Path, Path]]
) -> None:
    session, inbox = await _session(service, tls=True)
    assert session.local_uri.secure and service.fingerprint is not None
    client = MsrpClient(f"msrps://{HOST}:9/tlsclient;tcp")
    await session.connect([parse_uri(client.path)], "passive")
    await client.connect(HOST, service.tls_port or 0, _client_ctx(certs["client"]))
    der = client.peer_certificate()
    assert der is not None and service.fingerprint.matches(der)  # what our SDP says
    await _exchange(session, inbox, client)
    await client.close()


async def test_tls_gateway_active_checks_fingerprint(
    service: MsrpService, certs: dict[str, tuple[Path, Path]]
) -> None:
    server, accepted, port = await listen(HOST, tls=_server_ctx(certs["client"]))
    try:
        good = fingerprint_of(_der(certs["client"][0]))
        wrong = fingerprint_of(_der(certs["mallory"][0]))
        uri = parse_uri(f"msrps://{HOST}:{port}/tlspeer;tcp")
        bad_session, _ = await _session(service, tls=True)
        with pytest.raises(MsrpConnectError, match="fingerprint"):
            await bad_session.connect([uri], "active", [wrong])  # RFC 4975 §14.2
        lost = await asyncio.wait_for(accepted.get(), 5)
        await asyncio.wait_for(lost.closed.wait(), 5)  # the gateway closed it
        assert service.connections == 0
        session, inbox = await _session(service, tls=True)
        await session.connect([uri], "active", [good])
        client = await asyncio.wait_for(accepted.get(), 5)
        client.path = str(uri)
        await _exchange(session, inbox, client)
        await client.close()
    finally:
        server.close()


async def test_unknown_session_is_481_and_logged(
    service: MsrpService, caplog: pytest.LogCaptureFixture
) -> None:
    session, _ = await _session(service)
    client = MsrpClient(f"msrp://{HOST}:9/c481;tcp")
    await client.connect(HOST, service.port)
    wrong = str(session.local_uri).replace(session.local_uri.session_id or "", "nosuchsession")
    with caplog.at_level(logging.INFO, logger="gateway.msrp"):
        tid, _ = client.send(wrong, b"x")
        assert (await client.response(tid)).code == 481
    assert "481" in caplog.text and "nosuchsession" in caplog.text
    assert service.unmatched == 1
    tid, _ = client.send(str(session.local_uri), b"still fine")  # the connection survives
    assert (await client.response(tid)).code == 200
    await client.close()


async def test_session_bound_elsewhere_is_506(service: MsrpService) -> None:
    session, _ = await _session(service)
    one = MsrpClient(f"msrp://{HOST}:9/c506;tcp")
    two = MsrpClient(f"msrp://{HOST}:9/c506;tcp")
    await one.connect(HOST, service.port)
    await two.connect(HOST, service.port)
    tid, _ = one.send(str(session.local_uri), b"first")
    assert (await one.response(tid)).code == 200
    tid, _ = two.send(str(session.local_uri), b"intruder")
    assert (await two.response(tid)).code == 506  # §5.4
    await one.close()
    await two.close()


async def test_malformed_frames(service: MsrpService) -> None:
    session, inbox = await _session(service)
    client = MsrpClient(f"msrp://{HOST}:9/cbad;tcp")
    await client.connect(HOST, service.port)
    to = str(session.local_uri)
    # parseable start line, broken header section: 400, connection kept
    tid = new_id()
    client.raw(build(tid, "SEND", [("To-Path", to), ("From-Path", client.path),
                                   ("Byte-Range", "x-y/z")], b"x", "text/plain"))  # fmt: skip
    assert (await client.response(tid)).code == 400
    tid = new_id()
    client.raw(build(tid, "FROB", [("To-Path", to), ("From-Path", client.path)]))
    assert (await client.response(tid)).code == 501
    # garbage without a start line: fatal, closed
    client.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(client.closed.wait(), 5)
    assert inbox.queue.empty()
    await client.close()


async def test_chunk_over_limits_413(certs: dict[str, tuple[Path, Path]]) -> None:
    svc = MsrpService(_config(certs, max_chunk_size=2048, max_message_size=4096))
    await svc.start()
    try:
        session, inbox = await _session(svc)
        client = MsrpClient(f"msrp://{HOST}:9/cbig;tcp")
        await client.connect(HOST, svc.port)
        tid, _ = client.send(str(session.local_uri), b"a" * 5000)  # over the chunk limit
        assert (await client.response(tid)).code == 413
        tid, _ = client.send(str(session.local_uri), b"b" * 100, byte_range="1-100/9000",
                             flag="+")  # declared total over max_message_size  # fmt: skip
        assert (await client.response(tid)).code == 413
        tid, _ = client.send(str(session.local_uri), b"ok")
        assert (await client.response(tid)).code == 200
        assert (await inbox.get()).body == b"ok"
        await client.close()
    finally:
        await svc.stop()


async def test_overlapping_byte_ranges_400(service: MsrpService) -> None:
    session, inbox = await _session(service)
    client = MsrpClient(f"msrp://{HOST}:9/coverlap;tcp")
    await client.connect(HOST, service.port)
    to = str(session.local_uri)
    tid, mid = client.send(to, b"abcdef", byte_range="1-6/10", flag="+")
    assert (await client.response(tid)).code == 200
    tid, _ = client.send(to, b"XYZW", message_id=mid, byte_range="4-7/10", flag="+")
    assert (await client.response(tid)).code == 400  # different bytes over 4-6
    # identical bytes are a harmless duplicate (§7.3.1)
    tid, mid = client.send(to, b"12345", byte_range="1-5/8", flag="+")
    assert (await client.response(tid)).code == 200
    tid, _ = client.send(to, b"45678", message_id=mid, byte_range="4-8/8")
    assert (await client.response(tid)).code == 200
    assert (await inbox.get()).body == b"12345678"
    await client.close()


async def test_slowloris_closed_at_framer_deadline(service: MsrpService) -> None:
    session, _ = await _session(service)
    client = MsrpClient(f"msrp://{HOST}:9/cslow;tcp")
    await client.connect(HOST, service.port)
    tid = new_id()
    frame = build(tid, "SEND", [("To-Path", str(session.local_uri)), ("From-Path", client.path),
                                ("Message-ID", new_id())], b"x" * 50, "text/plain")  # fmt: skip
    client.raw(frame[:60])  # partial_timeout is 2 s in these tests
    for piece in range(60, 80):
        await asyncio.sleep(0.3)
        if client.closed.is_set():
            break
        client.raw(frame[piece : piece + 1])
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.responses.empty()
    await client.close()


async def test_failure_report_and_timeout_outcomes(certs: dict[str, tuple[Path, Path]]) -> None:
    svc = MsrpService(_config(certs, transaction_timeout=1.0, report_timeout=1.0))
    await svc.start()
    try:
        session, _ = await _session(svc)
        client = MsrpClient(f"msrp://{HOST}:9/cfail;tcp")
        await session.connect([parse_uri(client.path)], "passive")
        await client.connect(HOST, svc.port)
        tid, _ = client.send(str(session.local_uri), None)  # bind (§5.4)
        assert (await client.response(tid)).code == 200
        sending = asyncio.create_task(session.send_message("text/plain", b"refuse me"))
        got = await client.message()
        client.report(got, 415)
        outcome = await asyncio.wait_for(sending, 10)
        assert (outcome.ok, outcome.code) == (False, 415)
        unreported = await asyncio.wait_for(session.send_message("text/plain", b"no report"), 10)
        assert (unreported.ok, unreported.reported) == (True, False)  # after report_timeout
        await client.message()
        client.auto_answer = False  # no 200 to the chunk: 408 after transaction_timeout
        outcome = await asyncio.wait_for(session.send_message("text/plain", b"lost"), 10)
        assert outcome.code == 408
        pending = asyncio.create_task(session.send_message("text/plain", b"cut"))
        await client.message()
        session.close("bye")
        assert (await asyncio.wait_for(pending, 5)).code == 481
        await client.close()
    finally:
        await svc.stop()


async def test_idle_timeout_and_connection_loss(certs: dict[str, tuple[Path, Path]]) -> None:
    svc = MsrpService(_config(certs, idle_timeout=1.0))
    await svc.start()
    try:
        _, idle_box = await _session(svc)
        for _ in range(40):
            if idle_box.closed:
                break
            await asyncio.sleep(0.1)
        assert idle_box.closed == ["idle timeout"] and svc.sessions == 0
        svc.config = replace(svc.config, idle_timeout=600.0)
        session, inbox = await _session(svc)
        client = MsrpClient(f"msrp://{HOST}:9/close;tcp")
        await client.connect(HOST, svc.port)
        tid, _ = client.send(str(session.local_uri), None)
        assert (await client.response(tid)).code == 200
        await client.close()
        for _ in range(40):
            if inbox.closed:
                break
            await asyncio.sleep(0.1)
        assert inbox.closed and inbox.closed[0].startswith("connection lost")  # §5.4
    finally:
        await svc.stop()


@pytest.mark.parametrize(("tls", "prefer_active"), [(False, False), (True, False), (True, True)])
async def test_two_services_negotiated_by_sdp(
    certs: dict[str, tuple[Path, Path]], tls: bool, prefer_active: bool
) -> None:
    """The wiring the INVITE leg does: make_offer -> answer_offer -> parse_answer, then
    each side connects with what was negotiated (RFC 6135 roles, §14.2 fingerprints)."""
    peer_cert, peer_key = certs["client"]
    offerer = MsrpService(_config(certs))
    answerer = MsrpService(_config(certs, certificate=peer_cert, private_key=peer_key))
    await offerer.start()
    await answerer.start()
    try:
        o_session, o_inbox = await _session(offerer, tls=tls)
        body, offer = make_offer(o_session.local_media())
        assert offered_tls(body) is tls
        a_session, a_inbox = await _session(answerer, tls=tls)
        answer = answer_offer(body, a_session.local_media(prefer_active=prefer_active))
        assert isinstance(answer, Answer)
        ours = parse_answer_checked(answer.body, offer)
        assert {ours.setup, answer.stream.setup} == {"active", "passive"}
        for session, stream in ((o_session, ours), (a_session, answer.stream)):
            if stream.setup == "passive":
                await session.connect(stream.remote_path, "passive", stream.fingerprints)
        for session, stream in ((o_session, ours), (a_session, answer.stream)):
            if stream.setup == "active":
                await session.connect(stream.remote_path, "active", stream.fingerprints)
        await a_session.wait_connected()
        await o_session.wait_connected()
        for sender, inbox in ((o_session, a_inbox), (a_session, o_inbox)):
            sending = asyncio.create_task(sender.send_message("text/plain", b"via sdp"))
            msg = await inbox.get()
            assert msg.body == b"via sdp"
            msg.accept()
            assert (await asyncio.wait_for(sending, 10)).ok
    finally:
        await offerer.stop()
        await answerer.stop()


def parse_answer_checked(body: bytes, offer: Offer) -> Negotiated:
    result = parse_answer(body, offer)
    assert isinstance(result, Negotiated), result
    return result


def _ca_signed(d: Path) -> tuple[Path, tuple[Path, Path]]:
    """A CA and a certificate it signed for 127.0.0.1 (a relay's, RFC 4976 §9.2)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-days", "2", "-keyout", "ca.key", "-out", "ca.pem",
        "-subj", "/CN=Test MSRP CA")  # fmt: skip
    run("req", *ec, "-keyout", "relay.key", "-out", "relay.csr", "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    run("x509", "-req", "-in", "relay.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "relay.pem", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d / "ca.pem", (d / "relay.pem", d / "relay.key")


async def test_tls_path_through_a_relay_is_verified_by_ca(
    certs: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    """The peer's a=path starts at its relay and carries no fingerprint: the relay's
    certificate is checked against `relay_ca` and its address, not by fingerprint."""
    ca, relay_cert = _ca_signed(tmp_path)
    server, accepted, port = await listen(HOST, tls=_server_ctx(relay_cert))
    path = [parse_uri(f"msrps://{HOST}:{port}/relayslot;tcp"),
            parse_uri("msrps://peer.example.org:2855/peer1;tcp")]  # fmt: skip
    untrusting = MsrpService(_config(certs))  # system store: our test CA is unknown
    trusting = MsrpService(_config(certs, relay_ca=ca))
    await untrusting.start()
    await trusting.start()
    try:
        s1, _ = await _session(untrusting, tls=True)
        with pytest.raises(MsrpConnectError, match="certificate verify failed"):
            await s1.connect(path, "active")
        s2, _ = await _session(trusting, tls=True)
        await s2.connect(path, "active")
        client = await asyncio.wait_for(accepted.get(), 5)
        first = await client.message()  # the bodiless binding SEND (§5.4)
        assert first.body is None and first.get("To-Path") == " ".join(
            map(str, path)
        )  # whole path (RFC 4976 §6)
        await client.close()
    finally:
        await untrusting.stop()
        await trusting.stop()
        server.close()


async def test_reused_tls_connection_still_checks_fingerprints(
    service: MsrpService, certs: dict[str, tuple[Path, Path]]
) -> None:
    server, accepted, port = await listen(HOST, tls=_server_ctx(certs["client"]))
    try:
        good = fingerprint_of(_der(certs["client"][0]))
        wrong = fingerprint_of(_der(certs["mallory"][0]))
        s1, _ = await _session(service, tls=True)
        await s1.connect([parse_uri(f"msrps://{HOST}:{port}/one;tcp")], "active", [good])
        s2, _ = await _session(service, tls=True)
        with pytest.raises(MsrpConnectError, match="fingerprint"):
            await s2.connect([parse_uri(f"msrps://{HOST}:{port}/two;tcp")], "active", [wrong])
        assert service.connections == 1 and s1.connected  # the good one is untouched
        client = await asyncio.wait_for(accepted.get(), 5)
        await client.close()
    finally:
        server.close()


async def test_peer_reuses_one_connection_for_two_passive_sessions(service: MsrpService) -> None:
    """§5.4 from the other side: a peer binds two of our sessions on one connection."""
    s1, in1 = await _session(service)
    s2, in2 = await _session(service)
    client = MsrpClient(f"msrp://{HOST}:9/twosessions;tcp")
    await s1.connect([parse_uri(client.path)], "passive")
    await s2.connect([parse_uri(client.path)], "passive")
    await client.connect(HOST, service.port)
    await _exchange(s1, in1, client)
    await _exchange(s2, in2, client)
    assert service.connections == 1
    s1.close()
    tid, _ = client.send(str(s2.local_uri), b"still bound")
    assert (await client.response(tid)).code == 200  # s2 keeps the connection
    tid, _ = client.send(str(s1.local_uri), b"gone")
    assert (await client.response(tid)).code == 481
    await client.close()


async def test_connection_bounds(certs: dict[str, tuple[Path, Path]]) -> None:
    """An accepted connection that binds no session within connect_timeout is closed, and
    connections over max_connections are closed at once (memory stays bounded)."""
    svc = MsrpService(_config(certs, connect_timeout=1.0, max_connections=2))
    await svc.start()
    try:
        silent = MsrpClient(f"msrp://{HOST}:9/silent;tcp")
        await silent.connect(HOST, svc.port)
        other = MsrpClient(f"msrp://{HOST}:9/other;tcp")
        await other.connect(HOST, svc.port)
        third = MsrpClient(f"msrp://{HOST}:9/third;tcp")
        await third.connect(HOST, svc.port)
        await asyncio.wait_for(third.closed.wait(), 5)  # over max_connections
        assert not silent.closed.is_set()
        await asyncio.wait_for(silent.closed.wait(), 5)  # nothing bound in 1 s
        await asyncio.wait_for(other.closed.wait(), 5)
        assert svc.connections == 0
        for c in (silent, other, third):
            await c.close()
    finally:
        await svc.stop()


async def test_send_before_the_peer_connects(certs: dict[str, tuple[Path, Path]]) -> None:
    """A passive session's message waits for the peer: 408 when it never comes within
    connect_timeout, 481 when the session is closed meanwhile."""
    svc = MsrpService(_config(certs, connect_timeout=0.5))
    await svc.start()
    try:
        session, _ = await _session(svc)
        await session.connect([parse_uri(f"msrp://{HOST}:9/nobody;tcp")], "passive")
        assert (await session.send_message("text/plain", b"x")).code == 408
        waiting = asyncio.create_task(session.send_message("text/plain", b"y"))
        await asyncio.sleep(0.1)
        session.close("bye")
        assert (await asyncio.wait_for(waiting, 5)).code == 481
        assert (await session.send_message("text/plain", b"z")).code == 481
    finally:
        await svc.stop()

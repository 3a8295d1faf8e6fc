"""SIP over WebSocket (RFC 7118, issue 20): a `SipEndpoint` with a ws listener against
aiohttp's WebSocket client and raw sockets on loopback.

The good path (one SIP message per frame, text or binary, responses and requests to the
client over its own connection, Via WS) and every bad input of issue 20: a handshake
without the `sip` subprotocol or from an Origin not allowed, oversized messages, text
frames that are not UTF-8, frames that are no SIP message or half of one, a client that
never answers pings, and a slowloris on the HTTP upgrade. Each has its close code (or
HTTP status) and its log line. Waits are bounded; nothing asserts on timing beyond the
configured deadlines.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.parser import parse_message
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.uri import parse_uri
from gateway.sip.useragent import IncomingRequest, TransportFailure
from tests.harness import LOOPBACK
from tests.integration.test_sip_tls import Pki, pki

pytestmark = pytest.mark.integration

__all__ = ["pki"]  # the certificate fixture of test_sip_tls.py, shared

LIMIT = 20.0
MAX_SIZE = 4096


def register(call_id: str = "ws1", via: str = "SIP/2.0/WS df7jal23ls0d.invalid") -> str:
    return (
        "REGISTER sip:example.com SIP/2.0\r\n"
        f"Via: {via};branch=z9hG4bK{call_id}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:alice@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 REGISTER\r\n"
        "Contact: <sip:r2d2@df7jal23ls0d.invalid;transport=ws>\r\n"
        "Max-Forwards: 70\r\n"
        "\r\n"
    )


class Handler:
    def __init__(self) -> None:
        self.seen: list[IncomingRequest] = []

    def handle(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        self.seen.append(incoming)
        if incoming.request.method != "ACK":
            incoming.reply(200)
        return None


Factory = Callable[..., Awaitable[tuple[SipEndpoint, Handler, str]]]


@pytest.fixture
async def ws_endpoint() -> AsyncIterator[Factory]:
    started: list[SipEndpoint] = []

    async def make(**listener: Any) -> tuple[SipEndpoint, Handler, str]:
        lc = ListenerConfig(Transport.WS, LOOPBACK, 0, **listener)
        cfg = SipConfig(
            listeners=(lc,), max_message_size=MAX_SIZE, timers=SipTimers(t1=0.05, t2=4.0, t4=5.0)
        )
        handler = Handler()
        ep = SipEndpoint(cfg, handler)
        await ep.start()
        started.append(ep)
        port = ep.listeners[0].local[1]
        return ep, handler, f"http://{LOOPBACK}:{port}{lc.path}"

    try:
        yield make
    finally:
        for ep in started:
            await ep.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def receive_sip(ws: aiohttp.ClientWebSocketResponse) -> SipResponse | SipRequest:
    msg = await asyncio.wait_for(ws.receive(), LIMIT)
    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
    data = msg.data.encode() if isinstance(msg.data, str) else msg.data
    return parse_message(data)


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The close code the server sent (waits for the close frame)."""
    while True:
        msg = await asyncio.wait_for(ws.receive(), LIMIT)
        if msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.ERROR,
        ):
            return ws.close_code


def logged(caplog: pytest.LogCaptureFixture, message: str) -> list[dict[str, Any]]:
    """The fields of the log lines `message` (gateway.logs.event)."""
    return [getattr(r, "fields", {}) for r in caplog.records if r.getMessage() == message]


async def until(predicate: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), LIMIT)


# ----------------------------------------------------------------------- the good path


async def test_register_over_text_frame_answered_on_the_same_connection(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    _, handler, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        assert ws.protocol == "sip"  # RFC 7118 §4.1: the 101 carries the subprotocol
        await ws.send_str(register())
        resp = await receive_sip(ws)
        assert isinstance(resp, SipResponse) and resp.status == 200
        incoming = handler.seen[0]
        assert incoming.transport == "ws"
        assert incoming.connection_id is not None
        assert incoming.listener.startswith("ws:")
        assert incoming.request.top_via is not None
        assert incoming.request.top_via.transport.upper() == "WS"


async def test_binary_frame_is_one_sip_message(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    _, handler, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_bytes(register("bin1").encode())  # RFC 7118 §4.2: binary accepted
        resp = await receive_sip(ws)
        assert isinstance(resp, SipResponse) and resp.status == 200
        assert handler.seen[0].request.call_id == "bin1"


async def test_request_to_the_client_goes_over_its_connection_then_fails_when_gone(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    """The flow (RFC 5626, RFC 7118 §5): what the registrar records is (ws, source
    address); a request to it is written to that connection, never to a new one."""
    ep, handler, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_str(register())
        await receive_sip(ws)
        ip, port = handler.seen[0].source
        req = SipRequest(
            "MESSAGE",
            parse_uri("sip:r2d2@df7jal23ls0d.invalid;transport=ws"),
            Headers(
                [
                    ("From", "<sip:gw@example.com>;tag=g1"),
                    ("To", "<sip:alice@example.com>"),
                    ("Call-ID", "to-client"),
                    ("CSeq", "1 MESSAGE"),
                    ("Content-Type", "text/plain"),
                ]
            ),
            b"hello browser",
        )
        sending = asyncio.ensure_future(ep.request(req, Target("ws", ip, ip, port)))
        got = await receive_sip(ws)
        assert isinstance(got, SipRequest) and got.method == "MESSAGE"
        assert got.body == b"hello browser"
        assert got.top_via is not None and got.top_via.transport.upper() == "WS"
        await ws.send_str(
            "SIP/2.0 200 OK\r\n"
            + "".join(f"{n}: {v}\r\n" for n, v in got.headers.items() if n != "Content-Length")
            + "Content-Length: 0\r\n\r\n"
        )
        response = await asyncio.wait_for(sending, LIMIT)
        assert response.status == 200
    await until(lambda: ep.connections.get("ws", (ip, port)) is None)
    with pytest.raises(TransportFailure):
        await ep.request(req, Target("ws", ip, ip, port))


async def test_crlf_keepalive_ping_is_answered(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    _, _, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_str("\r\n\r\n")
        msg = await asyncio.wait_for(ws.receive(), LIMIT)
        assert msg.data == "\r\n"


# ----------------------------------------------------------------------- the handshake


async def test_handshake_without_sip_subprotocol_is_refused(
    ws_endpoint: Factory, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.sip.transport.websocket")
    _, _, url = await ws_endpoint()
    for protocols in ((), ("xmpp",)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(url, protocols=protocols)
        assert info.value.status == 400
    assert [f["status"] for f in logged(caplog, "websocket handshake refused")] == [400, 400]


async def test_origin_allow_list(
    ws_endpoint: Factory, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.sip.transport.websocket")
    _, _, url = await ws_endpoint(origins=("https://app.example.com",))
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url, protocols=("sip",), origin="https://evil.example.net")
    assert info.value.status == 403
    [refused] = logged(caplog, "websocket handshake refused")
    assert refused["status"] == 403
    assert refused["reason"] == "origin not allowed: https://evil.example.net"
    async with session.ws_connect(url, protocols=("sip",), origin="https://APP.example.com") as ws:
        assert ws.protocol == "sip"
    async with session.ws_connect(url, protocols=("sip",)) as ws:  # no Origin: not a browser
        assert ws.protocol == "sip"


async def test_wrong_path_is_404(ws_endpoint: Factory, session: aiohttp.ClientSession) -> None:
    _, _, url = await ws_endpoint(path="/sip")
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(url.removesuffix("/sip") + "/", protocols=("sip",))
    assert info.value.status == 404
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        assert ws.protocol == "sip"


def test_slowloris_on_the_upgrade_is_cut_at_the_handshake_deadline() -> None:
    """A client trickling its upgrade request one byte at a time is closed once
    `handshake_timeout` has passed since it connected (aiohttp's keep-alive timer),
    whatever it still sends."""

    async def main() -> float:
        lc = ListenerConfig(Transport.WS, LOOPBACK, 0, handshake_timeout=1.0)
        ep = SipEndpoint(SipConfig(listeners=(lc,)), Handler())
        await ep.start()
        try:
            port = ep.listeners[0].local[1]
            return await asyncio.to_thread(trickle, port)
        finally:
            await ep.stop()

    elapsed = asyncio.run(main())
    assert 0.9 <= elapsed < 8.0


def trickle(port: int) -> float:
    request = (
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Slow: " + b"a" * 400
    )
    start = time.monotonic()
    with socket.create_connection((LOOPBACK, port), timeout=LIMIT) as sock:
        for i in range(len(request)):
            try:
                sock.sendall(request[i : i + 1])
            except OSError:
                return time.monotonic() - start
            sock.settimeout(0.1)
            try:
                if sock.recv(1024) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                pass
            except OSError:
                return time.monotonic() - start
            if time.monotonic() - start > LIMIT:
                break
    raise AssertionError("the server kept a trickling upgrade open")


# ----------------------------------------------------------------------- bad messages


async def test_oversized_message_is_closed_1009(
    ws_endpoint: Factory, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.sip.transport.websocket")
    ep, handler, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_str(register() + "x" * (MAX_SIZE + 1))
        assert await closed_with(ws) == 1009
    assert not handler.seen
    assert [f["code"] for f in logged(caplog, "websocket closed")] == [1009]
    await until(lambda: len(ep.connections) == 0)


async def test_text_frame_not_utf8_is_closed_1007(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    _, handler, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_frame(register().encode() + b"\xff\xfe", aiohttp.WSMsgType.TEXT)
        assert await closed_with(ws) == 1007
    assert not handler.seen


async def test_frame_that_is_no_sip_message_is_closed_1002(
    ws_endpoint: Factory, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "gateway.sip.transport.websocket")
    _, handler, url = await ws_endpoint()
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_bytes(b"\x00\x01binary garbage\xff")
        assert await closed_with(ws) == 1002
    assert [(f["code"], f["reason"]) for f in logged(caplog, "websocket closed")] == [
        (1002, "not a SIP message")
    ]
    assert not handler.seen


async def test_message_split_across_frames(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    """RFC 7118 §5: a frame is a whole message. The first half (a readable request line,
    a body shorter than its Content-Length) is answered 400; the second half, which has
    no request line, closes the connection 1002."""
    _, handler, url = await ws_endpoint()
    whole = register("split").replace("Max-Forwards: 70\r\n", "Content-Length: 10\r\n")
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await ws.send_str(whole + "hello")
        resp = await receive_sip(ws)
        assert isinstance(resp, SipResponse) and resp.status == 400
        await ws.send_str("world")
        assert await closed_with(ws) == 1002
    assert not handler.seen


async def test_half_open_client_is_closed_by_the_heartbeat(
    ws_endpoint: Factory, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that no longer answers pings (a half-open connection) is dropped."""
    caplog.set_level(logging.INFO, "gateway.sip.transport.websocket")
    ep, _, url = await ws_endpoint(heartbeat=0.4)
    async with session.ws_connect(url, protocols=("sip",), autoping=False) as ws:
        await until(lambda: len(ep.connections) == 1)
        msg = await asyncio.wait_for(ws.receive(), LIMIT)
        assert msg.type is aiohttp.WSMsgType.PING  # and we do not answer it
        await until(lambda: len(ep.connections) == 0)
    [closed] = logged(caplog, "websocket closed")
    assert closed["code"] == 1006


async def test_answering_client_survives_the_heartbeat(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    ep, _, url = await ws_endpoint(heartbeat=0.2)
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        reading = asyncio.ensure_future(receive_sip(ws))  # receive() answers the pings
        await asyncio.sleep(1.0)  # five heartbeats
        assert len(ep.connections) == 1
        await ws.send_str(register("alive"))
        resp = await reading
        assert isinstance(resp, SipResponse) and resp.status == 200


# ----------------------------------------------------------------------- wss


async def test_wss_listener_speaks_tls_with_the_sip_certificate(
    pki: Pki, session: aiohttp.ClientSession
) -> None:
    """WSS: TLS as for a SIP TLS listener (its certificate and key); Via WSS."""
    lc = ListenerConfig(Transport.WSS, LOOPBACK, 0, pki.cert, pki.key)
    handler = Handler()
    ep = SipEndpoint(SipConfig(listeners=(lc,)), handler)
    await ep.start()
    try:
        port = ep.listeners[0].local[1]
        ctx = ssl.create_default_context(cafile=str(pki.ca))
        url = f"https://localhost:{port}/"
        async with session.ws_connect(url, protocols=("sip",), ssl=ctx) as ws:
            await ws.send_str(register("tls1", via="SIP/2.0/WSS df7jal23ls0d.invalid"))
            resp = await receive_sip(ws)
            assert isinstance(resp, SipResponse) and resp.status == 200
        assert handler.seen[0].transport == "wss"
        wrong = ssl.create_default_context(cafile=str(pki.wrong_ca))
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.ws_connect(url, protocols=("sip",), ssl=wrong)
    finally:
        await ep.stop()


async def test_stop_closes_open_websockets_going_away(session: aiohttp.ClientSession) -> None:
    ep = SipEndpoint(SipConfig(listeners=(ListenerConfig(Transport.WS, LOOPBACK, 0),)), Handler())
    await ep.start()
    url = f"http://{LOOPBACK}:{ep.listeners[0].local[1]}/"
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        await until(lambda: len(ep.connections) == 1)
        stopping = asyncio.ensure_future(ep.stop())
        assert await closed_with(ws) == 1001
        await asyncio.wait_for(stopping, LIMIT)


async def test_non_utf8_body_travels_in_binary_frames_both_ways(
    ws_endpoint: Factory, session: aiohttp.ClientSession
) -> None:
    """RFC 7118 §4.2: a message with a non-UTF-8 octet goes in a binary message; we
    accept it, and send our own such messages as binary."""
    ep, handler, url = await ws_endpoint()
    body = "café crème".encode("latin-1")  # not UTF-8
    async with session.ws_connect(url, protocols=("sip",)) as ws:
        head = register("bin2").replace("Max-Forwards: 70\r\n", "").removesuffix("\r\n")
        head = head.replace("REGISTER sip:example.com", "MESSAGE sip:bob@example.com")
        head = head.replace("CSeq: 1 REGISTER", "CSeq: 1 MESSAGE")
        data = (
            head + "Content-Type: text/plain;charset=ISO-8859-1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        await ws.send_bytes(data)
        resp = await receive_sip(ws)
        assert isinstance(resp, SipResponse) and resp.status == 200
        assert handler.seen[0].request.body == body
        ip, port = handler.seen[0].source
        req = SipRequest(
            "MESSAGE",
            parse_uri("sip:r2d2@df7jal23ls0d.invalid;transport=ws"),
            Headers(
                [
                    ("From", "<sip:gw@example.com>;tag=g2"),
                    ("To", "<sip:alice@example.com>"),
                    ("Call-ID", "binary-out"),
                    ("CSeq", "1 MESSAGE"),
                    ("Content-Type", "text/plain;charset=ISO-8859-1"),
                ]
            ),
            body,
        )
        sending = asyncio.ensure_future(ep.request(req, Target("ws", ip, ip, port)))
        msg = await asyncio.wait_for(ws.receive(), LIMIT)
        assert msg.type is aiohttp.WSMsgType.BINARY
        got = parse_message(msg.data)
        assert isinstance(got, SipRequest) and got.body == body
        sending.cancel()


def test_oversized_frame_is_refused_from_its_header() -> None:
    """A frame header announcing 100 MB is answered with close 1009 before any of the
    payload is sent: nothing that large is ever buffered."""

    async def main() -> bytes:
        lc = ListenerConfig(Transport.WS, LOOPBACK, 0)
        ep = SipEndpoint(SipConfig(listeners=(lc,), max_message_size=MAX_SIZE), Handler())
        await ep.start()
        try:
            return await asyncio.to_thread(huge_frame, ep.listeners[0].local[1])
        finally:
            await ep.stop()

    close = asyncio.run(main())
    assert close[0] == 0x88  # FIN + close opcode
    assert int.from_bytes(close[2:4], "big") == 1009


def huge_frame(port: int) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=LIMIT) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        # text frame, masked, 64-bit length of 100 MB, mask key, a few payload bytes
        sock.sendall(b"\x81\xff" + (100 * 2**20).to_bytes(8, "big") + b"\x00\x00\x00\x00ABC")
        data = head.partition(b"\r\n\r\n")[2]
        while len(data) < 4:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data

"""Issue 20: `WsConnection`'s write queue is bounded. A client that stops reading makes
aiohttp's send wait; past `MAX_QUEUED` messages the connection is closed 1008 with a log
line and the write raises OSError (the endpoint's transport error: the transaction fails
instead of memory growing)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.config import ListenerConfig, Transport
from gateway.sip.transport.stream import ConnectionTable
from gateway.sip.transport.websocket import (
    CLOSE_SLOW_READER,
    MAX_QUEUED,
    WsConnection,
    WsListener,
)

pytestmark = pytest.mark.component


class StuckSocket:
    """The part of aiohttp's WebSocketResponse that WsConnection uses; sends never end."""

    def __init__(self) -> None:
        self.sent: list[str | bytes] = []
        self.closed_with: int | None = None
        self._never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def send_str(self, data: str) -> None:
        self.sent.append(data)
        await self._never

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)
        await self._never

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closed_with = code
        return True


def table() -> ConnectionTable:
    return ConnectionTable(
        on_frame=lambda c, d: None,
        on_framing_error=lambda c, e: None,
        max_message_size=65535,
        clock=lambda: 0.0,
    )


async def test_a_client_that_does_not_read_is_closed_1008(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "gateway.sip.transport.websocket")
    listener = WsListener(ListenerConfig(Transport.WS, "127.0.0.1", 0), table())
    sock = StuckSocket()
    ws: Any = sock
    conn = WsConnection(listener, ws, ("192.0.2.1", 40000), ("127.0.0.1", 8080), None)
    for i in range(MAX_QUEUED):
        conn.write(f"SIP/2.0 200 OK #{i}\r\n\r\n".encode())
    await asyncio.sleep(0)
    assert len(sock.sent) == 1  # the first send is stuck; the rest wait in the queue
    conn.write(b"fills the queue again")  # MAX_QUEUED waiting now
    with pytest.raises(OSError, match="send queue full"):
        conn.write(b"one too many")
    await conn.wait_closed()
    assert sock.closed_with == CLOSE_SLOW_READER == 1008
    assert conn.closed
    with pytest.raises(OSError, match="closed"):
        conn.write(b"after close")
    closed = [r for r in caplog.records if r.getMessage() == "websocket closed"]
    fields = [getattr(r, "fields", {}) for r in closed]
    assert [(f["code"], f["reason"]) for f in fields] == [(1008, "send queue full")]


async def test_binary_when_not_utf8() -> None:
    listener = WsListener(ListenerConfig(Transport.WS, "127.0.0.1", 0), table())
    sock = StuckSocket()
    ws: Any = sock
    conn = WsConnection(listener, ws, ("192.0.2.1", 40000), ("127.0.0.1", 8080), None)
    conn.write(b"\xff not utf-8")
    await asyncio.sleep(0)
    assert sock.sent == [b"\xff not utf-8"]
    assert conn.key == ("ws", "192.0.2.1", 40000)
    assert conn.listener_name == "ws:127.0.0.1:0"

"""A small slixmpp client for tests: log in to a loopback server, send, wait, query disco.

TLS is optional here: the test servers run without certificates, so SASL over a
plain stream is allowed (loopback only). If a server offers STARTTLS anyway, the
client takes it without verifying the certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import socket
import ssl
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, TypeVar

from slixmpp import JID, ClientXMPP
from slixmpp.stanza import Iq, Message, Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.harness import LOOPBACK

S = TypeVar("S", Message, Presence)
MessageType = Literal["chat", "error", "groupchat", "headline", "normal"]


class XmppClientError(RuntimeError):
    """Login failed or the stream closed before the session started."""


class XmppTestClient:
    """One logged-in client; collects every message and presence it receives."""

    def __init__(
        self,
        jid: str,
        password: str,
        *,
        port: int,
        host: str = LOOPBACK,
        resource: str = "test",
    ) -> None:
        self.jid = JID(jid if "/" in jid else f"{jid}/{resource}")
        self.host = host
        self.port = port
        self.xmpp = ClientXMPP(
            str(self.jid),
            password,
            plugin_config={
                "feature_mechanisms": {"unencrypted_plain": True, "unencrypted_scram": True}
            },
        )
        self.xmpp.enable_direct_tls = False
        self.xmpp.enable_starttls = True
        self.xmpp.enable_plaintext = True
        self.xmpp.ssl_context.check_hostname = False
        self.xmpp.ssl_context.verify_mode = ssl.CERT_NONE
        for plugin in ("xep_0030", "xep_0199"):
            self.xmpp.register_plugin(plugin)
        self.messages: list[Message] = []
        self.presences: list[Presence] = []
        self._taken: set[int] = set()  # ids of stanzas already returned by wait_*
        self._changed = asyncio.Event()
        self.xmpp.add_event_handler("message", self._on_stanza)
        self.xmpp.add_event_handler("presence", self._on_stanza)

    def _on_stanza(self, stanza: Message | Presence) -> None:
        if isinstance(stanza, Message):
            self.messages.append(stanza)
        else:
            self.presences.append(stanza)
        self._changed.set()

    async def connect(self, timeout: float = 10.0, *, send_presence: bool = True) -> None:
        """Connect, authenticate and bind; raise XmppClientError on failure."""
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[str] = loop.create_future()

        def settle(result: str) -> Callable[[Any], None]:
            def handler(_event: Any) -> None:
                if not outcome.done():
                    outcome.set_result(result)

            return handler

        handlers = {
            "session_start": settle("ok"),
            "failed_all_auth": settle("authentication failed"),
            "connection_failed": settle("connection failed"),
            "disconnected": settle("disconnected before session start"),
        }
        for event, handler in handlers.items():
            self.xmpp.add_event_handler(event, handler)
        try:
            self.xmpp.connect(self.host, self.port)
            try:
                result = await asyncio.wait_for(outcome, timeout)
            except TimeoutError:
                result = f"no session after {timeout}s"
        finally:
            for event, handler in handlers.items():
                self.xmpp.del_event_handler(event, handler)
        if result != "ok":
            self.xmpp.abort()
            raise XmppClientError(f"{self.jid} via {self.host}:{self.port}: {result}")
        if send_presence:
            self.xmpp.send_presence()

    async def disconnect(self, timeout: float = 5.0) -> None:
        """Close the stream politely, then drop the socket if that takes too long."""
        try:
            await asyncio.wait_for(self.xmpp.disconnect(wait=1.0), timeout)
        except TimeoutError:
            self.xmpp.abort()

    async def __aenter__(self) -> XmppTestClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # -- sending ---------------------------------------------------------------

    def send_message(self, to: str | JID, body: str, mtype: MessageType = "chat") -> Message:
        msg: Message = self.xmpp.make_message(mto=JID(to), mbody=body, mtype=mtype)
        msg.send()
        return msg

    def send_raw(self, xml: str) -> None:
        self.xmpp.send_raw(xml)

    async def disco_info(self, jid: str | JID, node: str | None = None, timeout: float = 5.0) -> Iq:
        result: Iq = await self.xmpp.plugin["xep_0030"].get_info(
            jid=JID(jid), node=node, timeout=timeout, local=False
        )
        return result

    async def disco_items(
        self, jid: str | JID, node: str | None = None, timeout: float = 5.0
    ) -> Iq:
        result: Iq = await self.xmpp.plugin["xep_0030"].get_items(
            jid=JID(jid), node=node, timeout=timeout, local=False
        )
        return result

    async def ping(self, jid: str | JID, timeout: float = 5.0) -> float:
        """XEP-0199 ping; the round-trip time in seconds."""
        rtt: float = await self.xmpp.plugin["xep_0199"].ping(jid=JID(jid), timeout=timeout)
        return rtt

    def see_all_messages(self) -> XmppTestClient:
        """Collect bodyless messages too (errors, chat states, receipts): slixmpp's
        ``message`` event, which this client listens to, needs a <body/>."""

        def collect(msg: Message) -> None:
            if msg.xml.find("{jabber:client}body") is None:
                self._on_stanza(msg)

        self.xmpp.register_handler(
            Callback("all-messages", MatchXPath("{jabber:client}message"), collect)
        )
        return self

    # -- waiting ---------------------------------------------------------------

    async def wait_message(
        self, predicate: Callable[[Message], bool] | None = None, timeout: float = 5.0
    ) -> Message:
        """The first not yet returned message matching `predicate` (any message if None)."""
        return await self._wait(self.messages, predicate, timeout, "message")

    async def wait_presence(
        self, predicate: Callable[[Presence], bool] | None = None, timeout: float = 5.0
    ) -> Presence:
        return await self._wait(self.presences, predicate, timeout, "presence")

    async def _wait(
        self, items: list[S], predicate: Callable[[S], bool] | None, timeout: float, what: str
    ) -> S:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for st in items:
                        if id(st) not in self._taken and (predicate is None or predicate(st)):
                            self._taken.add(id(st))
                            return st
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            seen = "\n".join(str(st) for st in items[-10:])
            raise TimeoutError(
                f"{self.jid}: no matching {what} within {timeout}s; last received:\n{seen}"
            ) from None


def component_handshake(
    port: int, domain: str, secret: str, *, host: str = LOOPBACK, timeout: float = 5.0
) -> str:
    """A raw XEP-0114 handshake (§3): the server's answer after <handshake/> is sent.

    Contains `<handshake/>` when the server accepted the secret, a stream error
    (`not-authorized`, `host-unknown`, ...) otherwise. Closes the stream after.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>".encode()
        )
        header = _recv_until(sock, lambda t: re.search(r"<stream:stream[^>]*>", t) is not None)
        sid = re.search(r"""\sid=['"]([^'"]+)['"]""", header)
        if sid is None:
            return header
        digest = hashlib.sha1((sid.group(1) + secret).encode()).hexdigest()
        sock.sendall(f"<handshake>{digest}</handshake>".encode())
        answer = _recv_until(sock, lambda t: "handshake" in t or "</stream:stream>" in t)
        with contextlib.suppress(OSError):
            sock.sendall(b"</stream:stream>")
        return answer


def _recv_until(sock: socket.socket, done: Callable[[str], bool]) -> str:
    data = b""
    while not done(data.decode(errors="replace")):
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")

"""`MsrpService`: TCP/TLS listeners, connections shared by sessions, the relay client.

One `MsrpService` per gateway. `new_session()` creates an `MsrpSession` with a fresh
session id (RFC 4975 §14.1: hard to guess; `random_id`, about 95 bits) and, with a relay,
the Use-Path the relay granted (RFC 4976 §5.1); its `local_path` is our SDP a=path.
`connect(remote_path, setup, fingerprints)` follows the negotiated role (RFC 6135 §4.2):
active opens (or reuses, §5.4: same scheme, host and port) a connection to the first hop
and writes a bodiless SEND at once; passive waits for the peer's first request (§5.4).
With a relay every session goes over the relay connection.

TLS (RFC 4975 §14.2, §14.4): our certificate's fingerprint is `MsrpService.fingerprint`
for the SDP. As the active end we check the peer's certificate against its SDP
fingerprints and close on a mismatch (`MsrpConnectError`). As the passive end, Python's
ssl module cannot ask for a client certificate without verifying it against a CA, so a
self-signed client certificate cannot be checked: the session binds on the secret
session id in the first request, as §5.4 allows without mutual authentication.

Incoming messages reach `on_message(IncomingMessage)`; `accept()` sends the success
REPORT when the sender asked for one (RFC 7573 §7 holds it until the XMPP receipt),
`reject(code)` a failure REPORT. `send_message` resolves to a `SendOutcome`.
Sessions end on `close()`, on connection loss (§5.4), or after `idle_timeout` seconds
without a message; `on_close(reason)` is called once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from gateway.config import MsrpConfig
from gateway.msrp import relay as relaylib
from gateway.msrp.chunks import Complete, random_id
from gateway.msrp.endpoint import (
    Answered,
    Bound,
    Connection,
    Delivered,
    EndpointEvent,
    Outcome,
    Session,
    Unmatched,
    Write,
)
from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.framing import MsrpFramer
from gateway.msrp.message import MsrpRequest, MsrpResponse
from gateway.msrp.serializer import serialize
from gateway.msrp.uri import MsrpUri, parse_uri
from gateway.sdp.msrp import Fingerprint, LocalMedia, fingerprint_of

__all__ = ["IncomingMessage", "MsrpConnectError", "MsrpService", "MsrpSession", "SendOutcome"]

log = logging.getLogger("gateway.msrp")
_READ = 65536


class MsrpConnectError(Exception):
    """The session's connection could not be made (refused, timeout, TLS or fingerprint
    mismatch, relay AUTH refused)."""


@dataclass(frozen=True)
class SendOutcome:
    """What became of a message we sent: `code` 200 delivered (a success REPORT covered
    it; `reported` False when every chunk was acknowledged but no REPORT came within
    `report_timeout`), else the failure (a response or failure REPORT code, 408 timeout,
    481 session ended); for RFC 7573 §7/§8 receipt and error mapping."""

    message_id: str
    code: int
    comment: str | None = None
    reported: bool = True  # False: acknowledged hop by hop, no success REPORT in time

    @property
    def ok(self) -> bool:
        return self.code == 200


class IncomingMessage:
    """A whole message received in a session; answer it later with `accept`/`reject`."""

    def __init__(self, session: MsrpSession, message: Complete) -> None:
        self.session = session
        self.message_id = message.message_id
        self.content_type = message.content_type or "text/plain"
        self.body = message.body
        self._message = message
        self._answered = False

    @property
    def wants_success_report(self) -> bool:
        return self._message.last.success_report

    def accept(self) -> None:
        """Send the success REPORT if the sender asked for one (RFC 4975 §7.1.3)."""
        if not self._answered:
            self._answered = True
            self.session._write_report(self.session._core.success_report(self._message))

    def reject(self, code: int = 500) -> None:
        """Send a failure REPORT (RFC 4975 §7.1.4; RFC 7573 §8 maps XMPP errors here)."""
        if not self._answered:
            self._answered = True
            self.session._write_report(self.session._core.failure_report(self._message, code))


class _Conn:
    """One transport connection: a reader task over the pure `Connection`."""

    def __init__(
        self,
        service: MsrpService,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        key: tuple[object, ...] | None,
    ) -> None:
        self.service = service
        self.reader = reader
        self.writer = writer
        self.key = key  # outbound reuse key (§5.4), None for accepted connections
        cfg = service.config
        framer = MsrpFramer(max_chunk_size=cfg.max_chunk_size, partial_timeout=cfg.partial_timeout)
        self.core = Connection(self, service._sessions, framer)
        self.closed = False
        self.opened = service._clock()
        self.waiters: dict[str, asyncio.Future[MsrpResponse]] = {}  # relay AUTH responses
        self.der: bytes | None = None  # the peer's certificate (outbound msrps)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.writer.write(data)

    async def _run(self) -> None:
        reason = "closed by peer"
        try:
            while not self.closed:
                data = await self.reader.read(_READ)
                if not data:
                    break
                self._feed(data)
                if self.core.fatal is not None:
                    reason = f"fatal: {self.core.fatal.message}"
                    log.info("msrp connection closed: %s", self.core.fatal.message)
                    break
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    await self.writer.drain()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            reason = f"connection error: {exc}"
        finally:
            self.service._lost(self, reason)

    def _feed(self, data: bytes) -> None:
        for event in self.core.feed(data, self.service._clock()):
            if isinstance(event, Write):
                self.write(event.data)
            elif isinstance(event, Answered):  # an AUTH answer (RFC 4976 §5.1)
                waiter = self.waiters.pop(event.response.transaction_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(event.response)
            elif isinstance(event, Bound):
                session = self.service._by_core.get(id(event.session))
                if session is not None:
                    session._bound_by_peer(self)
            else:
                self.service._event(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()
            if self.task is not None and self.task is not asyncio.current_task():
                self.task.cancel()


class MsrpSession:
    """One MSRP session; see the module docstring. Build with `MsrpService.new_session`."""

    def __init__(
        self,
        service: MsrpService,
        core: Session,
        tls: bool,
        on_message: Callable[[IncomingMessage], None],
        on_close: Callable[[str], None] | None,
    ) -> None:
        self.service = service
        self._core = core
        self.tls = tls
        self.on_message = on_message
        self.on_close = on_close
        self._conn: _Conn | None = None
        self._pending: dict[str, asyncio.Future[SendOutcome]] = {}
        self._bound = asyncio.Event()
        self.last_activity = service._clock()
        self.closed = False
        self.close_reason: str | None = None

    @property
    def local_path(self) -> tuple[MsrpUri, ...]:
        """Our SDP a=path (RFC 4975 §8.1; relay URIs first, RFC 4976 §5.1)."""
        return self._core.local_path

    @property
    def local_uri(self) -> MsrpUri:
        return self._core.local

    @property
    def remote_path(self) -> tuple[MsrpUri, ...]:
        return self._core.remote_path

    def local_media(self, **overrides: Any) -> LocalMedia:
        """Our side for gateway.sdp.msrp (`make_offer`, `answer_offer`): this session's
        path, the service's host, TLS with our certificate's fingerprint, and a=max-size;
        `overrides` replace LocalMedia fields (accept_types, prefer_active, version...)."""
        fields: dict[str, Any] = {
            "path": self.local_path,
            "address": self.service.host,
            "tls": self.tls,
            "fingerprint": self.service.fingerprint if self.tls else None,
            "max_size": self.service.config.max_message_size,
        }
        fields.update(overrides)
        return LocalMedia(**fields)

    @property
    def connected(self) -> bool:
        return self._bound.is_set() and not self.closed

    async def connect(
        self,
        remote_path: Sequence[MsrpUri],
        setup: Literal["active", "passive"],
        fingerprints: Sequence[Fingerprint] = (),
    ) -> None:
        """Use the negotiated path and role (gateway.sdp.msrp.Negotiated). Active: open or
        reuse the connection and bind it with a bodiless SEND (§5.4); passive: return at
        once, the peer's first request binds. MsrpConnectError on failure."""
        if self.closed:
            raise MsrpConnectError("session closed")
        self._core.remote_path = tuple(remote_path)
        via_relay = len(self._core.local_path) > 1
        if via_relay:
            conn = self.service._relay_conn
            if conn is None or conn.closed:
                raise MsrpConnectError("relay connection lost")
            self._bind(conn)
            if setup == "active":
                conn.write(self._core.bodiless_send())
            return
        if setup == "passive":
            return
        conn = await self.service._outbound(remote_path[0], tuple(fingerprints))
        self._bind(conn)
        conn.write(self._core.bodiless_send())

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until a connection is bound (passive: the peer's first request)."""
        limit = self.service.config.connect_timeout if timeout is None else timeout
        try:
            await asyncio.wait_for(self._bound.wait(), limit)
        except TimeoutError:
            raise MsrpConnectError("no connection from the peer in time") from None
        if self.closed:
            raise MsrpConnectError(self.close_reason or "session closed")

    async def send_message(self, content_type: str, body: bytes) -> SendOutcome:
        """Send one message (chunked) and wait for its fate (see `SendOutcome`)."""
        if self.closed:
            return SendOutcome("", 481, "session ended")
        if not self._bound.is_set():
            try:
                await self.wait_connected()
            except MsrpConnectError as exc:
                return SendOutcome("", 481 if self.closed else 408, str(exc))
        conn = self._conn
        if conn is None or self.closed:
            return SendOutcome("", 481, self.close_reason or "session ended")
        self.last_activity = self.service._clock()
        mid, chunks = self._core.send(content_type, body, self.service._clock())
        future: asyncio.Future[SendOutcome] = asyncio.get_running_loop().create_future()
        self._pending[mid] = future
        for chunk in chunks:
            conn.write(chunk)
            if conn.writer.transport.get_write_buffer_size() > 1 << 18:
                with contextlib.suppress(ConnectionError):
                    await conn.writer.drain()
        self.service._arm()
        return await future

    def close(self, reason: str = "closed") -> None:
        """End the session: messages in flight fail (481), `on_close` runs once."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._bound.set()
        self.service._drop(self)
        for event in self._core.close():
            self._outcome(event)
        conn = self._conn
        if conn is not None:
            conn.core.unbind(self._core)
            if not conn.core.bound and conn is not self.service._relay_conn:
                conn.close()
        if self.on_close is not None:
            try:
                self.on_close(reason)
            except Exception:
                log.exception("msrp on_close failed")

    # -- glue -------------------------------------------------------------------------

    def _bind(self, conn: _Conn) -> None:
        self._conn = conn
        conn.core.bind(self._core)
        self._bound.set()

    def _bound_by_peer(self, conn: _Conn) -> None:
        self._conn = conn
        self._bound.set()

    def _write_report(self, data: bytes | None) -> None:
        if data is not None and self._conn is not None and not self.closed:
            self._conn.write(data)

    def _outcome(self, event: Outcome) -> None:
        future = self._pending.pop(event.message_id, None)
        if future is not None and not future.done():
            future.set_result(
                SendOutcome(event.message_id, event.code, event.comment, event.reported)
            )


class MsrpService:
    """Listeners and connections for every MSRP session of the gateway."""

    def __init__(self, config: MsrpConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._sessions: dict[MsrpUri, Session] = {}
        self._by_core: dict[int, MsrpSession] = {}
        self._conns: set[_Conn] = set()
        self._outbound_conns: dict[tuple[object, ...], _Conn] = {}
        self._servers: list[asyncio.Server] = []
        self._relay_conn: _Conn | None = None
        self._relay_lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.host = config.host or config.address
        self.port = config.port
        self.tls_port = config.tls_port
        self.fingerprint: Fingerprint | None = None
        self._server_ctx: ssl.SSLContext | None = None
        self._client_ctx: ssl.SSLContext | None = None
        self.unmatched = 0  # requests refused 481/506/403 (§7.3), for metrics and tests

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        if cfg.certificate is not None and cfg.private_key is not None:
            self._server_ctx, self._client_ctx = _contexts(cfg.certificate, cfg.private_key)
            self.fingerprint = fingerprint_of(_der(cfg.certificate))
        server = await asyncio.start_server(self._accept, cfg.address, cfg.port, limit=_READ)
        self.port = server.sockets[0].getsockname()[1]
        self._servers.append(server)
        if cfg.tls_port is not None and self._server_ctx is not None:
            tls = await asyncio.start_server(
                self._accept, cfg.address, cfg.tls_port, ssl=self._server_ctx, limit=_READ
            )
            self.tls_port = tls.sockets[0].getsockname()[1]
            self._servers.append(tls)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def stop(self) -> None:
        for session in list(self._by_core.values()):
            session.close("gateway stopping")
        for server in self._servers:
            server.close()
        for conn in list(self._conns):
            conn.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def new_session(
        self,
        on_message: Callable[[IncomingMessage], None],
        on_close: Callable[[str], None] | None = None,
        *,
        tls: bool = False,
    ) -> MsrpSession:
        """A session with a fresh URI (msrps when `tls`); via the relay when configured,
        then `tls` follows the relay URI's scheme."""
        cfg = self.config
        if len(self._sessions) >= cfg.max_sessions:
            raise MsrpConnectError(f"more than {cfg.max_sessions} MSRP sessions")
        if cfg.relay is not None:
            tls = parse_uri(cfg.relay).secure  # the path's schemes agree (RFC 4975 §6)
        elif tls and self.tls_port is None:
            raise MsrpConnectError("no MSRP TLS listener configured")
        port = self.tls_port if tls and self.tls_port is not None else self.port
        local = MsrpUri.make(self.host, port, random_id(20), scheme="msrps" if tls else "msrp")
        path: tuple[MsrpUri, ...] = (local,)
        if cfg.relay is not None:
            granted = await self._relay_auth(local)
            path = (*reversed(granted.use_path), local)
        core = Session(
            path,
            max_message_size=cfg.max_message_size,
            chunk_size=cfg.chunk_size,
            transaction_timeout=cfg.transaction_timeout,
            report_timeout=cfg.report_timeout,
        )
        session = MsrpSession(self, core, tls, on_message, on_close)
        self._sessions[local] = core
        self._by_core[id(core)] = session
        return session

    # -- connections ------------------------------------------------------------------

    def _admit(self) -> bool:
        return len(self._conns) < self.config.max_connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            writer.close()
            return
        conn = _Conn(self, reader, writer, None)
        self._conns.add(conn)
        conn.start()
        self._arm()

    async def _outbound(self, hop: MsrpUri, fingerprints: tuple[Fingerprint, ...]) -> _Conn:
        """A connection to `hop`, reused when one to the same scheme, host and port is
        open (§5.4). msrps: with `fingerprints` (peer to peer, §14.4) the certificate must
        match one; without (the peer's path starts at its relay) it is verified by CA and
        name (RFC 4976 §9.2, `relay_ca`)."""
        key = hop.key()[:3]
        conn = self._outbound_conns.get(key)
        if conn is not None and not conn.closed:
            if hop.secure and fingerprints and not _matches(conn.der, fingerprints):
                raise MsrpConnectError(f"{hop}: certificate does not match a=fingerprint")
            return conn
        if not self._admit():
            raise MsrpConnectError("too many MSRP connections")
        if hop.port is None:
            raise MsrpConnectError(f"no port in {hop}")  # §6.2 lookup is not supported
        ctx: ssl.SSLContext | None = None
        host = hop.host[1:-1] if hop.host.startswith("[") else hop.host
        if hop.secure and fingerprints:
            if self._client_ctx is None:
                raise MsrpConnectError("msrps peer but no TLS certificate configured")
            ctx = self._client_ctx
        elif hop.secure:
            ctx = self._verifying_context()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, hop.port, ssl=ctx, limit=_READ,
                    server_hostname=host if ctx is not None else None,
                ),
                self.config.connect_timeout,
            )  # fmt: skip
        except (OSError, TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
            raise MsrpConnectError(f"cannot connect to {hop}: {exc}") from None
        der = None
        if hop.secure:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            if fingerprints and not _matches(der, fingerprints):
                writer.close()
                log.warning("msrp peer %s: certificate does not match a=fingerprint", hop)
                raise MsrpConnectError(f"{hop}: certificate does not match a=fingerprint")
        conn = _Conn(self, reader, writer, key)
        conn.der = der
        self._conns.add(conn)
        self._outbound_conns[key] = conn
        conn.start()
        return conn

    def _verifying_context(self) -> ssl.SSLContext:
        """CA and host name verification (relays, RFC 4976 §9.2), our certificate offered."""
        cfg = self.config
        ctx = ssl.create_default_context(cafile=None if cfg.relay_ca is None else str(cfg.relay_ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.certificate is not None and cfg.private_key is not None:
            ctx.load_cert_chain(str(cfg.certificate), str(cfg.private_key))
        if not cfg.relay_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _lost(self, conn: _Conn, reason: str) -> None:
        conn.close()
        self._conns.discard(conn)
        if conn.key is not None and self._outbound_conns.get(conn.key) is conn:
            del self._outbound_conns[conn.key]
        if conn is self._relay_conn:
            self._relay_conn = None
        for core in list(conn.core.bound.values()):
            session = self._by_core.get(id(core))
            if session is not None:
                session.close(f"connection lost ({reason})")  # §5.4
        for waiter in conn.waiters.values():
            if not waiter.done():
                waiter.set_exception(MsrpConnectError(reason))

    # -- relay (RFC 4976 §5.1) ---------------------------------------------------------

    async def _relay_auth(self, local: MsrpUri) -> relaylib.Granted:
        cfg = self.config
        assert cfg.relay is not None
        relay = parse_uri(cfg.relay)
        async with self._relay_lock:  # AUTH is not pipelined (§9.1)
            conn = self._relay_conn
            if conn is None or conn.closed:
                conn = self._relay_conn = await self._open_relay(relay)
            request = relaylib.auth_request(relay, local)
            answer = await self._auth_round(conn, request)
            if answer.code == 401 and cfg.relay_username and cfg.relay_password:
                try:
                    challenge = relaylib.parse_challenge(answer)
                except RemoteProtocolError as exc:
                    raise MsrpConnectError(f"relay challenge: {exc.message}") from None
                value = relaylib.authorization(
                    challenge, username=cfg.relay_username, password=cfg.relay_password,
                    uri=relay,
                )  # fmt: skip
                request = relaylib.auth_request(relay, local, authorization=value)
                answer = await self._auth_round(conn, request)
            try:
                return relaylib.granted(answer)
            except RemoteProtocolError as exc:
                raise MsrpConnectError(f"relay refused AUTH: {exc.message}") from None

    async def _open_relay(self, relay: MsrpUri) -> _Conn:
        cfg = self.config
        ctx = self._verifying_context() if relay.secure else None
        host = relay.host[1:-1] if relay.host.startswith("[") else relay.host
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, relay.port or 2855, ssl=ctx, limit=_READ,
                    server_hostname=host if ctx is not None else None,
                ),
                cfg.connect_timeout,
            )  # fmt: skip
        except (OSError, TimeoutError, ssl.SSLError, ssl.CertificateError) as exc:
            raise MsrpConnectError(f"cannot connect to relay {relay}: {exc}") from None
        conn = _Conn(self, reader, writer, None)
        self._conns.add(conn)
        conn.start()
        return conn

    async def _auth_round(self, conn: _Conn, request: MsrpRequest) -> MsrpResponse:
        future: asyncio.Future[MsrpResponse] = asyncio.get_running_loop().create_future()
        conn.waiters[request.transaction_id] = future
        conn.write(serialize(request))
        try:
            return await asyncio.wait_for(future, self.config.connect_timeout)
        except TimeoutError:
            raise MsrpConnectError("relay did not answer AUTH in time") from None
        finally:
            conn.waiters.pop(request.transaction_id, None)

    # -- events and timers ------------------------------------------------------------

    def _event(self, event: EndpointEvent) -> None:
        if isinstance(event, Delivered):
            session = self._by_core.get(id(event.session))
            if session is not None:
                session.last_activity = self._clock()
                try:
                    session.on_message(IncomingMessage(session, event.message))
                except Exception:
                    log.exception("msrp on_message failed")
        elif isinstance(event, Outcome):
            session = self._by_core.get(id(event.session))
            if session is not None:
                session._outcome(event)
        elif isinstance(event, Unmatched):
            self.unmatched += 1
            log.info("msrp request refused %d (%s): To-Path %s", event.status, event.reason,
                     event.to_path[:200])  # fmt: skip

    def _drop(self, session: MsrpSession) -> None:
        self._sessions.pop(session.local_uri, None)
        self._by_core.pop(id(session._core), None)

    def _arm(self) -> None:
        self._wake.set()

    async def _tick(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            self._expire(self._clock())

    def _expire(self, now: float) -> None:
        cfg = self.config
        for conn in list(self._conns):
            conn.core.expire(now)
            if conn.core.fatal is not None:
                log.info("msrp connection closed: %s", conn.core.fatal.message)
                self._lost(conn, conn.core.fatal.message)
            elif (
                not conn.core.bound
                and conn.key is None
                and conn is not self._relay_conn
                and now - conn.opened > cfg.connect_timeout
            ):
                self._lost(conn, "no session bound in time")
        for session in list(self._by_core.values()):
            core = session._core
            deadline = core.deadline
            if deadline is not None and now >= deadline:
                for event in core.expire(now):
                    if isinstance(event, Write):
                        session._write_report(event.data)
                    else:
                        self._event(event)
            if now - session.last_activity > cfg.idle_timeout:
                session.close("idle timeout")


def _matches(der: bytes | None, fingerprints: Sequence[Fingerprint]) -> bool:
    return der is not None and any(f.matches(der) for f in fingerprints)


def _der(certificate: Path) -> bytes:
    pem = certificate.read_text(encoding="ascii")
    return ssl.PEM_cert_to_DER_cert(pem[pem.index("-----BEGIN CERTIFICATE-----") :])


def _contexts(cert: Path, key: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client contexts for peer-to-peer TLS (§14.4): certificates are checked
    by SDP fingerprint, not by CA, so neither context verifies a chain."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_2
    server.load_cert_chain(str(cert), str(key))
    server.verify_mode = ssl.CERT_NONE
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_2
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    client.load_cert_chain(str(cert), str(key))
    return server, client

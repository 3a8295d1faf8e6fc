"""Supervision of the XEP-0114 links: one component per domain, each kept connected.

Per domain a supervisor task connects, waits for the handshake, keeps the link alive with
XEP-0199 pings, and on loss reconnects after a delay chosen by `reconnect_delay` (a pure
function): exponential backoff between reconnect_min and reconnect_max with full jitter;
`not-authorized` (wrong secret) waits auth_failure_retry; `conflict` (the domain is already
connected elsewhere) retries slowly.

Sending:

* `send_confirmed(domain, stanza)` returns once the server has processed the stanza: the
  component stream is ordered, so a ping written after the stanza and answered (result or
  error, either proves the server read everything before it) confirms it. If the link is
  down, or drops or times out before the answer, it raises `LinkDown` -- nothing is queued
  behind the caller's back, so the SIP side can answer 503 with Retry-After
  (`retry_after(domain)`). It never returns for a stanza that was not written: a stanza
  that cannot be serialized or encoded raises `StanzaRefused` at once (the rest of its
  batch is unaffected); no transport, a closing transport (asyncio drops such writes
  silently), a write that raises, or the connection lost before the answer (the
  "disconnected" event fails every waiter at once) raise `LinkDown`.
* Batching (issue 11): stanzas (a slixmpp stanza or already serialized text) written in one
  loop turn go out in ONE transport write, followed by the confirmation ping of everything
  written since the previous ping. At most one ping is in flight: stanzas written meanwhile
  are sent at once but wait for the next ping, sent when the current one is answered, so
  under load one round trip confirms a whole batch. The pings bypass slixmpp's per-IQ
  callbacks: an "in" filter answers our own ping and consumes its answer by id.
* `send(domain, stanza)` is fire and forget; while the link is down stanzas wait in a bounded
  queue flushed on reconnection; overflow (and what is left at stop) goes to the
  `on_undeliverable` callback so the originator can be told.

The ping goes from the component domain to itself: the server routes it back to us (we
answer it with the xep_0199 plugin), so no server domain needs configuring and the round trip
proves the server routed everything written before it. Several instances connected as one
domain (ejabberd's domain_balancing, docs/cluster.md) would get each other's pings and
answers: each then names a `confirm_domain` of its own (a host of its own listener, routed
to its connection only); its pings go from and to that domain, and the `get` arriving back
confirms (nobody needs to answer it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from slixmpp.xmlstream import tostring

from gateway.config import ComponentConfig, XmppConfig
from gateway.xmpp.component import GatewayComponent
from gateway.xmpp.disco import NO_OPTIONAL_FEATURES, ContactFeatures, Features, PromptTranslator
from gateway.xmpp.fastwrite import escape_attr
from mappings.avatar import Avatars
from mappings.vcard import DisplayNames, LinkedAccounts

log = logging.getLogger(__name__)


class LinkDown(Exception):
    """The component link for `domain` cannot take the stanza now.

    `in_doubt`: the stanza had been written and the link failed before the server's answer
    to the ping behind it came back, so the server may have routed it (no XEP-0198 on a
    XEP-0114 stream: nobody can know); False when it was never written."""

    def __init__(
        self, domain: str, reason: str, retry_after: int, *, in_doubt: bool = False
    ) -> None:
        super().__init__(f"XMPP link for {domain} is down: {reason}")
        self.domain = domain
        self.reason = reason
        self.retry_after = retry_after
        self.in_doubt = in_doubt


class StanzaRefused(Exception):
    """The stanza cannot be written at all (serialization or UTF-8 encoding failed): a bug
    or bad input, not the link; nothing was written."""


class LinkState(StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    UP = "up"
    WAITING = "waiting"  # backoff before the next attempt


class DownKind(StrEnum):
    """Why a connection attempt or a session ended; selects the retry delay."""

    UNREACHABLE = "unreachable"  # TCP connect failed
    HANDSHAKE_TIMEOUT = "handshake-timeout"
    NOT_AUTHORIZED = "not-authorized"  # wrong secret (XEP-0114 §3.1)
    CONFLICT = "conflict"  # the domain is already connected
    STREAM_ERROR = "stream-error"  # any other <stream:error/>
    DEAD = "dead"  # no answer to a ping within dead_link_timeout
    CLOSED = "closed"  # the server closed the stream or TCP connection


def reconnect_delay(kind: DownKind, failures: int, cfg: XmppConfig, rand: float) -> float:
    """Seconds to wait before the next attempt; `rand` is uniform in [0, 1).

    `failures` counts attempts in a row that did not reach the up state (1 after the first).
    Full jitter (the delay is uniform in [min, cap]) spreads the reconnections of several
    gateways after a server restart.
    """
    if kind is DownKind.NOT_AUTHORIZED:
        return cfg.auth_failure_retry
    if kind is DownKind.CONFLICT:
        return cfg.reconnect_max * (0.5 + rand / 2)
    cap = min(cfg.reconnect_max, cfg.reconnect_min * 2.0 ** max(failures, 1))
    return cfg.reconnect_min + rand * max(0.0, cap - cfg.reconnect_min)


def down_kind(stream_error: tuple[str, str] | None) -> DownKind:
    """Classify the end of a stream by the <stream:error/> condition received, if any."""
    if stream_error is None:
        return DownKind.CLOSED
    return {
        "not-authorized": DownKind.NOT_AUTHORIZED,
        "conflict": DownKind.CONFLICT,
    }.get(stream_error[0], DownKind.STREAM_ERROR)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@dataclass(frozen=True)
class LinkStatus:
    """One link as the admin API shows it."""

    domain: str
    state: LinkState
    since: float  # wall-clock time of the last state change
    last_error: str | None
    failures: int
    retry_in: float | None  # seconds until the next attempt, while waiting
    queued: int  # fire-and-forget stanzas waiting for the link
    server: str  # where the link connects: [xmpp] server
    port: int  # and the component's own port, else [xmpp] port


LinkCallback = Callable[[str], Any]
DownCallback = Callable[[str, str], Any]
UndeliverableCallback = Callable[[str, Any, str], Any]


@dataclass(frozen=True)
class Callbacks:
    on_up: LinkCallback | None = None
    on_down: DownCallback | None = None
    on_undeliverable: UndeliverableCallback | None = None


def _call(cb: Callable[..., Any] | None, *args: Any) -> None:
    """Run a callback; its failure is logged, never propagated into link supervision."""
    if cb is None:
        return
    try:
        result = cb(*args)
        if asyncio.iscoroutine(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(_log_task_error)
    except Exception:
        log.exception("link callback %r failed", cb)


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("link callback failed", exc_info=task.exception())


class Link:
    """One domain: its component, its supervisor task, its confirmation pings."""

    def __init__(
        self,
        cfg: XmppConfig,
        component: GatewayComponent,
        callbacks: Callbacks,
        rng: Callable[[], float] = random.random,
        *,
        port: int | None = None,
        confirm_domain: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.port = cfg.port if port is None else port  # this domain's component port
        self.domain: str = component.domain
        self._confirm = confirm_domain or self.domain  # where our pings go (module doc)
        self.component = component
        self.callbacks = callbacks
        self._rng = rng
        self.state = LinkState.STOPPED
        self.since = time.time()
        self.last_error: str | None = None
        self.failures = 0
        self._next_attempt: float | None = None  # loop time
        self._queue: deque[Any] = deque()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._open_barrier: asyncio.Future[None] | None = None
        self._out: list[tuple[bytes, bool]] = []  # (encoded stanza, confirmed) this turn
        self._flush_handle: asyncio.Handle | None = None
        self._pings: dict[str, tuple[asyncio.Future[None], asyncio.TimerHandle]] = {}
        self._ping_prefix = f"cpim-ping-{secrets.token_hex(4)}-"
        self._ping_ids = itertools.count(1)
        self._domain_attr = escape_attr(self._confirm)
        self._conn_error: str | None = None
        self._dead = False
        component.add_event_handler("session_start", lambda _e: self._up.set())
        component.add_event_handler("disconnected", self._on_disconnected)
        component.add_event_handler("connection_failed", self._on_connection_failed)
        component.add_filter("in", self._on_ping_stanza, order=0)

    # -- public -------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def is_up(self) -> bool:
        return self.state is LinkState.UP

    def retry_after(self) -> int:
        """Whole seconds a SIP client should wait (Retry-After, RFC 3261 §20.33); 0 if up."""
        if self.state is LinkState.UP:
            return 0
        if self.state is LinkState.WAITING and self._next_attempt is not None:
            remaining = self._next_attempt - asyncio.get_running_loop().time()
            return max(1, math.ceil(remaining + self.cfg.reconnect_min))
        if self.state is LinkState.CONNECTING:
            return max(1, math.ceil(self.cfg.reconnect_min))
        return max(1, math.ceil(self.cfg.reconnect_max))

    def status(self) -> LinkStatus:
        retry_in = None
        if self.state is LinkState.WAITING and self._next_attempt is not None:
            retry_in = max(0.0, self._next_attempt - asyncio.get_running_loop().time())
        return LinkStatus(
            self.domain,
            self.state,
            self.since,
            self.last_error,
            self.failures,
            retry_in,
            len(self._queue),
            self.cfg.server,
            self.port,
        )

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._supervise(), name=f"xmpp-link-{self.domain}")

    async def stop(self, wait: float = 2.0) -> None:
        self._stopping = True
        if self.component.transport is not None:
            self._down.clear()
            self.component.disconnect(wait=wait, reason="gateway stopping")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._down.wait(), wait + 1.0)
            if not self._down.is_set():
                self.component.abort()
        self.component.cancel_connection_attempt()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._fail_barriers("gateway stopping")
        while self._queue:
            _call(self.callbacks.on_undeliverable, self.domain, self._queue.popleft(), "stopped")
        self._set_state(LinkState.STOPPED)

    def send(self, stanza: Any) -> bool:
        """Write now if up, else queue (bounded). False when the stanza was refused."""
        if self.is_up:
            self._write(stanza, confirmed=False)
            return True
        if len(self._queue) >= self.cfg.send_queue_limit:
            log.warning(
                "xmpp link %s down and its send queue is full (%d): stanza refused",
                self.domain,
                self.cfg.send_queue_limit,
            )
            _call(self.callbacks.on_undeliverable, self.domain, stanza, "queue full")
            return False
        self._queue.append(stanza)
        return True

    def backlog(self) -> int:
        """Bytes written to this link and not yet handed to the kernel (the transport's
        write buffer and this turn's batch): what the server has not started reading.
        Overload control reads it (issue 27)."""
        transport = self.component.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return int(buffered) + sum(len(data) for data, _ in self._out)

    async def send_confirmed(self, stanza: Any, timeout: float | None = None) -> None:
        """Write `stanza` (a slixmpp stanza or serialized text) and wait for the ping that
        follows it to be answered."""
        if not self.is_up or not self._writable():
            raise LinkDown(self.domain, self.last_error or str(self.state), self.retry_after())
        self._write(stanza, confirmed=True)
        barrier = self._barrier()
        try:
            await asyncio.wait_for(asyncio.shield(barrier), timeout or self.cfg.dead_link_timeout)
        except TimeoutError:
            raise LinkDown(
                self.domain, "no confirmation from the server", 0, in_doubt=True
            ) from None

    async def ping(self) -> None:
        """Round trip through the server (raises LinkDown when it fails)."""
        if not self.is_up:
            raise LinkDown(self.domain, str(self.state), self.retry_after())
        await asyncio.shield(self._barrier())

    # -- batched writes and confirmation pings ----------------------------------------------

    def _encode(self, stanza: Any) -> bytes:
        """UTF-8 of the stanza; StanzaRefused if it cannot be serialized or encoded."""
        try:
            if isinstance(stanza, bytes):
                data = stanza
            elif isinstance(stanza, str):
                data = stanza.encode()
            else:
                comp = self.component
                xml = tostring(stanza.xml, xmlns=comp.default_ns, stream=comp, top_level=True)
                data = xml.encode()
        except Exception as exc:
            raise StanzaRefused(f"stanza not serializable: {exc!r}") from exc
        if not data.strip():  # e.g. slixmpp's tostring(None) is "": nothing to confirm
            raise StanzaRefused("stanza serialized to nothing")
        return data

    def _writable(self) -> bool:
        transport = self.component.transport
        return transport is not None and not transport.is_closing()

    def _write(self, stanza: Any, *, confirmed: bool) -> None:
        """Buffer one stanza for this loop turn's single write (encoded now, so that a bad
        stanza fails its own caller, not the batch it would have joined)."""
        self._out.append((self._encode(stanza), confirmed))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_out)

    def _barrier(self) -> asyncio.Future[None]:
        """The future of the next ping: it confirms everything written before it is sent."""
        if self._open_barrier is None:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._open_barrier = fut
            self._schedule_flush()
        return self._open_barrier

    def _flush_out(self) -> None:
        """One write: the buffered stanzas, then a ping for the open barrier unless a ping
        is already in flight (its answer triggers the next flush)."""
        self._flush_handle = None
        out, self._out = self._out, []
        fut = self._open_barrier
        ping = fut is not None and not self._pings
        if not out and not ping:
            return
        if not self.is_up or not self._writable():  # asyncio drops writes once closing
            self._requeue(out)
            self._fail_open("link lost")
            return
        parts = [data for data, _ in out]
        if ping:
            assert fut is not None
            self._open_barrier = None
            if fut.done():  # every waiter gave up: nothing to confirm
                ping = False
            else:
                ping_id = f"{self._ping_prefix}{next(self._ping_ids)}"
                parts.append(self._ping_xml(ping_id).encode())
                timer = asyncio.get_running_loop().call_later(
                    self.cfg.dead_link_timeout, self._ping_timeout, ping_id
                )
                self._pings[ping_id] = (fut, timer)
        if not parts:
            return
        try:
            self.component.send_raw(b"".join(parts))
        except Exception as exc:  # NotConnectedError, a closing transport
            log.debug("xmpp link %s: write failed: %s", self.domain, exc)
            self._fail_barriers("link lost")

    def _ping_xml(self, ping_id: str) -> str:
        # From the component domain to itself: the server routes it back to us (module doc).
        d = self._domain_attr
        ping = '<ping xmlns="urn:xmpp:ping"/>'
        return f'<iq type="get" id="{ping_id}" from="{d}" to="{d}">{ping}</iq>'

    def _on_ping_stanza(self, stanza: Any) -> Any:
        """ "in" filter: answer our own ping, resolve its answer; anything else passes."""
        xml = stanza.xml
        ping_id = xml.get("id")
        if not ping_id or not ping_id.startswith(self._ping_prefix):
            return stanza
        if xml.get("from") != self._confirm or not xml.tag.endswith("}iq"):
            return stanza
        itype = xml.get("type")
        if itype == "get" and self._confirm != self.domain:
            self._ping_answered(ping_id)  # routed to our connection only: it confirms
        elif itype == "get":
            d = self._domain_attr
            answer = f'<iq type="result" id="{ping_id}" from="{d}" to="{d}"/>'
            self._out.append((answer.encode(), False))
            self._schedule_flush()
        elif itype in ("result", "error"):  # either proves the server read what came before
            self._ping_answered(ping_id)
        return None

    def _ping_answered(self, ping_id: str) -> None:
        entry = self._pings.pop(ping_id, None)
        if entry is None:
            return
        fut, timer = entry
        timer.cancel()
        if not fut.done():
            fut.set_result(None)
        if self._open_barrier is not None:
            self._schedule_flush()  # the next batch's ping

    def _ping_timeout(self, ping_id: str) -> None:
        entry = self._pings.pop(ping_id, None)
        if entry is None:
            return
        log.warning(
            "xmpp link %s: no answer to ping within %.0f s, link dead",
            self.domain,
            self.cfg.dead_link_timeout,
        )
        fut, _ = entry
        if not fut.done():
            fut.set_exception(LinkDown(self.domain, "ping timeout", 0, in_doubt=True))
            fut.exception()  # mark retrieved: nobody may be waiting any more
        self.last_error = "no answer to ping"
        self._dead = True
        self.component.abort()

    def _requeue(self, out: list[tuple[bytes, bool]]) -> None:
        """Fire-and-forget stanzas not written before the link went down wait for it."""
        for data, confirmed in out:
            if not confirmed:
                self._queue.append(data.decode())

    def _fail_open(self, reason: str) -> None:
        fut, self._open_barrier = self._open_barrier, None
        if fut is not None and not fut.done():
            fut.set_exception(LinkDown(self.domain, reason, self.retry_after()))
            fut.exception()  # mark retrieved: nobody may be waiting any more

    def _fail_barriers(self, reason: str) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        out, self._out = self._out, []
        self._requeue(out)
        self._fail_open(reason)
        pings, self._pings = self._pings, {}
        for fut, timer in pings.values():  # batches written, their pings unanswered
            timer.cancel()
            if not fut.done():
                down = LinkDown(self.domain, reason, self.retry_after(), in_doubt=True)
                fut.set_exception(down)
                fut.exception()

    # -- supervision ------------------------------------------------------------------------

    def _set_state(self, state: LinkState) -> None:
        if state is not self.state:
            self.state = state
            self.since = time.time()

    def _down_reason(self) -> str:
        if self._stopping:
            return "gateway stopping"
        return self._error_text(self.component.last_stream_error) or (
            "no answer to ping" if self._dead else "connection closed"
        )

    def _on_disconnected(self, _event: Any) -> None:
        """The TCP connection is gone: nothing written or in flight can be confirmed any
        more, so every waiter fails now, before anything else runs on this loop turn."""
        self._fail_barriers(self._down_reason())
        self._down.set()

    def _on_connection_failed(self, error: Any) -> None:
        self._conn_error = str(error)

    async def _supervise(self) -> None:
        while not self._stopping:
            kind, was_up = await self._attempt()
            if self.stopping:  # set by stop() meanwhile
                break
            self.failures = 0 if was_up else self.failures + 1
            delay = reconnect_delay(kind, self.failures, self.cfg, self._rng())
            self._log_down(kind, delay)
            self._next_attempt = asyncio.get_running_loop().time() + delay
            self._set_state(LinkState.WAITING)
            await asyncio.sleep(delay)
            self._next_attempt = None

    def _log_down(self, kind: DownKind, delay: float) -> None:
        d, err = self.domain, self.last_error
        if kind is DownKind.NOT_AUTHORIZED:
            log.error(
                "xmpp link %s: the server refused the component secret (not-authorized); "
                "check [[xmpp.components]] secret; retrying in %.0f s",
                d,
                delay,
            )
        elif kind is DownKind.CONFLICT:
            log.error(
                "xmpp link %s: the domain is already connected to the server (conflict): "
                "another gateway instance? retrying in %.0f s",
                d,
                delay,
            )
        else:
            log.warning("xmpp link %s: %s (%s); reconnecting in %.1f s", d, kind, err, delay)

    async def _attempt(self) -> tuple[DownKind, bool]:
        """One connection: returns why it ended and whether it had been up."""
        self._set_state(LinkState.CONNECTING)
        self._up.clear()
        self._down.clear()
        self._dead = False
        self._conn_error = None
        comp = self.component
        result = await comp.connect(self.cfg.server, self.port)
        if result is not None:  # slixmpp scheduled its own retry: we decide instead
            comp.cancel_connection_attempt()
            self.last_error = self._conn_error or "connection failed"
            return DownKind.UNREACHABLE, False
        up = asyncio.ensure_future(self._up.wait())
        down = asyncio.ensure_future(self._down.wait())
        try:
            await asyncio.wait(
                {up, down}, timeout=self.cfg.dead_link_timeout, return_when="FIRST_COMPLETED"
            )
        finally:
            up.cancel()
            down.cancel()
        if not self._up.is_set() or self._down.is_set():
            if not self._down.is_set():
                self.last_error = "no handshake answer"
                comp.abort()
                await self._down.wait()
                return DownKind.HANDSHAKE_TIMEOUT, False
            kind = down_kind(comp.last_stream_error)
            self.last_error = self._error_text(comp.last_stream_error) or "closed by the server"
            return kind, False
        await self._session()
        if self._dead:
            return DownKind.DEAD, True
        kind = down_kind(comp.last_stream_error)
        self.last_error = self._error_text(comp.last_stream_error) or "closed by the server"
        return kind, True

    @staticmethod
    def _error_text(err: tuple[str, str] | None) -> str | None:
        if err is None:
            return None
        return f"{err[0]}: {err[1]}" if err[1] else err[0]

    async def _session(self) -> None:
        self._set_state(LinkState.UP)
        self.last_error = None
        log.info("xmpp link %s up (%s:%d)", self.domain, self.cfg.server, self.port)
        _call(self.callbacks.on_up, self.domain)
        self._flush()
        keepalive = asyncio.create_task(self._keepalive())
        try:
            await self._down.wait()
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        self._set_state(LinkState.CONNECTING)
        reason = self._down_reason()
        self._fail_barriers(reason)
        log.warning("xmpp link %s down: %s", self.domain, reason)
        _call(self.callbacks.on_down, self.domain, reason)

    def _flush(self) -> None:
        if self._queue:
            log.info("xmpp link %s: sending %d queued stanzas", self.domain, len(self._queue))
        while self._queue and self.is_up:
            self._write(self._queue.popleft(), confirmed=False)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.keepalive_interval)
            with contextlib.suppress(LinkDown):
                await self.ping()  # a timeout aborts the transport (_barrier_answered)


ComponentFactory = Callable[[ComponentConfig], GatewayComponent]


class XmppLinks:
    """All component links of the gateway (app.py: `await start()` / `await stop()`)."""

    def __init__(
        self,
        cfg: XmppConfig,
        *,
        features: Features = NO_OPTIONAL_FEATURES,
        prompt_to_jid: Callable[[ComponentConfig], PromptTranslator | None] | None = None,
        display_names: DisplayNames | None = None,
        linked_accounts: LinkedAccounts | None = None,
        contact_features: ContactFeatures | None = None,
        avatars: Avatars | None = None,
        on_link_up: LinkCallback | None = None,
        on_link_down: DownCallback | None = None,
        on_undeliverable: UndeliverableCallback | None = None,
        component_factory: ComponentFactory | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.cfg = cfg
        self.features = features
        callbacks = Callbacks(on_link_up, on_link_down, on_undeliverable)

        def default_factory(comp: ComponentConfig) -> GatewayComponent:
            return GatewayComponent(
                comp,
                server=cfg.server,
                port=cfg.port_of(comp),
                features=features,
                prompt_to_jid=prompt_to_jid(comp) if prompt_to_jid else None,
                display_names=display_names,
                linked_accounts=linked_accounts,
                contact_features=contact_features,
                avatars=avatars,
            )

        self._factory = component_factory or default_factory
        self._callbacks = callbacks
        self._rng = rng
        self._built: dict[str, Link] | None = None

    @property
    def _links(self) -> dict[str, Link]:
        """The links, built on first use (slixmpp objects want the running loop)."""
        if self._built is None:
            self._built = {
                c.domain: Link(
                    self.cfg,
                    self._factory(c),
                    self._callbacks,
                    self._rng,
                    port=self.cfg.port_of(c),
                    confirm_domain=c.confirm_domain,
                )
                for c in self.cfg.components
            }
        return self._built

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start supervising every link; returns at once (links come up in the background)."""
        if not is_loopback(self.cfg.server):
            log.warning(
                "xmpp.server %s is not a loopback address: the XEP-0114 link is plaintext, "
                "stanzas cross the network unencrypted (use loopback or a tunnel)",
                self.cfg.server,
            )
        for link in self._links.values():
            link.start()

    async def stop(self) -> None:
        await asyncio.gather(*(link.stop() for link in self._links.values()))

    async def wait_up(self, domain: str, timeout: float) -> None:
        """Wait until the link for `domain` is up (TimeoutError otherwise)."""
        link = self._link(domain)
        async with asyncio.timeout(timeout):
            while not link.is_up:
                await asyncio.sleep(0.02)

    # -- state --------------------------------------------------------------------------------

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(c.domain for c in self.cfg.components)

    @property
    def ready(self) -> bool:
        """Every link up (app.py readiness)."""
        return bool(self._links) and all(link.is_up for link in self._links.values())

    def is_up(self, domain: str) -> bool:
        link = self._links.get(domain.lower())
        return link is not None and link.is_up

    def retry_after(self, domain: str) -> int:
        link = self._links.get(domain.lower())
        return link.retry_after() if link else max(1, math.ceil(self.cfg.reconnect_max))

    def status(self) -> tuple[LinkStatus, ...]:
        return tuple(link.status() for link in self._links.values())

    def component(self, domain: str) -> GatewayComponent:
        return self._link(domain).component

    def add_stanza_handler(self, event: str, handler: Callable[[Any], Any]) -> None:
        """Register a bridge handler for a slixmpp event on every component (boundary-wrapped)."""
        for comp in self._components():
            comp.add_stanza_handler(event, handler)

    # -- sending --------------------------------------------------------------------------------

    async def send_confirmed(self, domain: str, stanza: Any, timeout: float | None = None) -> None:
        await self._link(domain).send_confirmed(stanza, timeout)

    def backlog(self) -> int:
        """The largest `Link.backlog` (bytes) of all domains."""
        return max((link.backlog() for link in self._links.values()), default=0)

    def send(self, domain: str, stanza: Any) -> bool:
        return self._link(domain).send(stanza)

    def _link(self, domain: str) -> Link:
        try:
            return self._links[domain.lower()]
        except KeyError:
            raise KeyError(f"no XMPP component for domain {domain!r}") from None

    def _components(self) -> list[GatewayComponent]:
        return [link.component for link in self._links.values()]

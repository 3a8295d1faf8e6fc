"""What both presence directions share: config, the SIP sender, XMPP output, address maps.

`PresenceContext` is built once by `service.PresenceService` and passed to `x2s.X2s`,
`s2x.S2x`, `hosted.Hosted` and `winfo.Winfo`. The I/O it holds is typed by small
protocols (the SIP endpoint, the resolver, the XMPP links, the store), so either side can
be driven by real peers in integration tests and nothing reaches for a global.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from gateway.bridge.failover import Attempt, TargetsExhausted, send_with_failover
from gateway.bridge.failover import logger as failover_log
from gateway.bridge.presence.scheduler import Scheduler
from gateway.config import Addressing, ComponentConfig, Config
from gateway.logs import event
from gateway.memo import Memo
from gateway.metrics import Metrics
from gateway.registrar.delivery import NoBinding
from gateway.sip.headers import NameAddr
from gateway.sip.locate import Target
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.sip.notifier import PackageConfig
from gateway.sip.timers import TimerConfig
from gateway.sip.ua import ip_literal
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import MessageTooLarge, TransactionTimeout, TransportFailure
from gateway.store.api import Store
from mappings.addresses import AddressError, AddressingMode, DomainMap
from mappings.errors import MappingError
from mappings.jid import Jid

__all__ = [
    "NowaitSender",
    "PresenceConfig",
    "PresenceContext",
    "Router",
    "SendDone",
    "SendFailed",
    "SipSender",
    "TargetResolver",
    "XmppOut",
    "domain_maps",
    "presence_config",
]

# The logger keeps its name from before the packages: log lines are the operators'
# interface (docs/troubleshooting.md).
log = logging.getLogger("gateway.bridge.presence_context")


@dataclass(frozen=True)
class PresenceConfig:
    """Presence policy. `contact` is our Contact URI in every subscription dialog (a URI
    that reaches this gateway's SIP listener)."""

    contact: str
    expires: int = 3600  # X2S: Expires we ask for (RFC 3856 §6.4 default)
    package: PackageConfig = field(default_factory=PackageConfig)  # S2X limits
    notify_interval: float = 5.0  # RFC 3856 §6.2.2: at most one NOTIFY per 5 s per presentity
    retry_min: float = 5.0  # X2S backoff after failures (timeouts, 5xx, DNS)
    retry_max: float = 900.0
    probe_wait: float = 2.0  # S2X fetch with nothing known: wait this long for the probe's answer
    timers: TimerConfig = field(default_factory=TimerConfig)

    def __post_init__(self) -> None:
        if self.expires <= 0:
            raise ValueError("presence expires must be positive")
        if not 0 < self.retry_min <= self.retry_max:
            raise ValueError("need 0 < retry_min <= retry_max")
        parse_uri(self.contact)

    @property
    def contact_addr(self) -> NameAddr:
        return NameAddr(parse_uri(self.contact))

    @property
    def timer_n(self) -> float:
        return 64 * self.timers.t1


class SipSender(Protocol):
    """The slice of `SipEndpoint` used here."""

    async def request(self, req: SipRequest, target: Target) -> SipResponse: ...


class NowaitSender(Protocol):
    """`SipEndpoint.request_nowait`: the final response or the exception through a
    callback, no task per request."""

    def request_nowait(
        self,
        req: SipRequest,
        target: Target,
        on_final: Callable[[SipResponse | None, Exception | None], None],
    ) -> None: ...


# `done(response, None)`, `done(None, SendFailed)`, or `done(None, None)` after a bug
# (logged as a failed presence task would be).
SendDone = Callable[[SipResponse | None, "SendFailed | None"], None]
LocateKey = tuple[str, str, int | None, str | None]
_MAX_LOCATED = 65536


class TargetResolver(Protocol):
    """The slice of `gateway.resolver.Resolver` used here."""

    async def resolve_sip(self, uri: SipUri) -> list[Target]: ...

    async def locate(self, uri: SipUri) -> list[Target]: ...


class Router(Protocol):
    """The slice of `gateway.bridge.routing.SipRouter` used here: out-of-dialog requests
    go where MESSAGEs go (static routes, outbound proxy, registrar, DNS, failover)."""

    def hosts(self, uri: SipUri) -> bool: ...

    def send(
        self, aor: SipUri, build: Callable[[str], SipRequest], *, user: SipUri | None = None
    ) -> Awaitable[SipResponse]: ...


class XmppOut(Protocol):
    """The slice of `XmppLinks` used here."""

    def send(self, domain: str, stanza: Any) -> bool: ...

    async def send_confirmed(
        self, domain: str, stanza: Any, timeout: float | None = None
    ) -> None: ...

    def is_up(self, domain: str) -> bool: ...

    def component(self, domain: str) -> Any: ...


class SendFailed(Exception):
    """A request got no final response from any target: `status` stands for it (408 for a
    timeout, 503 for transport failures, the resolver's status for DNS failures).
    `response` is the final response the gateway gave itself as the home proxy of a
    hosted domain: 480 when the location service has no binding for the target (RFC 3261
    §16.5, RFC 5627 §6.1); a notifier treats it as the NOTIFY's answer (RFC 6665 §4.2.2)."""

    def __init__(
        self,
        status: int,
        reason: str,
        *,
        timeout: bool = False,
        response: SipResponse | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.timeout = timeout
        self.response = response


def domain_maps(
    components: Sequence[ComponentConfig], served_xmpp_domains: Sequence[str] = ()
) -> dict[str, DomainMap]:
    """One `DomainMap` per component domain."""
    xmpp = frozenset(served_xmpp_domains)
    return {
        c.domain: DomainMap(
            c.domain,
            AddressingMode.MIRRORED
            if c.addressing is Addressing.MIRRORED
            else AddressingMode.ESCAPED,
            xmpp,
        )
        for c in components
    }


@dataclass
class PresenceContext:
    config: PresenceConfig
    endpoint: SipSender
    resolver: TargetResolver
    xmpp: XmppOut
    store: Store
    maps: dict[str, DomainMap]
    scheduler: Scheduler[tuple[str, Hashable]]
    metrics: Metrics | None = None
    clock: Callable[[], float] = field(default=lambda: 0.0)
    router: Router | None = None
    # In-dialog targets located for an IP literal (RFC 3263 §4.2: no DNS, the same answer
    # every time), by what `LocatePlan.from_uri` reads from the URI.
    _located: Memo[LocateKey, tuple[Target, ...]] = field(
        default_factory=lambda: Memo(_MAX_LOCATED), repr=False
    )

    # ------------------------------------------------------------ addresses

    def map_for_sip_user(self, uri: SipUri) -> DomainMap:
        """The component that represents the SIP user `uri` on XMPP: the mirrored domain
        equal to its host, else an escaped component (403 when none can)."""
        host = uri.host.lower()
        for dm in self.maps.values():
            if dm.mode is AddressingMode.MIRRORED and dm.is_component(host):
                return dm
        for dm in self.maps.values():
            if dm.mode is AddressingMode.ESCAPED:
                return dm
        raise AddressError(f"no component represents SIP domain {host}", 403, "forbidden")

    def map_for_component(self, jid: Jid) -> DomainMap:
        dm = self.maps.get(jid.domain.lower())
        if dm is None:
            raise AddressError(
                f"{jid.domain} is not a component of this gateway", 404, "item-not-found"
            )
        return dm

    # ------------------------------------------------------------ output

    def send_stanza(self, domain: str, stanza: Any) -> None:
        if not self.xmpp.send(domain, stanza):
            event(log, logging.WARNING, "presence stanza refused by the link", domain=domain)

    def count_notification(self, direction: str) -> None:
        if self.metrics is not None:
            self.metrics.presence_notifications.labels(direction).inc()

    def set_subscriptions(self, direction: str, n: int) -> None:
        if self.metrics is not None:
            self.metrics.subscriptions.labels(direction).set(n)

    async def send(self, request: SipRequest) -> SipResponse:
        """Send a SUBSCRIBE or NOTIFY: in-dialog requests go to the first Route or the
        Request-URI as located by RFC 3263 (no static routes: the route set rules);
        out-of-dialog ones through the resolver (static routes, outbound proxy, RFC 3263).
        Targets are tried in order (RFC 3263 §4.3); `SendFailed` when none answered.
        With a `router`, out-of-dialog requests go through it instead of the resolver, and
        so does any request whose Request-URI (an in-dialog remote target such as a GRUU
        the phone gave as its Contact) is in a hosted domain: the gateway is that domain's
        home proxy, so the location service retargets it (`_hosted`)."""
        routes = request.routes
        uri = routes[0].uri if routes else request.uri
        if not isinstance(uri, SipUri):
            raise SendFailed(416, f"cannot send to {uri}")
        try:
            if self.router is not None:
                ruri = request.uri
                if isinstance(ruri, SipUri) and self.router.hosts(ruri):
                    to = request.to
                    user = to.uri if to is not None and isinstance(to.uri, SipUri) else None
                    build = partial(_hosted, request)
                    return await self.router.send(ruri, build, user=user)
                if not routes and request.to_tag is None:
                    return await self.router.send(uri, lambda c: _with_uri(request, c))
            if routes or request.to_tag is not None:
                targets = await self.resolver.locate(uri)
                if ip_literal(uri.maddr or uri.host) is not None:
                    self._located.put(_locate_key(uri), tuple(targets))
            else:
                targets = await self.resolver.resolve_sip(uri)
            _, response, _ = await send_with_failover(
                targets,
                lambda t: self.endpoint.request(request, t),
                timeouts=(TransactionTimeout,),
                transport_errors=(TransportFailure, MessageTooLarge),
            )
        except NoBinding as exc:  # the location service's own final answer: logged here
            event(log, logging.INFO, "no binding for target", uri=str(request.uri),
                  method=request.method, call_id=request.call_id, status=480)  # fmt: skip
            local = make_response(request, 480, "No Registered Contact")
            raise SendFailed(480, str(exc), response=local) from None
        except MappingError as exc:
            status = exc.sip_status or 503
            raise SendFailed(status, str(exc), timeout=status == 408) from None
        except TransactionTimeout as exc:  # a single target reached through the registrar
            raise SendFailed(408, str(exc) or "timeout", timeout=True) from None
        except (TransportFailure, MessageTooLarge) as exc:
            raise SendFailed(503, str(exc) or type(exc).__name__) from None
        return response

    def send_nowait(self, request: SipRequest, done: SendDone) -> bool:
        """`send` without a task, when it can go so: an in-dialog request whose targets
        were located before for an IP literal, over an endpoint with `request_nowait`.
        Targets are tried in order exactly as `send_with_failover` does (same attempts,
        logs and final error). False (nothing sent) otherwise: use `send`. `done` is
        never called from this call."""
        request_nowait = getattr(self.endpoint, "request_nowait", None)
        if request_nowait is None:
            return False
        routes = request.routes
        if not routes and request.to_tag is None:
            return False
        uri = routes[0].uri if routes else request.uri
        if not isinstance(uri, SipUri):
            return False
        ruri = request.uri
        if self.router is not None and isinstance(ruri, SipUri) and self.router.hosts(ruri):
            return False  # the location service answers each time: bindings change
        targets = self._located.peek(_locate_key(uri))
        if targets is None:
            return False
        _Failover(request, targets, request_nowait, done).next()
        return True


def _locate_key(uri: SipUri) -> LocateKey:
    return (uri.scheme, uri.maddr or uri.host, uri.port, uri.transport)


class _Failover:
    """`send_with_failover` driven by `request_nowait` callbacks (RFC 3263 §4.3)."""

    __slots__ = ("attempts", "done", "index", "request", "send", "targets")

    def __init__(
        self,
        request: SipRequest,
        targets: Sequence[Target],
        send: Callable[[SipRequest, Target, Callable[..., None]], None],
        done: SendDone,
    ) -> None:
        self.request = request
        self.targets = targets
        self.send = send
        self.done = done
        self.index = 0
        self.attempts: list[Attempt[Target]] = []

    def next(self) -> None:
        if self.index >= len(self.targets):
            exc = TargetsExhausted(self.attempts)
            status = exc.sip_status or 503
            self.done(None, SendFailed(status, str(exc), timeout=status == 408))
            return
        target = self.targets[self.index]
        self.index += 1
        try:
            self.send(self.request, target, self._final)
        except Exception as exc:  # a bug (e.g. LocalProtocolError): as a failed task
            log.error("presence task failed", exc_info=exc)
            self.done(None, None)

    def _final(self, response: SipResponse | None, exc: Exception | None) -> None:
        target = self.targets[self.index - 1]
        if exc is not None:
            if isinstance(exc, TransactionTimeout):
                outcome: Any = "timeout"
            elif isinstance(exc, (TransportFailure, MessageTooLarge)):
                outcome = "transport"
            else:  # what a failed `send` task would have logged
                log.error("presence task failed", exc_info=exc)
                self.done(None, None)
                return
            self.attempts.append(Attempt(target, outcome, str(exc) or type(exc).__name__))
        else:
            assert response is not None
            if response.status != 503:
                self.done(response, None)
                return
            self.attempts.append(Attempt(target, "503", "503 Service Unavailable"))
        last = self.attempts[-1]
        event(
            failover_log,
            logging.INFO,
            "target failed, trying the next",
            target=str(last.target),
            outcome=last.outcome,
            detail=last.detail,
        )
        self.next()


def _with_uri(request: SipRequest, ruri: str) -> SipRequest:
    """The request with the Request-URI the router chose (a registered contact)."""
    return request if ruri == str(request.uri) else request.replace(uri=parse_uri(ruri))


def _hosted(request: SipRequest, contact: str) -> SipRequest:
    """The request retargeted by the location service: the registered contact as
    Request-URI (the GRUU's `gr` is not carried forward, RFC 5627 §6.1) and no route set
    of its own (the binding's Path becomes the Route, `registrar/delivery.py`)."""
    headers = request.headers
    if "Route" in headers:
        headers = headers.remove("Route")
    return request.replace(uri=parse_uri(contact), headers=headers)


def presence_config(cfg: Config) -> PresenceConfig:
    """From [presence]: our Contact, unless configured, names the first SIP listener that
    is not a WebSocket one (a ws/wss client reaches us over its own connection whatever
    the Contact says; a UDP/TCP phone cannot open a WebSocket); for a wildcard address,
    the first hosted SIP domain or component domain; timers follow [sip.timers]."""
    listeners = cfg.sip.listeners
    listener = next(
        (lc for lc in listeners if lc.transport.value not in ("ws", "wss")),
        listeners[0] if listeners else None,
    )
    host = "localhost"
    if listener is not None and listener.address not in ("0.0.0.0", "::", ""):
        host = f"[{listener.address}]" if ":" in listener.address else listener.address
    else:
        names = [*cfg.sip.hosted_domains, *(c.domain for c in cfg.xmpp.components)]
        host = names[0] if names else host
    port = f":{listener.port}" if listener is not None and listener.port else ""
    transport = (
        ""
        if listener is None or listener.transport.value == "udp"
        else (f";transport={listener.transport.value}")
    )
    t = cfg.sip.timers
    pc = cfg.presence
    return PresenceConfig(
        contact=pc.contact or f"sip:presence@{host}{port}{transport}",
        expires=pc.expires,
        package=PackageConfig(
            default_expires=pc.default_expires,
            min_expires=pc.min_expires,
            max_expires=pc.max_expires,
        ),
        notify_interval=pc.notify_interval,
        retry_min=pc.retry_min,
        retry_max=pc.retry_max,
        timers=TimerConfig(t1=t.t1, t2=t.t2, t4=t.t4),
    )


class Tasks:
    """Background tasks of one presence part: held until done, failures logged (a task's
    exception must not vanish with it)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.live: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.live.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.live.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task failed", self.what, exc_info=task.exception())

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(self.live)

"""Configuration: TOML -> frozen dataclasses.

`load_config(mapping, base_dir)` is pure apart from reading the files the
configuration names (secrets, TLS material, user file), which it checks at load
time so that a broken deployment fails at start, not at the first message.
Every error names the TOML key path (`ConfigError.path`). The keys are
documented one by one in docs/configuration.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration problem, located by its TOML key path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class Addressing(StrEnum):
    """How JIDs of a component domain map to SIP URIs (docs/configuration.md)."""

    MIRRORED = "mirrored"  # romeo@sip.example.org <-> sip:romeo@sip.example.org
    ESCAPED = "escaped"  # romeo\40example.com@gw.example.org <-> sip:romeo@example.com


class Transport(StrEnum):
    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"  # SIP over WebSocket (RFC 7118)
    WSS = "wss"  # SIP over secure WebSocket: TLS like a tls listener


@dataclass(frozen=True)
class ComponentConfig:
    """One XEP-0114 component domain and its shared secret."""

    domain: str
    secret: str = field(repr=False)
    addressing: Addressing = Addressing.MIRRORED
    port: int | None = None  # the server's component port for this domain; None: [xmpp] port
    # The domain the link's confirmation pings go from and to (issue 21, docs/cluster.md):
    # None: `domain` itself. Several instances connected as one domain each name a domain
    # of their own here, routed to their connection only, so each gets its own answers.
    confirm_domain: str | None = None


@dataclass(frozen=True)
class XmppConfig:
    """The XMPP server's component listener and the component domains."""

    server: str = "127.0.0.1"
    port: int = 5347
    components: tuple[ComponentConfig, ...] = ()
    keepalive_interval: float = 30.0  # whitespace/ping keep-alive on the stream
    dead_link_timeout: float = 90.0  # no answer to a ping within this: link is dead
    reconnect_min: float = 1.0  # backoff bounds (seconds), jitter added
    reconnect_max: float = 60.0
    auth_failure_retry: float = 300.0  # slow retries after not-authorized
    send_queue_limit: int = 1000  # stanzas held while a link is down

    def port_of(self, component: ComponentConfig) -> int:
        """The port `component` connects to: its own `port`, else the section's."""
        return self.port if component.port is None else component.port


@dataclass(frozen=True)
class ListenerConfig:
    transport: Transport
    address: str
    port: int
    certificate: Path | None = None
    private_key: Path | None = None
    client_ca: Path | None = None  # tls: ask clients for a certificate, verify against this
    path: str = "/"  # ws/wss: the HTTP path of the WebSocket upgrade
    origins: tuple[str, ...] = ()  # ws/wss: allowed browser Origins (empty: any)
    handshake_timeout: float = 10.0  # ws/wss: seconds to complete the HTTP upgrade
    heartbeat: float = 30.0  # ws/wss: ping interval; no pong within half of it closes


@dataclass(frozen=True)
class TlsClientConfig:
    """Trust for outgoing TLS: system CAs unless a bundle is given."""

    verify: bool = True
    ca_file: Path | None = None


@dataclass(frozen=True)
class RouteConfig:
    """A static route: requests for `domain` go to `target` (a SIP URI)."""

    domain: str
    target: str


@dataclass(frozen=True)
class SipTimers:
    """RFC 3261 §17 T1/T2/T4 in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(frozen=True)
class SipConfig:
    listeners: tuple[ListenerConfig, ...] = ()
    hosted_domains: tuple[str, ...] = ()  # SIP domains whose users register with us
    served_xmpp_domains: tuple[str, ...] = ()  # XMPP domains SIP users can reach
    routes: tuple[RouteConfig, ...] = ()
    outbound_proxy: str | None = None
    trusted_peers: tuple[str, ...] = ()  # addresses or networks of trusted proxies
    max_message_size: int = 65535
    timers: SipTimers = SipTimers()
    tls_client: TlsClientConfig = TlsClientConfig()
    message_success_status: int = 200  # 200 or 202 for MESSAGE taken by XMPP
    user_agent: str = "cpim-gateway"
    federation: bool = False  # carry traffic between local and outside domains (RFC 7247 §5)
    trusted_tls_names: tuple[str, ...] = ()  # certificate names of trusted TLS peers


@dataclass(frozen=True)
class RegistrarConfig:
    users_file: Path | None = None
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_bindings: int = 10  # contacts per AOR
    replace_same_instance: bool = True  # a device re-registering replaces its old contact
    flow_timer: int | None = None  # RFC 5626 Flow-Timer for outbound clients
    available_without_publish: bool = True  # registered phones without PUBLISH show online
    publish_min_expires: int = 60
    publish_max_expires: int = 7200
    publish_default_expires: int = 3600


RATE_LIMIT_KINDS = ("register-failure", "message", "subscribe")


@dataclass(frozen=True)
class LimitConfig:
    """A token bucket: `burst` requests, refilled at `rate` per second (burst 0: off)."""

    burst: float
    rate: float


def _default_limits(values: dict[str, tuple[float, float]]) -> tuple[tuple[str, LimitConfig], ...]:
    return tuple((k, LimitConfig(*v)) for k, v in values.items())


@dataclass(frozen=True)
class RateLimitsConfig:
    """Per source address and per user; kinds: register-failure, message, subscribe."""

    per_source: tuple[tuple[str, LimitConfig], ...] = _default_limits(
        {"register-failure": (10, 1 / 30), "message": (50, 10), "subscribe": (50, 5)}
    )
    per_user: tuple[tuple[str, LimitConfig], ...] = _default_limits(
        {"register-failure": (5, 1 / 60), "message": (30, 5), "subscribe": (20, 2)}
    )
    max_keys: int = 100_000


@dataclass(frozen=True)
class PresenceSection:
    """Presence policy (RFC 8048 over RFC 6665 / RFC 3856)."""

    expires: int = 3600  # Expires the gateway asks for when it subscribes to SIP users
    min_expires: int = 60  # SIP watchers asking for less get 423 with Min-Expires
    max_expires: int = 86400  # longer requests are shortened
    default_expires: int = 3600  # a SUBSCRIBE without Expires (RFC 3856 §6.4)
    notify_interval: float = 5.0  # at most one NOTIFY per watcher and contact (RFC 3856 §6.2.2)
    retry_min: float = 5.0  # backoff after failed subscriptions to SIP users
    retry_max: float = 900.0
    contact: str | None = None  # our Contact URI in subscription dialogs; derived if absent
    auto_approve_hosted: bool = False  # approve every XMPP request to watch a hosted SIP user


@dataclass(frozen=True)
class OfflineSection:
    """Store-and-forward for hosted SIP users who are offline (docs/offline.md)."""

    enabled: bool = True  # store messages to a known hosted user with no binding
    max_messages: int = 100  # per user; the next one gets 480 / recipient-unavailable
    max_bytes: int = 1_048_576  # per user, sum of the stored bodies
    max_age: float = 604_800.0  # seconds a message waits before it expires (7 days)
    retry_min: float = 5.0  # backoff after a failed delivery to a registered device
    retry_max: float = 300.0
    notice: bool = True  # tell the XMPP sender "stored" with a headline message


@dataclass(frozen=True)
class RegEventSection:
    """The reg event (RFC 3680) for hosted AORs (docs/registrar.md, "The reg event")."""

    enabled: bool = True  # serve SUBSCRIBE Event: reg to hosted AORs
    default_expires: int = 3761  # RFC 3680 §4.4
    min_expires: int = 60  # shorter requests get 423 with Min-Expires
    max_expires: int = 86400  # longer requests are shortened
    notify_interval: float = 5.0  # at most one NOTIFY per subscription (RFC 3680 §4.10)


CALL_SHOWS = ("dnd", "away", "xa")
DIALOG_SUBSCRIBE = ("auto", "always", "never")


@dataclass(frozen=True)
class CallActivitySection:
    """Calls of hosted users shown in their XMPP presence (docs/call-activity.md)."""

    enabled: bool = True  # PUBLISH Event: dialog accepted; calls shown on XMPP
    show: str = "dnd"  # the <show/> during a call
    status: str = "On the phone"  # the <status/> during a call (the user's own in brackets)
    subscribe_dialog: str = "auto"  # auto: SUBSCRIBE to devices whose Allow-Events has dialog


@dataclass(frozen=True)
class SessionsSection:
    """The INVITE leg of message sessions (issue 18, docs/sessions.md)."""

    max_sessions: int = 1000  # concurrent INVITE sessions; the next INVITE gets 503
    retry_after: int = 30  # seconds, in the Retry-After of that 503 (RFC 3261 §21.5.4)
    contact: str | None = None  # our Contact URI in session dialogs; derived if absent
    # RFC 7573 §7: a success REPORT waits for the XMPP receipt at most this long after the
    # XMPP server took the message (then it is sent: the server has it)
    receipt_wait: float = 10.0
    # XMPP -> SIP chat (RFC 7573 §4): "session" opens an MSRP session to a SIP user known to
    # take one (it sent an INVITE with MSRP before), falling back to pager mode; "pager": never
    preference: str = "pager"


@dataclass(frozen=True)
class ListsSection:
    """The resource list server (RFC 4662, RFC 5367; docs/lists.md)."""

    enabled: bool = True  # serve list SUBSCRIBEs (Supported: eventlist)
    max_entries: int = 1000  # members of one list; more: 413
    max_depth: int = 8  # nested lists plus references followed; deeper: 403
    max_bytes: int = 262_144  # a request-contained resource-lists body; larger: 413
    max_per_user: int = 8  # concurrent list subscriptions of one user; more: 403
    min_interval: float = 5.0  # least seconds between two NOTIFYs of one list (RFC 4662 §4.8)
    linphone_quirks: bool = True  # liblinphone's reading of list NOTIFYs (docs/lists.md)


STORE_BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class StoreConfig:
    """Where state lives (issue 21): SQLite in `gateway.state_dir`, or PostgreSQL."""

    backend: str = "sqlite"
    dsn: str | None = field(default=None, repr=False)  # postgresql only; may hold a password
    connect_timeout: float = 5.0  # seconds, per connection attempt (libpq: whole seconds)


@dataclass(frozen=True)
class ClusterConfig:
    """Several instances over one PostgreSQL store (issue 21, docs/cluster.md)."""

    enabled: bool = False
    instance_id: str = ""  # unique per instance; default: host name and process id
    binding_cache: float = 1.0  # seconds a binding set read from the store is trusted
    lease_ttl: float = 15.0  # seconds a lease renewal holds (gateway/cluster/lease.py)
    lease_renew: float = 5.0
    lease_margin: float = 3.0
    sweep_interval: float = 5.0  # seconds between the lease owner's scans of the store


@dataclass(frozen=True)
class DnsConfig:
    """Resolvers to use; empty means: no DNS at all (static routes only)."""

    servers: tuple[tuple[str, int], ...] = ()
    timeout: float = 2.0
    attempts: int = 2
    cache_size: int = 10000


@dataclass(frozen=True)
class AdminConfig:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 8080
    token: str | None = field(default=None, repr=False)
    # A directory of static files served at /web/ (the browser demo, web/demo); None: off.
    web_root: Path | None = None
    # The operator console (issue 26, docs/admin-api.md "Console"): how many message fates
    # it keeps, how many live streams may be open, whether its actions are allowed.
    console_fates: int = 1000
    console_streams: int = 8
    console_actions: bool = False


@dataclass(frozen=True)
class MsrpConfig:
    """MSRP session media (issue 18, docs/msrp.md): listeners, relay, limits."""

    enabled: bool = False
    address: str = "127.0.0.1"  # listen address, also the host of our MSRP URIs
    host: str | None = None  # the host written in our URIs when not `address`
    port: int = 2855  # msrp (TCP) listener; 0: any free port
    tls_port: int | None = None  # msrps listener; None: no TLS
    certificate: Path | None = None  # TLS: our certificate (its fingerprint goes in SDP)
    private_key: Path | None = None
    relay: str | None = None  # RFC 4976 relay URI (msrp[s]://host:port;tcp); None: direct
    relay_username: str | None = None
    relay_password: str | None = field(default=None, repr=False)
    relay_ca: Path | None = None  # CA bundle verifying an msrps relay; None: system store
    relay_verify: bool = True
    max_message_size: int = 1_048_576  # octets of a whole message (413 beyond, RFC 4975 §10.5)
    max_chunk_size: int = 1_048_576  # octets of one chunk's body held while framing
    chunk_size: int = 2048  # octets per SEND chunk we write (RFC 4975 §7.1.1)
    max_sessions: int = 10_000
    max_connections: int = 10_000
    idle_timeout: float = 600.0  # seconds without a message before a session ends
    partial_timeout: float = 30.0  # a started frame must end within this (slowloris)
    transaction_timeout: float = 30.0  # a chunk's response must come within this
    report_timeout: float = 30.0  # after the last chunk's 200, wait this for its REPORT
    connect_timeout: float = 10.0  # connecting, TLS, relay AUTH, first request (passive)


@dataclass(frozen=True)
class XcapConfig:
    """The XCAP server (RFC 4825, docs/xcap.md): users' resource lists and pres-rules
    over HTTP(S) with Digest against the registrar's users."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8090
    root: str = "/xcap"  # the XCAP root path (RFC 4825 §6.1)
    max_document_size: int = 256 * 1024  # bytes of a document or a request body (413)
    certificate: Path | None = None  # both set: HTTPS
    private_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.certificate is not None


@dataclass(frozen=True)
class GatewaySection:
    state_dir: Path = Path("state")
    log_level: str = "info"
    log_format: str = "text"  # text (key=value) or json
    drain_timeout: float = 10.0
    # Seconds between malloc_trim(0) calls handing glibc's free heap pages back to the
    # kernel (0: never); gateway/heap.py, docs/reliability.md §6.
    heap_trim_interval: float = 60.0


@dataclass(frozen=True)
class OverloadConfig:
    """Overload control (issue 27, docs/performance.md "Overload control"): past a high
    mark a shrinking share of new requests is admitted, the rest get 503 + Retry-After
    (message stanzas: resource-constraint); over once all are admitted again and every
    signal stayed under its low mark for `hold` seconds (gateway/overload/policy.py)."""

    enabled: bool = True
    interval: float = 0.1  # seconds between samples of the load
    lag_high: float = 0.5  # event-loop lag, seconds (how late the sampling timer fired)
    lag_low: float = 0.1
    pending_high: int = 2000  # SIP requests being handled (e.g. waiting for the XMPP server)
    pending_low: int = 500
    # our SIP requests awaiting answers plus XMPP -> SIP messages being bridged (queued per
    # destination, RFC 3428 §8); high: a presence fan-out starts thousands of NOTIFYs
    clients_high: int = 20000
    clients_low: int = 5000
    xmpp_backlog_high: int = 4_194_304  # bytes written to a link, not yet sent (largest link)
    xmpp_backlog_low: int = 262_144
    # share of the fullest UDP receive buffer in use; with the 8 MB buffer the gateway asks
    # for, 0.15 is about 1,000 requests: several hundred ms of work, near T1 (500 ms)
    udp_backlog_high: float = 0.15
    udp_backlog_low: float = 0.03
    stream_backlog_high: int = 262_144  # bytes unread on all TCP/TLS connections together
    stream_backlog_low: int = 32_768
    hold: float = 2.0  # seconds every signal must stay low before leaving the overload
    recovery: float = 2.0  # seconds from refusing all to admitting all without a high sample
    retry_after: int = 5  # Retry-After of the 503s (RFC 3261 §20.33), seconds


EVENT_LOOPS = ("auto", "asyncio", "uvloop")


@dataclass(frozen=True)
class RuntimeConfig:
    # asyncio: its default loop; uvloop: the `fast` extra (an error if not installed);
    # auto: uvloop when installed, else asyncio's (gateway/eventloop.py)
    event_loop: str = "asyncio"


@dataclass(frozen=True)
class Config:
    gateway: GatewaySection
    xmpp: XmppConfig
    sip: SipConfig
    registrar: RegistrarConfig
    rate_limits: RateLimitsConfig
    dns: DnsConfig
    admin: AdminConfig
    source: Path | None = None
    presence: PresenceSection = PresenceSection()
    offline: OfflineSection = OfflineSection()
    store: StoreConfig = StoreConfig()
    reg_event: RegEventSection = RegEventSection()
    call_activity: CallActivitySection = CallActivitySection()
    sessions: SessionsSection = SessionsSection()
    msrp: MsrpConfig = MsrpConfig()
    xcap: XcapConfig = XcapConfig()
    lists: ListsSection = ListsSection()
    overload: OverloadConfig = OverloadConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    cluster: ClusterConfig = ClusterConfig()

    def component(self, domain: str) -> ComponentConfig | None:
        return next((c for c in self.xmpp.components if c.domain == domain.lower()), None)


# ---------------------------------------------------------------------------
# Loading helpers: each takes the key path so that errors can name it.

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


class _Section:
    """A TOML table being read: tracks which keys were consumed."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a table, not {_typename(data)}")
        self.data: Mapping[str, Any] = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(
        self, name: str, kind: type[T], default: T | None = None, *, required: bool = False
    ) -> T:
        self.used.add(name)
        if name not in self.data:
            if required or default is None:
                raise ConfigError(self.key(name), "missing required key")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                self.key(name), f"must be {_typename_of(kind)}, not {_typename(value)}"
            )
        return value

    def opt(self, name: str, kind: type[T]) -> T | None:
        if name not in self.data:
            self.used.add(name)
            return None
        return self.get(name, kind, required=True)

    def table(self, name: str) -> _Section:
        self.used.add(name)
        return _Section(self.data.get(name, {}), self.key(name))

    def tables(self, name: str) -> list[_Section]:
        self.used.add(name)
        items = self.data.get(name, [])
        if not isinstance(items, list):
            raise ConfigError(self.key(name), "must be an array of tables ([[...]])")
        return [_Section(item, f"{self.key(name)}[{i}]") for i, item in enumerate(items)]

    def strings(self, name: str) -> tuple[str, ...]:
        items = self.get(name, list, [])
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise ConfigError(
                    f"{self.key(name)}[{i}]", f"must be a string, not {_typename(item)}"
                )
        return tuple(items)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, default)
        if value not in choices:
            raise ConfigError(self.key(name), f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.key(unknown[0]), "unknown key")


def _typename_of(kind: type[Any]) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "an array",
        dict: "a table",
    }.get(kind, kind.__name__)


def _typename(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def _port(sec: _Section, name: str, default: int | None = None) -> int:
    port = sec.get(name, int, default, required=default is None)
    if not 0 < port < 65536:
        raise ConfigError(sec.key(name), f"port must be 1..65535, not {port}")
    return port


def _ip(sec: _Section, name: str, default: str | None = None) -> str:
    value = sec.get(name, str, default, required=default is None)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(sec.key(name), f"not an IP address: {value!r}") from None
    return value


def _host_port(path: str, value: str, default_port: int) -> tuple[str, int]:
    """'127.0.0.1:8080', '[::1]:53' or a bare IP address."""
    host, port = value, default_port
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise ConfigError(path, f"bad address {value!r}")
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ConfigError(path, f"bad address {value!r}")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, p = value.partition(":")
        if not p.isdigit():
            raise ConfigError(path, f"bad port in {value!r}")
        port = int(p)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(path, f"not an IP address: {host!r}") from None
    if not 0 < port < 65536:
        raise ConfigError(path, f"port must be 1..65535 in {value!r}")
    return host, port


def _readable_file(path: str, value: str, base: Path) -> Path:
    p = Path(value)
    if not p.is_absolute():
        p = base / p
    try:
        with p.open("rb"):
            pass
    except OSError as exc:
        problem = f"cannot read {str(p)!r}: {exc.strerror or exc}"
        hint = missing_file_hint(p) if isinstance(exc, FileNotFoundError) else None
        raise ConfigError(path, f"{problem}; {hint}" if hint else problem) from None
    return p


# Files of the demo that a script of its checkout makes: (directory under the checkout,
# the script, what it makes). deploy/demo/gateway.toml names them before the first
# `make run`, so on a fresh clone the error says how to make them.
_MADE_BY_SCRIPT = (
    (Path(".state/demo/tls"), Path("scripts/demo-certs.sh"), "the demo TLS certificate"),
)


def missing_file_hint(missing: Path) -> str | None:
    """How to make `missing` when a script of the same checkout makes it; None otherwise."""
    missing = Path(os.path.normpath(missing))
    for folder, script, what in _MADE_BY_SCRIPT:
        if len(missing.parents) <= len(folder.parts):
            continue
        root = missing.parents[len(folder.parts)]
        if missing.parent == root / folder and (root / script).is_file():
            shown = os.path.relpath(root / script) if root == Path.cwd() else root / script
            return f"run `bash {shown}` (or `make run`) to create {what}"
    return None


def _secret(sec: _Section, name: str, base: Path, env: Mapping[str, str]) -> str | None:
    """`name`, `name_file` or `name_env`: exactly one of them, or none."""
    given = [k for k in (name, f"{name}_file", f"{name}_env") if k in sec.data]
    sec.used.update((name, f"{name}_file", f"{name}_env"))
    if len(given) > 1:
        raise ConfigError(sec.key(given[1]), f"give only one of {', '.join(given)}")
    if not given:
        return None
    key = given[0]
    value = sec.get(key, str, required=True)
    if key.endswith("_file"):
        p = _readable_file(sec.key(key), value, base)
        secret = p.read_text(encoding="utf-8").strip()
    elif key.endswith("_env"):
        if value not in env:
            raise ConfigError(sec.key(key), f"environment variable {value} is not set")
        secret = env[value]
    else:
        secret = value
    if not secret:
        raise ConfigError(sec.key(key), "secret is empty")
    return secret


def _domain(path: str, value: str) -> str:
    d = value.strip().lower().rstrip(".")
    labels = d.split(".")
    if not d or len(d) > 253 or any(not lab or len(lab) > 63 for lab in labels):
        raise ConfigError(path, f"not a domain name: {value!r}")
    if any(not all(ch.isalnum() or ch == "-" for ch in lab) for lab in labels):
        raise ConfigError(path, f"not a domain name: {value!r}")
    return d


# ---------------------------------------------------------------------------


def _load_gateway(sec: _Section, base: Path) -> GatewaySection:
    state_dir = Path(sec.get("state_dir", str, "state"))
    out = GatewaySection(
        state_dir=state_dir if state_dir.is_absolute() else base / state_dir,
        log_level=sec.choice("log_level", LOG_LEVELS, "info"),
        log_format=sec.choice("log_format", LOG_FORMATS, "text"),
        drain_timeout=sec.get("drain_timeout", float, 10.0),
        heap_trim_interval=sec.get("heap_trim_interval", float, 60.0),
    )
    if not 0 <= out.heap_trim_interval < float("inf"):  # also refuses nan
        raise ConfigError(sec.key("heap_trim_interval"), "must be 0 (off) or a number of seconds")
    sec.done()
    return out


def _load_xmpp(sec: _Section, base: Path, env: Mapping[str, str]) -> XmppConfig:
    components: list[ComponentConfig] = []
    seen: set[str] = set()
    for csec in sec.tables("components"):
        domain = _domain(csec.key("domain"), csec.get("domain", str, required=True))
        if domain in seen:
            raise ConfigError(csec.key("domain"), f"duplicate component domain {domain!r}")
        seen.add(domain)
        secret = _secret(csec, "secret", base, env)
        if secret is None:
            raise ConfigError(
                csec.key("secret"), "missing (give secret, secret_file or secret_env)"
            )
        mode = csec.choice("addressing", tuple(a.value for a in Addressing), "mirrored")
        # its own port: ejabberd routes all the `hosts` of one listener to each of its
        # connections, so each domain needs a listener of its own there (docs/interop.md)
        port = _port(csec, "port") if "port" in csec.data else None
        confirm = csec.opt("confirm_domain", str)
        confirm = _domain(csec.key("confirm_domain"), confirm) if confirm else None
        components.append(ComponentConfig(domain, secret, Addressing(mode), port, confirm))
        csec.done()
    if not components:
        raise ConfigError(sec.key("components"), "at least one [[xmpp.components]] is required")
    out = XmppConfig(
        server=_ip(sec, "server", "127.0.0.1"),
        port=_port(sec, "port", 5347),
        components=tuple(components),
        keepalive_interval=_positive(sec, "keepalive_interval", 30.0),
        dead_link_timeout=_positive(sec, "dead_link_timeout", 90.0),
        reconnect_min=_positive(sec, "reconnect_min", 1.0),
        reconnect_max=_positive(sec, "reconnect_max", 60.0),
        auth_failure_retry=_positive(sec, "auth_failure_retry", 300.0),
        send_queue_limit=sec.get("send_queue_limit", int, 1000),
    )
    sec.done()
    return out


def _positive(sec: _Section, name: str, default: float) -> float:
    value = sec.get(name, float, default)
    if value <= 0:
        raise ConfigError(sec.key(name), f"must be positive, not {value}")
    return value


def _bounded(sec: _Section, name: str, default: int, low: int, high: int) -> int:
    value = sec.get(name, int, default)
    if not low <= value <= high:
        raise ConfigError(sec.key(name), f"must be {low}..{high}, not {value}")
    return value


def _load_listener(sec: _Section, base: Path) -> ListenerConfig:
    transport = Transport(sec.choice("transport", tuple(t.value for t in Transport), "udp"))
    secure = transport in (Transport.TLS, Transport.WSS)
    default_port = {Transport.TLS: 5061, Transport.WS: 80, Transport.WSS: 443}.get(transport, 5060)
    cert = sec.opt("certificate", str)
    key = sec.opt("private_key", str)
    client_ca = sec.opt("client_ca", str)
    if secure:
        if cert is None:
            raise ConfigError(sec.key("certificate"), f"required for a {transport} listener")
        if key is None:
            raise ConfigError(sec.key("private_key"), f"required for a {transport} listener")
    elif cert is not None or key is not None or client_ca is not None:
        bad = (
            "certificate" if cert is not None else "private_key" if key is not None else "client_ca"
        )
        raise ConfigError(sec.key(bad), f"only meaningful for tls listeners, not {transport}")
    ws = _load_ws_keys(sec) if transport in (Transport.WS, Transport.WSS) else {}
    out = ListenerConfig(
        transport=transport,
        address=_ip(sec, "address", "127.0.0.1"),
        port=_port(sec, "port", default_port),
        certificate=_readable_file(sec.key("certificate"), cert, base) if cert else None,
        private_key=_readable_file(sec.key("private_key"), key, base) if key else None,
        client_ca=_readable_file(sec.key("client_ca"), client_ca, base) if client_ca else None,
        **ws,
    )
    sec.done()
    return out


def _load_ws_keys(sec: _Section) -> dict[str, Any]:
    """The keys of a ws/wss listener (RFC 7118): path, origins, handshake_timeout, heartbeat."""
    path = sec.get("path", str, "/")
    if not path.startswith("/"):
        raise ConfigError(sec.key("path"), f"must start with '/', not {path!r}")
    origins = sec.get("origins", list, [])
    if not all(isinstance(o, str) and "://" in o for o in origins):
        raise ConfigError(sec.key("origins"), "must be a list of origins like 'https://host'")
    return {
        "path": path,
        "origins": tuple(o.rstrip("/").lower() for o in origins),
        "handshake_timeout": _positive(sec, "handshake_timeout", 10.0),
        "heartbeat": _positive(sec, "heartbeat", 30.0),
    }


def _load_sip(sec: _Section, base: Path) -> SipConfig:
    listeners = tuple(_load_listener(s, base) for s in sec.tables("listeners"))
    seen: set[tuple[str, str, int]] = set()
    for i, lst in enumerate(listeners):
        ident = ("udp" if lst.transport is Transport.UDP else "tcp", lst.address, lst.port)
        if ident in seen:
            raise ConfigError(
                f"{sec.key('listeners')}[{i}]", f"{lst.address}:{lst.port} is used twice"
            )
        seen.add(ident)
    hosted = _domains(sec, "hosted_domains")
    served = _domains(sec, "served_xmpp_domains")
    routes = []
    for rsec in sec.tables("routes"):
        routes.append(
            RouteConfig(
                domain=_domain(rsec.key("domain"), rsec.get("domain", str, required=True)),
                target=_sip_uri(rsec, "target"),
            )
        )
        rsec.done()
    tsec = sec.table("timers")
    timers = SipTimers(
        t1=_positive(tsec, "t1", 0.5), t2=_positive(tsec, "t2", 4.0), t4=_positive(tsec, "t4", 5.0)
    )
    tsec.done()
    csec = sec.table("tls_client")
    ca = csec.opt("ca_file", str)
    tls_client = TlsClientConfig(
        verify=csec.get("verify", bool, True),
        ca_file=_readable_file(csec.key("ca_file"), ca, base) if ca else None,
    )
    csec.done()
    trusted = sec.strings("trusted_peers")
    for i, peer in enumerate(trusted):
        try:
            ipaddress.ip_network(peer, strict=False)
        except ValueError:
            raise ConfigError(
                f"{sec.key('trusted_peers')}[{i}]", f"not an address or network: {peer!r}"
            ) from None
    status = sec.get("message_success_status", int, 200)
    if status not in (200, 202):
        raise ConfigError(sec.key("message_success_status"), f"must be 200 or 202, not {status}")
    size = sec.get("max_message_size", int, 65535)
    if not 1500 <= size <= 1 << 20:
        raise ConfigError(sec.key("max_message_size"), f"must be 1500..1048576, not {size}")
    out = SipConfig(
        listeners=listeners,
        hosted_domains=hosted,
        served_xmpp_domains=served,
        routes=tuple(routes),
        outbound_proxy=_sip_uri(sec, "outbound_proxy") if "outbound_proxy" in sec.data else None,
        trusted_peers=trusted,
        max_message_size=size,
        timers=timers,
        tls_client=tls_client,
        message_success_status=status,
        user_agent=sec.get("user_agent", str, "cpim-gateway"),
        federation=sec.get("federation", bool, False),
        trusted_tls_names=tuple(n.lower() for n in sec.strings("trusted_tls_names")),
    )
    sec.used.add("outbound_proxy")
    sec.done()
    return out


def _domains(sec: _Section, name: str) -> tuple[str, ...]:
    out: list[str] = []
    for i, value in enumerate(sec.strings(name)):
        d = _domain(f"{sec.key(name)}[{i}]", value)
        if d in out:
            raise ConfigError(f"{sec.key(name)}[{i}]", f"duplicate domain {d!r}")
        out.append(d)
    return tuple(out)


def _sip_uri(sec: _Section, name: str) -> str:
    value = sec.get(name, str, required=True)
    if not value.lower().startswith(("sip:", "sips:")) or len(value) < 5:
        raise ConfigError(sec.key(name), f"must be a sip: or sips: URI, not {value!r}")
    return value


def _load_registrar(sec: _Section, base: Path) -> RegistrarConfig:
    users = sec.opt("users_file", str)
    flow_timer = sec.opt("flow_timer", int)
    out = RegistrarConfig(
        users_file=_readable_file(sec.key("users_file"), users, base) if users else None,
        min_expires=sec.get("min_expires", int, 60),
        max_expires=sec.get("max_expires", int, 7200),
        default_expires=sec.get("default_expires", int, 3600),
        max_bindings=sec.get("max_bindings", int, 10),
        replace_same_instance=sec.get("replace_same_instance", bool, True),
        flow_timer=flow_timer,
        available_without_publish=sec.get("available_without_publish", bool, True),
        publish_min_expires=sec.get("publish_min_expires", int, 60),
        publish_max_expires=sec.get("publish_max_expires", int, 7200),
        publish_default_expires=sec.get("publish_default_expires", int, 3600),
    )
    if not 0 < out.min_expires <= out.default_expires <= out.max_expires:
        raise ConfigError(
            sec.key("default_expires"), "need 0 < min_expires <= default_expires <= max_expires"
        )
    if not 0 < out.publish_min_expires <= out.publish_default_expires <= out.publish_max_expires:
        raise ConfigError(
            sec.key("publish_default_expires"),
            "need 0 < publish_min_expires <= publish_default_expires <= publish_max_expires",
        )
    if out.max_bindings < 1:
        raise ConfigError(sec.key("max_bindings"), "must be at least 1")
    if flow_timer is not None and flow_timer < 1:
        raise ConfigError(sec.key("flow_timer"), "must be at least 1")
    sec.done()
    return out


def _load_limits(
    sec: _Section, name: str, defaults: tuple[tuple[str, LimitConfig], ...]
) -> tuple[tuple[str, LimitConfig], ...]:
    table = sec.table(name)
    merged = dict(defaults)
    for kind in list(table.data):
        if kind not in RATE_LIMIT_KINDS:
            raise ConfigError(
                table.key(kind), f"unknown kind (one of {', '.join(RATE_LIMIT_KINDS)})"
            )
        lim = table.table(kind)
        burst = lim.get("burst", float, required=True)
        rate = lim.get("rate", float, required=True)
        if burst < 0 or rate <= 0:
            raise ConfigError(lim.key("rate"), "need burst >= 0 and rate > 0")
        lim.done()
        merged[kind] = LimitConfig(burst, rate)
    table.done()
    return tuple(merged.items())


def _load_rate_limits(sec: _Section) -> RateLimitsConfig:
    d = RateLimitsConfig()
    out = RateLimitsConfig(
        per_source=_load_limits(sec, "per_source", d.per_source),
        per_user=_load_limits(sec, "per_user", d.per_user),
        max_keys=sec.get("max_keys", int, 100_000),
    )
    sec.done()
    return out


def _load_presence(sec: _Section) -> PresenceSection:
    out = PresenceSection(
        expires=sec.get("expires", int, 3600),
        min_expires=sec.get("min_expires", int, 60),
        max_expires=sec.get("max_expires", int, 86400),
        default_expires=sec.get("default_expires", int, 3600),
        notify_interval=sec.get("notify_interval", float, 5.0),
        retry_min=_positive(sec, "retry_min", 5.0),
        retry_max=_positive(sec, "retry_max", 900.0),
        contact=_sip_uri(sec, "contact") if "contact" in sec.data else None,
        auto_approve_hosted=sec.get("auto_approve_hosted", bool, False),
    )
    sec.used.add("contact")
    if out.expires <= 0:
        raise ConfigError(sec.key("expires"), "must be positive")
    if not 0 < out.min_expires <= out.default_expires <= out.max_expires:
        raise ConfigError(
            sec.key("default_expires"), "need 0 < min_expires <= default_expires <= max_expires"
        )
    if out.retry_min > out.retry_max:
        raise ConfigError(sec.key("retry_min"), "must not exceed retry_max")
    if out.notify_interval < 0:
        raise ConfigError(sec.key("notify_interval"), "must not be negative")
    sec.done()
    return out


def _load_reg_event(sec: _Section) -> RegEventSection:
    out = RegEventSection(
        enabled=sec.get("enabled", bool, True),
        default_expires=sec.get("default_expires", int, 3761),
        min_expires=sec.get("min_expires", int, 60),
        max_expires=sec.get("max_expires", int, 86400),
        notify_interval=sec.get("notify_interval", float, 5.0),
    )
    if not 0 < out.min_expires <= out.default_expires <= out.max_expires:
        raise ConfigError(
            sec.key("default_expires"), "need 0 < min_expires <= default_expires <= max_expires"
        )
    if out.notify_interval < 0:
        raise ConfigError(sec.key("notify_interval"), "must not be negative")
    sec.done()
    return out


def _load_call_activity(sec: _Section) -> CallActivitySection:
    out = CallActivitySection(
        enabled=sec.get("enabled", bool, True),
        show=sec.get("show", str, "dnd"),
        status=sec.get("status", str, "On the phone"),
        subscribe_dialog=sec.get("subscribe_dialog", str, "auto"),
    )
    if out.show not in CALL_SHOWS:
        raise ConfigError(sec.key("show"), f"must be one of {', '.join(CALL_SHOWS)}")
    if not out.status.strip() or len(out.status) > 200:
        raise ConfigError(sec.key("status"), "must be 1 to 200 characters, not blank")
    if out.subscribe_dialog not in DIALOG_SUBSCRIBE:
        raise ConfigError(
            sec.key("subscribe_dialog"), f"must be one of {', '.join(DIALOG_SUBSCRIBE)}"
        )
    sec.done()
    return out


def _load_dns(sec: _Section) -> DnsConfig:
    servers = tuple(
        _host_port(f"{sec.key('servers')}[{i}]", s, 53)
        for i, s in enumerate(sec.strings("servers"))
    )
    out = DnsConfig(
        servers=servers,
        timeout=_positive(sec, "timeout", 2.0),
        attempts=sec.get("attempts", int, 2),
        cache_size=sec.get("cache_size", int, 10000),
    )
    sec.done()
    return out


def _load_admin(sec: _Section, base: Path, env: Mapping[str, str]) -> AdminConfig:
    enabled = sec.get("enabled", bool, True)
    host, port = _host_port(sec.key("listen"), sec.get("listen", str, "127.0.0.1:8080"), 8080)
    web_root = sec.opt("web_root", str)
    out = AdminConfig(
        enabled=enabled,
        address=host,
        port=port,
        token=_secret(sec, "token", base, env),
        web_root=None if web_root is None else _directory(sec.key("web_root"), web_root, base),
        console_fates=_bounded(sec, "console_fates", 1000, 0, 100_000),
        console_streams=_bounded(sec, "console_streams", 8, 0, 1000),
        console_actions=sec.get("console_actions", bool, False),
    )
    sec.done()
    return out


def _directory(path: str, value: str, base: Path) -> Path:
    if not value.strip():  # "" would be the configuration's own directory
        raise ConfigError(path, "must name a directory (leave the key out to switch it off)")
    p = Path(value)
    p = p if p.is_absolute() else base / p
    if not p.is_dir():
        raise ConfigError(path, f"{str(p)!r} is not a directory")
    return p


def _load_lists(sec: _Section) -> ListsSection:
    out = ListsSection(
        enabled=sec.get("enabled", bool, True),
        max_entries=sec.get("max_entries", int, 1000),
        max_depth=sec.get("max_depth", int, 8),
        max_bytes=sec.get("max_bytes", int, 262_144),
        max_per_user=sec.get("max_per_user", int, 8),
        min_interval=sec.get("min_interval", float, 5.0),
        linphone_quirks=sec.get("linphone_quirks", bool, True),
    )
    for name in ("max_entries", "max_depth", "max_bytes", "max_per_user"):
        if getattr(out, name) <= 0:
            raise ConfigError(sec.key(name), "must be positive")
    if out.min_interval < 0:
        raise ConfigError(sec.key("min_interval"), "must not be negative")
    sec.done()
    return out


def _load_offline(sec: _Section) -> OfflineSection:
    out = OfflineSection(
        enabled=sec.get("enabled", bool, True),
        max_messages=sec.get("max_messages", int, 100),
        max_bytes=sec.get("max_bytes", int, 1_048_576),
        max_age=_positive(sec, "max_age", 604_800.0),
        retry_min=_positive(sec, "retry_min", 5.0),
        retry_max=_positive(sec, "retry_max", 300.0),
        notice=sec.get("notice", bool, True),
    )
    for name in ("max_messages", "max_bytes"):
        if getattr(out, name) <= 0:
            raise ConfigError(sec.key(name), "must be positive")
    if out.retry_min > out.retry_max:
        raise ConfigError(sec.key("retry_min"), "must not exceed retry_max")
    sec.done()
    return out


def _load_sessions(sec: _Section) -> SessionsSection:
    out = SessionsSection(
        max_sessions=sec.get("max_sessions", int, 1000),
        retry_after=sec.get("retry_after", int, 30),
        contact=_sip_uri(sec, "contact") if "contact" in sec.data else None,
        receipt_wait=sec.get("receipt_wait", float, 10.0),
        preference=sec.get("preference", str, "pager"),
    )
    if out.preference not in ("pager", "session"):
        raise ConfigError(sec.key("preference"), "must be pager or session")
    sec.used.add("contact")
    if out.receipt_wait < 0:
        raise ConfigError(sec.key("receipt_wait"), "must not be negative")
    if out.max_sessions < 0:
        raise ConfigError(sec.key("max_sessions"), "must not be negative")
    if out.retry_after <= 0:
        raise ConfigError(sec.key("retry_after"), "must be positive")
    sec.done()
    return out


def _load_xcap(sec: _Section, base: Path) -> XcapConfig:
    root = sec.get("root", str, "/xcap")
    if not re.fullmatch(r"(/[A-Za-z0-9._~\-]+)+", root):
        raise ConfigError(sec.key("root"), f"must be an absolute path like /xcap, not {root!r}")
    cert, key = sec.opt("certificate", str), sec.opt("private_key", str)
    if (cert is None) != (key is None):
        raise ConfigError(sec.key("certificate"), "give both certificate and private_key, or none")
    out = XcapConfig(
        enabled=sec.get("enabled", bool, False),
        host=_ip(sec, "host", "127.0.0.1"),
        port=_port(sec, "port", 8090),
        root=root,
        max_document_size=_bounded(sec, "max_document_size", 256 * 1024, 1024, 16 * 1024 * 1024),
        certificate=_readable_file(sec.key("certificate"), cert, base) if cert else None,
        private_key=_readable_file(sec.key("private_key"), key, base) if key else None,
    )
    sec.done()
    return out


def _load_store(sec: _Section, base: Path, env: Mapping[str, str]) -> StoreConfig:
    backend = sec.choice("backend", STORE_BACKENDS, "sqlite")
    dsn = _secret(sec, "dsn", base, env)
    if backend == "postgresql" and dsn is None:
        raise ConfigError(sec.key("dsn"), "missing (give dsn, dsn_file or dsn_env)")
    if backend != "postgresql" and dsn is not None:
        raise ConfigError(sec.key("dsn"), f'only for backend = "postgresql", not {backend!r}')
    out = StoreConfig(backend, dsn, _positive(sec, "connect_timeout", 5.0))
    sec.done()
    return out


def _load_cluster(sec: _Section) -> ClusterConfig:
    default_id = f"{socket.gethostname()}-{os.getpid()}"
    out = ClusterConfig(
        enabled=sec.get("enabled", bool, False),
        instance_id=sec.get("instance_id", str, default_id) or default_id,
        binding_cache=_nonnegative(sec, "binding_cache", 1.0),
        lease_ttl=_positive(sec, "lease_ttl", 15.0),
        lease_renew=_positive(sec, "lease_renew", 5.0),
        lease_margin=_nonnegative(sec, "lease_margin", 3.0),
        sweep_interval=_positive(sec, "sweep_interval", 5.0),
    )
    if not out.lease_renew < out.lease_ttl - out.lease_margin:
        raise ConfigError(sec.key("lease_renew"), "must be below lease_ttl - lease_margin")
    sec.done()
    return out


def _nonnegative(sec: _Section, name: str, default: float) -> float:
    value = float(sec.get(name, float, default))
    if value < 0:
        raise ConfigError(sec.key(name), f"must be 0 or more, not {value}")
    return value


def _load_msrp(sec: _Section, base: Path, env: Mapping[str, str]) -> MsrpConfig:
    cert, key = sec.opt("certificate", str), sec.opt("private_key", str)
    tls_port = _bounded(sec, "tls_port", 2856, 0, 65535) if "tls_port" in sec.data else None
    sec.used.add("tls_port")
    if tls_port is not None and (cert is None or key is None):
        missing = "certificate" if cert is None else "private_key"
        raise ConfigError(sec.key(missing), "required with tls_port")
    relay = sec.opt("relay", str)
    if relay is not None and not re.fullmatch(r"msrps?://[^/\s]+;tcp", relay, re.IGNORECASE):
        raise ConfigError(
            sec.key("relay"), f"not an MSRP relay URI (msrps://host:port;tcp): {relay!r}"
        )
    relay_ca = sec.opt("relay_ca", str)
    out = MsrpConfig(
        enabled=sec.get("enabled", bool, False),
        address=_ip(sec, "address", "127.0.0.1"),
        host=sec.opt("host", str),
        port=_bounded(sec, "port", 2855, 0, 65535),  # 0: any free port (tests)
        tls_port=tls_port,
        certificate=_readable_file(sec.key("certificate"), cert, base) if cert else None,
        private_key=_readable_file(sec.key("private_key"), key, base) if key else None,
        relay=relay,
        relay_username=sec.opt("relay_username", str),
        relay_password=_secret(sec, "relay_password", base, env),
        relay_ca=_readable_file(sec.key("relay_ca"), relay_ca, base) if relay_ca else None,
        relay_verify=sec.get("relay_verify", bool, True),
        max_message_size=_bounded(sec, "max_message_size", 1_048_576, 1, 1 << 30),
        max_chunk_size=_bounded(sec, "max_chunk_size", 1_048_576, 1024, 1 << 30),
        chunk_size=_bounded(sec, "chunk_size", 2048, 1, 1 << 20),
        max_sessions=_bounded(sec, "max_sessions", 10_000, 1, 1_000_000),
        max_connections=_bounded(sec, "max_connections", 10_000, 1, 1_000_000),
        idle_timeout=_positive(sec, "idle_timeout", 600.0),
        partial_timeout=_positive(sec, "partial_timeout", 30.0),
        transaction_timeout=_positive(sec, "transaction_timeout", 30.0),
        report_timeout=_positive(sec, "report_timeout", 30.0),
        connect_timeout=_positive(sec, "connect_timeout", 10.0),
    )
    if (out.relay_username is None) != (out.relay_password is None):
        raise ConfigError(
            sec.key("relay_username"), "give relay_username and relay_password together"
        )
    sec.done()
    return out


def _load_overload(sec: _Section) -> OverloadConfig:
    d = OverloadConfig()
    out = OverloadConfig(
        enabled=sec.get("enabled", bool, d.enabled),
        interval=_positive(sec, "interval", d.interval),
        lag_high=_positive(sec, "lag_high", d.lag_high),
        lag_low=_positive(sec, "lag_low", d.lag_low),
        pending_high=_bounded(sec, "pending_high", d.pending_high, 1, 10_000_000),
        pending_low=_bounded(sec, "pending_low", d.pending_low, 0, 10_000_000),
        clients_high=_bounded(sec, "clients_high", d.clients_high, 1, 10_000_000),
        clients_low=_bounded(sec, "clients_low", d.clients_low, 0, 10_000_000),
        xmpp_backlog_high=_bounded(sec, "xmpp_backlog_high", d.xmpp_backlog_high, 1, 2**40),
        xmpp_backlog_low=_bounded(sec, "xmpp_backlog_low", d.xmpp_backlog_low, 0, 2**40),
        udp_backlog_high=_positive(sec, "udp_backlog_high", d.udp_backlog_high),
        udp_backlog_low=sec.get("udp_backlog_low", float, d.udp_backlog_low),
        stream_backlog_high=_bounded(sec, "stream_backlog_high", d.stream_backlog_high, 1, 2**40),
        stream_backlog_low=_bounded(sec, "stream_backlog_low", d.stream_backlog_low, 0, 2**40),
        hold=sec.get("hold", float, d.hold),
        recovery=_positive(sec, "recovery", d.recovery),
        retry_after=_bounded(sec, "retry_after", d.retry_after, 1, 86400),
    )
    for low, high in (
        ("lag_low", "lag_high"),
        ("pending_low", "pending_high"),
        ("clients_low", "clients_high"),
        ("xmpp_backlog_low", "xmpp_backlog_high"),
        ("udp_backlog_low", "udp_backlog_high"),
        ("stream_backlog_low", "stream_backlog_high"),
    ):
        if not 0 <= getattr(out, low) <= getattr(out, high):
            raise ConfigError(sec.key(low), f"must be 0..{high} ({getattr(out, high)})")
    if out.udp_backlog_high > 1:
        raise ConfigError(sec.key("udp_backlog_high"), "is a share of the buffer: at most 1")
    if out.hold < 0:
        raise ConfigError(sec.key("hold"), "must not be negative")
    sec.done()
    return out


def _load_runtime(sec: _Section) -> RuntimeConfig:
    out = RuntimeConfig(event_loop=sec.choice("event_loop", EVENT_LOOPS, "asyncio"))
    sec.done()
    return out


def load_config(
    data: Mapping[str, Any],
    *,
    base_dir: Path,
    env: Mapping[str, str] | None = None,
    source: Path | None = None,
) -> Config:
    """Build a Config from parsed TOML; raises ConfigError naming the key path."""
    env = os.environ if env is None else env
    root = _Section(data, "")
    cfg = Config(
        gateway=_load_gateway(root.table("gateway"), base_dir),
        xmpp=_load_xmpp(root.table("xmpp"), base_dir, env),
        sip=_load_sip(root.table("sip"), base_dir),
        registrar=_load_registrar(root.table("registrar"), base_dir),
        rate_limits=_load_rate_limits(root.table("rate_limits")),
        presence=_load_presence(root.table("presence")),
        offline=_load_offline(root.table("offline")),
        dns=_load_dns(root.table("dns")),
        admin=_load_admin(root.table("admin"), base_dir, env),
        store=_load_store(root.table("store"), base_dir, env),
        reg_event=_load_reg_event(root.table("reg_event")),
        call_activity=_load_call_activity(root.table("call_activity")),
        sessions=_load_sessions(root.table("sessions")),
        msrp=_load_msrp(root.table("msrp"), base_dir, env),
        xcap=_load_xcap(root.table("xcap"), base_dir),
        lists=_load_lists(root.table("lists")),
        overload=_load_overload(root.table("overload")),
        runtime=_load_runtime(root.table("runtime")),
        cluster=_load_cluster(root.table("cluster")),
        source=source,
    )
    root.done()
    _cross_check(cfg)
    return cfg


def _cross_check(cfg: Config) -> None:
    if cfg.cluster.enabled and cfg.store.backend != "postgresql":
        raise ConfigError(
            "cluster.enabled", 'a cluster shares its store: store.backend = "postgresql"'
        )
    comps = {c.domain: c for c in cfg.xmpp.components}
    for i, d in enumerate(cfg.sip.hosted_domains):
        if d in cfg.sip.served_xmpp_domains:
            raise ConfigError(
                f"sip.hosted_domains[{i}]", f"{d!r} is also in sip.served_xmpp_domains"
            )
    for i, c in enumerate(cfg.xmpp.components):
        if c.domain in cfg.sip.served_xmpp_domains:
            raise ConfigError(
                f"xmpp.components[{i}].domain",
                f"{c.domain!r} is the gateway's own domain, not a served XMPP domain",
            )
    escaped = any(c.addressing is Addressing.ESCAPED for c in comps.values())
    for i, d in enumerate(cfg.sip.hosted_domains):
        comp = comps.get(d)
        if not escaped and (comp is None or comp.addressing is not Addressing.MIRRORED):
            raise ConfigError(
                f"sip.hosted_domains[{i}]",
                f"{d!r} is neither a mirrored component domain nor reachable via an escaped one",
            )


def read_config(path: Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and load a TOML file; every failure is a ConfigError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("", f"{path}: invalid TOML: {exc}") from None
    return load_config(data, base_dir=path.resolve().parent, env=env, source=path)

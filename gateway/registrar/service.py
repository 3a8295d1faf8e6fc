"""The registrar as a service: the asyncio glue around the pure registrar cores.

`Registrar` answers REGISTER (RFC 3261 §10.3 with Digest, RFC 8760) and PUBLISH
(RFC 3903) for the hosted SIP domains, keeps the bindings and publications in the store
(committed before every answer, restored at start), removes expired ones with one
`loop.call_at` timer over a `DeadlineQueue`, and decides for the other SIP edges who may
send what (`authorize`: trust model, Digest challenge, rate limits; docs/security.md).
Delivery to hosted users goes over the registered flows (`send_to_user`, see
`gateway.registrar.delivery`). Presence of hosted users is exposed to the presence
bridge through `presence_of` and `on_presence_change`.

Every refusal (challenge, 403, relay refused, 503 rate limit) is one log line with the
fields method, call_id, source, claimed, reason (and detail), and one increment of
`cpim_sip_requests_refused{reason}`. Challenges are logged at debug level: they are part
of every normal registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gateway.cluster.keeper import REGISTRAR_EXPIRY, Leases, SoloLeases
from gateway.config import Config, ConfigError, RateLimitsConfig
from gateway.logs import event
from gateway.memo import Memo
from gateway.metrics import Metrics
from gateway.registrar import trust
from gateway.registrar.bindings import (
    BindingsChange,
    RegistrarPolicy,
    canonical_aor,
    delivery_order,
    live_bindings,
    next_deadline,
    process_register,
    resource_of,
)
from gateway.registrar.delivery import NoBinding, NoSuchUser, deliver
from gateway.registrar.publish import (
    PRESENCE_AND_DIALOG,
    PublishPolicy,
    effective_presence,
    process_publish,
)
from gateway.registrar.ratelimit import Kind, Limit, RateLimitConfig, RateLimiter, Verdict
from gateway.registrar.users import User, UserDirectory, UsersFileError, read_users
from gateway.sip.auth import (
    AuthError,
    AuthStatus,
    NonceManager,
    make_challenge,
    parse_auth_params,
    verify_authorization,
)
from gateway.sip.deadlines import DeadlineQueue
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import NameAddr
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.ua import format_host
from gateway.sip.uri import SipUri, parse_uri, uri_equal
from gateway.sip.useragent import IncomingRequest, RequestSender
from gateway.store.api import Binding, Flow, Publication, Store, StoreError
from mappings.avatar import Avatar
from mappings.pidf import PresenceDocument

__all__ = [
    "SECRET_FILENAME",
    "Identity",
    "NoBinding",
    "Registrar",
    "load_nonce_secret",
    "rate_limit_config",
]

log = logging.getLogger(__name__)

SECRET_FILENAME = "digest-nonce.key"  # 32 random bytes, mode 0600, in the state directory
_SECRET_BYTES = 32
_STORE_RETRY = 30.0  # seconds before an expiry the store refused is tried again

# authorize() kind -> the rate-limit bucket it is charged to (None: not limited).
_LIMIT_KINDS: dict[str, Kind | None] = {
    "message": "message",
    "subscribe": "subscribe",
    "notify": None,
    "publish": None,
}
_AUTH_FAILED = frozenset({AuthStatus.BAD, AuthStatus.UNKNOWN_USER, AuthStatus.REPLAY})


@dataclass(frozen=True)
class Identity:
    """Who sent an accepted request. `aor` is the canonical `sip:user@domain` of the
    sender (From); `resource` the XMPP resource of the sending device when known (the
    request came on a registered flow); `via` how it was accepted: "digest",
    "registered-flow", "trusted-peer" or "federation"."""

    aor: str
    resource: str | None
    via: str


def rate_limit_config(cfg: RateLimitsConfig) -> RateLimitConfig:
    """The pure limiter's config from `[rate_limits]`."""

    def limits(items: Iterable[tuple[str, Any]]) -> dict[Kind, Limit]:
        out: dict[Kind, Limit] = {}
        for kind, lim in items:
            if kind in ("register-failure", "message", "subscribe"):
                out[kind] = Limit(lim.burst, lim.rate)  # type: ignore[index]
        return out

    return RateLimitConfig(
        per_source=limits(cfg.per_source), per_user=limits(cfg.per_user), max_keys=cfg.max_keys
    )


def load_nonce_secret(state_dir: Path) -> bytes:
    """The Digest nonce secret, created on first start (32 random bytes, mode 0600), so
    that nonces issued before a restart still verify. OSError names the file."""
    path = state_dir / SECRET_FILENAME
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) != _SECRET_BYTES:
            raise OSError(
                f"digest nonce secret {str(path)!r} has {len(secret)} bytes, not "
                f"{_SECRET_BYTES}; delete it to make a new one"
            ) from None
        return secret
    secret = secrets.token_bytes(_SECRET_BYTES)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


def _aor_of(name_addr: NameAddr | None) -> str | None:
    return None if name_addr is None else canonical_aor(name_addr.uri)


def _normalise(aor: str) -> tuple[str, str | None]:
    """(canonical AOR, gr value) for `sip:user@host[;gr=...]`; other text unchanged."""
    try:
        uri = parse_uri(aor)
    except RemoteProtocolError:
        return aor, None
    canonical = canonical_aor(uri)
    if canonical is None or not isinstance(uri, SipUri):
        return aor, None
    return canonical, uri.gr


def _domain_of(aor: str) -> str:
    return aor.rpartition("@")[2].lower().rstrip(".")


def _source(incoming: IncomingRequest) -> str:
    return f"{format_host(incoming.source[0])}:{incoming.source[1]}"


class DecisionMemo:
    """`trust.decide` results, remembered (issue 11: the same peers send again and again).

    `decide` is a pure function of the (frozen, hashable) facts and the trust configuration,
    and its decisions are frozen; the memo is emptied when the configuration object changes
    or when it is full (bounded). An exception is not remembered: it is raised again."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._config: trust.TrustConfig | None = None
        self._known: Memo[trust.RequestFacts, trust.Decision] = Memo(limit)

    def decide(self, facts: trust.RequestFacts, config: trust.TrustConfig) -> trust.Decision:
        if config is not self._config:
            self._known.clear()
            self._config = config
        decision = self._known.peek(facts)
        if decision is None:
            decision = self._known.put(facts, trust.decide(facts, config))
        return decision


class Registrar:
    """REGISTER, PUBLISH, the trust gate and delivery for the hosted SIP domains."""

    def __init__(
        self,
        cfg: Config,
        store: Store,
        endpoint: RequestSender,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        nonce_lifetime: float = 300.0,
        leases: Leases | None = None,
    ) -> None:
        self.cfg = cfg
        self._store = store
        self._endpoint = endpoint
        self._metrics = metrics
        self._clock = clock
        reg = cfg.registrar
        hosted = frozenset(d.lower().rstrip(".") for d in cfg.sip.hosted_domains)
        self.policy = RegistrarPolicy(
            hosted_domains=hosted,
            min_expires=reg.min_expires,
            max_expires=reg.max_expires,
            default_expires=reg.default_expires,
            max_bindings=reg.max_bindings,
            replace_same_instance=reg.replace_same_instance,
            flow_timer=reg.flow_timer,
        )
        self.publish_policy = PublishPolicy(
            hosted_domains=hosted,
            min_expires=reg.publish_min_expires,
            max_expires=reg.publish_max_expires,
            default_expires=reg.publish_default_expires,
        )
        if cfg.call_activity.enabled:  # devices publish their dialogs (docs/call-activity.md)
            self.publish_policy = replace(self.publish_policy, events=PRESENCE_AND_DIALOG)
        self.trust = trust.TrustConfig.from_config(
            cfg, federation=cfg.sip.federation, trusted_tls_names=cfg.sip.trusted_tls_names
        )
        self.limiter = RateLimiter(rate_limit_config(cfg.rate_limits))
        self._decisions = DecisionMemo()
        self.users = UserDirectory()
        self._nonce_lifetime = nonce_lifetime
        self._nonces: NonceManager | None = None
        self._bindings: dict[str, tuple[Binding, ...]] = {}
        self._publications: dict[str, tuple[Publication, ...]] = {}
        self._count = 0  # bindings held, for the registrations gauge
        # ("b", aor) -> earliest binding expiry; ("p", aor) -> earliest publication expiry.
        self._deadlines: DeadlineQueue[tuple[str, str]] = DeadlineQueue()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listeners: list[Callable[[str], None]] = []
        self._register_listeners: list[Callable[[str, SipRequest], None]] = []
        self._binding_listeners: list[Callable[[BindingsChange], None]] = []
        # Connection ids restart at 1 in every process: prefixing them with a per-process
        # epoch keeps a restored binding from matching an unrelated new connection.
        self._epoch = secrets.token_hex(4)
        # A cluster (docs/cluster.md): bindings are read through the shared store, at most
        # `binding_cache` seconds old (REGISTER reads them fresh); the expiry sweep runs on
        # the instance holding the REGISTRAR_EXPIRY lease. One process: the table is truth.
        self._leases: Leases = leases or SoloLeases()
        self._shared = cfg.cluster.enabled
        self._fetched: Memo[str, float] = Memo(65536)  # AOR -> when read from the store
        self._sweeper: asyncio.Task[None] | None = None
        self._held: Callable[[str], tuple[Binding, ...]] = (
            self._read_through if self._shared else self._local
        )
        self._leases.on_gain(REGISTRAR_EXPIRY, self._sweep_soon)  # a takeover sweeps at once

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the user file, the nonce secret and the stored state; arm the timer."""
        self._loop = asyncio.get_running_loop()
        self.users = self._load_users()
        secret = load_nonce_secret(self.cfg.gateway.state_dir)
        self._nonces = NonceManager(secret, now=self._clock(), lifetime=self._nonce_lifetime)
        self._restore()
        self._rearm()
        if self._shared:
            self._sweeper = self._loop.create_task(self._sweep_loop())
        event(
            log,
            logging.INFO,
            "registrar ready",
            domains=",".join(sorted(self.policy.hosted_domains)),
            users=len(self.users),
            bindings=self._count,
            publications=sum(len(p) for p in self._publications.values()),
        )

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at, self._loop = None, None, None

    def _load_users(self) -> UserDirectory:
        path = self.cfg.registrar.users_file
        if path is None:
            if self.policy.hosted_domains:
                log.warning("no registrar.users_file: hosted users cannot authenticate")
            return UserDirectory()
        try:
            return read_users(path)
        except UsersFileError as exc:
            raise ConfigError("registrar.users_file", f"{path}: {exc}") from None

    def display_name(self, aor: str) -> str | None:
        """The display name the user file gives the hosted user `aor` (the vCard's FN on
        XMPP, docs/xmpp.md); read at each call, so a reloaded file applies at once."""
        return self.users.display_name(aor)

    def linked_xmpp(self, aor: str) -> str | None:
        """The XMPP account the user file links to the hosted user `aor` (RFC 7081; the
        vCard's JABBERID on XMPP, docs/xmpp.md); read at each call, like `display_name`."""
        return self.users.linked_xmpp(aor)

    def avatar(self, aor: str) -> Avatar | None:
        """The avatar the user file gives the hosted user `aor` (XEP-0153: the vCard's
        PHOTO and the photo hash in presence); read at each call, like `display_name`."""
        return self.users.avatar(aor)

    def reload_users(self) -> bool:
        """Re-read the configured user file (`replace_users`). On error the users in use
        are kept and the error is logged; False then."""
        try:
            users = self._load_users()
        except ConfigError as exc:
            log.error("user file not reloaded, keeping %d users: %s", len(self.users), exc)
            return False
        self.replace_users(users)
        event(log, logging.INFO, "user file reloaded", users=len(users))
        return True

    def replace_users(self, users: UserDirectory) -> int:
        """Use `users` from now on (SIGHUP re-read the user file). A user who is no longer
        in it loses the registrations it has, at once: they are removed from the store, and
        presence learns the user is gone, as when they expire. Returns how many bindings
        were removed. A StoreError leaves that user's bindings in place (logged); they
        expire as usual and the user cannot register again."""
        removed_users = [u.sip_aor for u in self.users.users if users.by_aor(u.aor) is None]
        new_pictures = [u.sip_aor for u in users.users if _photo(self.users, u) != _photo(users, u)]
        self.users = users
        for aor in new_pictures:  # XEP-0153: watchers get the new photo hash now
            self._changed(_normalise(aor)[0])
        dropped = 0
        for aor in removed_users:
            key = _normalise(aor)[0]
            current = self._bindings.get(key, ())
            if not current:
                continue
            try:
                self._commit_bindings(key, ())
            except StoreError as exc:
                event(
                    log,
                    logging.ERROR,
                    "removed user's bindings not dropped",
                    aor=key,
                    error=str(exc),
                )
                continue
            dropped += len(current)
            gone = ",".join(resource_of(b) for b in current)
            event(log, logging.INFO, "registration removed with its user", aor=key, resources=gone)
            self._bindings_changed(BindingsChange(key, current, (), "rejected", self._clock()))
            self._changed(key)
        return dropped

    def _restore(self) -> None:
        """Bindings and publications from the store, expired ones removed."""
        now = self._clock()
        grouped: dict[str, list[Binding]] = {}
        for b in self._store.all_bindings():
            grouped.setdefault(b.aor, []).append(b)
        for aor, items in grouped.items():
            live = live_bindings(items, now)
            if len(live) != len(items):
                self._store.set_bindings(aor, live)
            self._cache_bindings(aor, live)
        pubs: dict[tuple[str, str], list[Publication]] = {}
        for p in self._store.all_publications():
            pubs.setdefault((p.aor, p.event), []).append(p)
        for (aor, ev), stored in pubs.items():
            fresh = tuple(p for p in stored if p.expires_at > now)
            if len(fresh) != len(stored):
                self._store.set_publications(aor, ev, fresh)
            self._cache_publications(aor, (*self._publications.get(aor, ()), *fresh))

    # ------------------------------------------------------------------ state

    def _cache_bindings(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        self._count += len(bindings) - len(self._bindings.get(aor, ()))
        if bindings:
            self._bindings[aor] = bindings
        else:
            self._bindings.pop(aor, None)
        self._deadlines.set(("b", aor), next_deadline(bindings))
        self._metrics.registrations.set(self._count)

    def _cache_publications(self, aor: str, pubs: tuple[Publication, ...]) -> None:
        if pubs:
            self._publications[aor] = pubs
        else:
            self._publications.pop(aor, None)
        self._deadlines.set(("p", aor), min((p.expires_at for p in pubs), default=None))

    def _commit_bindings(self, aor: str, bindings: tuple[Binding, ...]) -> None:
        """Store first (StoreError leaves everything unchanged), then the cache."""
        self._store.set_bindings(aor, bindings)
        self._cache_bindings(aor, bindings)
        self._rearm()

    def _rearm(self) -> None:
        at = self._deadlines.peek_time()
        if at == self._timer_at or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        if at is None:
            self._timer = None
            return
        delay = max(0.0, at - self._clock())
        self._timer = self._loop.call_at(self._loop.time() + delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        now = self._clock()
        for kind, aor in self._deadlines.pop_due(now):
            try:
                if kind == "b":
                    self._expire_bindings(aor, now)
                else:
                    self._expire_publications(aor, now)
            except StoreError as exc:
                event(log, logging.ERROR, "expiry not stored, retrying", aor=aor, error=str(exc))
                self._deadlines.set((kind, aor), now + _STORE_RETRY)
        self._rearm()

    def _expire_bindings(self, aor: str, now: float) -> None:
        if self._shared:
            self._expire_shared(aor, now)
            return
        current = self._bindings.get(aor, ())
        live = live_bindings(current, now)
        if len(live) == len(current):
            self._deadlines.set(("b", aor), next_deadline(live))
            return
        self._store.set_bindings(aor, live)
        self._cache_bindings(aor, live)
        gone = [resource_of(b) for b in current if b not in live]
        event(log, logging.INFO, "registration expired", aor=aor, resources=",".join(gone))
        self._bindings_changed(BindingsChange(aor, current, live, "expired", now))
        self._changed(aor)

    # ------------------------------------------------------------------ a cluster

    def _local(self, aor: str) -> tuple[Binding, ...]:
        """One process: the in-memory table is the truth (written through to the store)."""
        return self._bindings.get(aor, ())

    def _read_through(self, aor: str, max_age: float | None = None) -> tuple[Binding, ...]:
        """A cluster: the store is the truth; the table caches what was read from it for
        `binding_cache` seconds (`max_age` 0: read now). A store that fails to answer
        leaves the cached set in use (logged): delivery degrades, it does not stop."""
        now = self._clock()
        age = self.cfg.cluster.binding_cache if max_age is None else max_age
        at = self._fetched.peek(aor)
        if at is not None and now - at < age:
            return self._bindings.get(aor, ())
        try:
            stored = self._store.bindings(aor)
        except StoreError as exc:
            event(log, logging.ERROR, "bindings not read, cache used", aor=aor, error=str(exc))
            return self._bindings.get(aor, ())
        self._fetched.put(aor, now)
        live = live_bindings(stored, now)
        if live != self._bindings.get(aor, ()):
            self._cache_bindings(aor, live)
            self._rearm()
        return live

    def _expire_shared(self, aor: str, now: float) -> None:
        """An expiry in a cluster: the lease owner removes expired bindings from the
        store (read fresh: another instance may have refreshed them); the others only
        forget them from their cache."""
        if not self._leases.holds(REGISTRAR_EXPIRY):
            cached = self._bindings.get(aor, ())
            self._cache_bindings(aor, live_bindings(cached, now))
            return
        stored = self._store.bindings(aor)
        live = live_bindings(stored, now)
        if len(live) == len(stored):
            self._cache_bindings(aor, live)
            return
        self._store.set_bindings(aor, live)
        self._cache_bindings(aor, live)
        self._fetched.put(aor, now)
        gone = [resource_of(b) for b in stored if b not in live]
        event(log, logging.INFO, "registration expired", aor=aor, resources=",".join(gone))
        self._bindings_changed(BindingsChange(aor, stored, live, "expired", now))
        self._changed(aor)

    def sweep_store(self) -> int:
        """The lease owner's scan of the shared store for expired bindings of any AOR,
        wherever they were registered; returns how many AORs it changed."""
        if not self._leases.holds(REGISTRAR_EXPIRY):
            return 0
        now = self._clock()
        due = {b.aor for b in self._store.all_bindings() if b.expires_at <= now}
        for aor in sorted(due):
            self._expire_shared(aor, now)
        self._rearm()
        return len(due)

    def _sweep_soon(self) -> None:
        if self._loop is not None and self._shared:
            self._loop.call_soon(self._sweep_guarded)

    def _sweep_guarded(self) -> None:
        try:
            self.sweep_store()
        except StoreError as exc:  # error boundary: the next sweep tries again
            event(log, logging.ERROR, "expiry sweep failed", error=str(exc))

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.cluster.sweep_interval)
            self._sweep_guarded()

    def _expire_publications(self, aor: str, now: float) -> None:
        current = self._publications.get(aor, ())
        fresh = tuple(p for p in current if p.expires_at > now)
        for ev in {p.event for p in current if p.expires_at <= now}:
            self._store.set_publications(aor, ev, tuple(p for p in fresh if p.event == ev))
        self._cache_publications(aor, fresh)
        if len(fresh) != len(current):
            event(log, logging.INFO, "publication expired", aor=aor)
            self._changed(aor)

    def _changed(self, aor: str) -> None:
        for callback in list(self._listeners):
            try:
                callback(aor)
            except Exception:  # error boundary: a watcher bug must not break the registrar
                log.exception("presence change callback failed", extra={"fields": {"aor": aor}})

    # ------------------------------------------------------------------ queries

    def is_hosted(self, domain: str) -> bool:
        return self.policy.hosts(domain)

    def bindings(self, aor: str) -> list[Binding]:
        """Live bindings of `aor` in delivery order."""
        key, gr = _normalise(aor)
        return list(delivery_order(self._held(key), self._clock(), resource=gr))

    def resource_for(self, aor: str, contact_or_instance: str) -> str | None:
        """The XMPP resource of the live binding of `aor` that `contact_or_instance` names:
        a `+sip.instance` value (with or without angle brackets), a Contact URI or a GRUU."""
        key, _ = _normalise(aor)
        live = live_bindings(self._held(key), self._clock())
        value = contact_or_instance.strip()
        bare = value[1:-1] if value.startswith("<") and value.endswith(">") else value
        for b in live:
            if b.instance is not None and b.instance in (value, f"<{bare}>"):
                return resource_of(b)
        try:
            uri = parse_uri(bare)
        except RemoteProtocolError:
            return None
        if not isinstance(uri, SipUri):
            return None
        if uri.gr is not None and canonical_aor(uri) == key:
            return next((resource_of(b) for b in live if resource_of(b) == uri.gr), None)
        for b in live:
            try:
                if uri_equal(parse_uri(b.contact), uri):
                    return resource_of(b)
            except RemoteProtocolError:
                continue
        return None

    def presence_of(self, aor: str) -> PresenceDocument | None:
        """Effective presence: the composed PUBLISHed state, or registered devices as
        available when `registrar.available_without_publish`; None: unavailable."""
        key, _ = _normalise(aor)
        return effective_presence(
            key,
            self._publications.get(key, ()),
            self._bindings.get(key, ()),
            self._clock(),
            available_without_publish=self.cfg.registrar.available_without_publish,
        )

    def on_register(self, callback: Callable[[str, SipRequest], None]) -> None:
        """`callback(aor, request)` after an accepted REGISTER changed the AOR's bindings:
        its Accept says what the device takes (the pager's file links, docs/pager.md)."""
        self._register_listeners.append(callback)

    def _registered(self, aor: str, req: SipRequest) -> None:
        for callback in list(self._register_listeners):
            try:
                callback(aor, req)
            except Exception:  # error boundary, as `_changed`
                log.exception("register callback failed", extra={"fields": {"aor": aor}})

    def on_bindings_change(self, callback: Callable[[BindingsChange], None]) -> None:
        """`callback(change)` after the AOR's bindings changed: an accepted REGISTER that
        changed them, an expiry, or the user's removal (the reg event, RFC 3680)."""
        self._binding_listeners.append(callback)

    def _bindings_changed(self, change: BindingsChange) -> None:
        for callback in list(self._binding_listeners):
            try:
                callback(change)
            except Exception:  # error boundary, as `_changed`
                log.exception("bindings callback failed", extra={"fields": {"aor": change.aor}})

    def publications(self, aor: str, event_package: str) -> tuple[Publication, ...]:
        """The live publications of `aor` for one event package (oldest first): what a
        device PUBLISHed, e.g. its dialog state (call activity, docs/call-activity.md)."""
        key, _ = _normalise(aor)
        now = self._clock()
        live = (
            p
            for p in self._publications.get(key, ())
            if p.event == event_package and p.expires_at > now
        )
        return tuple(sorted(live, key=lambda p: p.updated_at))

    def on_presence_change(self, callback: Callable[[str], None]) -> None:
        """`callback(aor)` after a registration, unregistration, expiry or publication
        changed what `presence_of(aor)` may return."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ delivery

    async def send_to_user(
        self,
        aor: str,
        build: Callable[[str], SipRequest],
        *,
        resource: str | None = None,
    ) -> SipResponse:
        """Deliver to a hosted user's registered contacts, one after another (module
        `gateway.registrar.delivery`). A GRUU as `aor`, or `resource`, limits delivery to
        that device. NoBinding when nothing is registered."""
        key, _ = _normalise(aor)
        targets = self.locate(aor, resource=resource)
        return await deliver(self._endpoint, key, targets, build)

    def locate(self, uri: str, *, resource: str | None = None) -> tuple[Binding, ...]:
        """The location service (RFC 3261 §16.5) for a URI of a hosted domain: a GRUU
        (RFC 5627 §6.1, the `gr` kept for the lookup) gives the bindings of its one
        device, an AOR all its bindings, in delivery order. None left: NoBinding (480,
        RFC 3261 §16.5, RFC 5627 §5.3); never a DNS lookup."""
        key, gr = _normalise(uri)
        targets = delivery_order(self._held(key), self._clock(), resource=resource or gr)
        if not targets:
            if not self.knows(key):
                raise NoSuchUser(key)  # issue 17 item 2: 404, not 480
            raise NoBinding(uri if gr is not None else key)
        return targets

    def knows(self, aor: str) -> bool:
        """Is `aor` a user of a hosted domain: in the user file, or registered now? Without
        a user file every user is known (trusted peers may register anyone)."""
        key, _ = _normalise(aor)
        if self.cfg.registrar.users_file is None or self._held(key):
            return True
        return self.users.by_aor(key) is not None

    # ------------------------------------------------------------------ REGISTER

    def handle_register(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        req = incoming.request
        now = self._clock()
        ip = incoming.source[0]
        claimed = _aor_of(req.to)  # RFC 3261 §10.3 step 5: the AOR is in To
        verdict = self.limiter.allowed("register-failure", source=ip, user=claimed, now=now)
        if not verdict.allowed:
            self._rate_limited(incoming, claimed, verdict, "register-failure")
            return None
        facts, auth, _ = self._facts(incoming, claimed, now)
        decision = trust.decide(facts, self.trust)
        if not isinstance(decision, trust.Accept):
            if auth in _AUTH_FAILED or not isinstance(decision, trust.Challenge):
                self.limiter.charge("register-failure", source=ip, user=claimed, now=now)
            self._answer_refusal(incoming, facts, decision, auth, now)
            return None
        if not claimed:
            existing: tuple[Binding, ...] = ()
        elif self._shared:  # §10.3 step 7 over the store: another instance may have written
            existing = self._read_through(claimed, 0.0)
        else:
            existing = self._bindings.get(claimed, ())
        outcome = process_register(
            req, now, self.policy, existing, flow=self._flow(incoming), identity=decision.identity
        )
        if outcome.ok and outcome.changes and outcome.aor is not None:
            try:
                self._commit_bindings(outcome.aor, outcome.bindings)
            except StoreError as exc:  # §10.3 step 7: all or nothing
                event(
                    log, logging.ERROR, "registration not stored", aor=outcome.aor, error=str(exc)
                )
                incoming.reply(500, "Registration Not Stored")
                return None
            changes = outcome.changes
            event(
                log,
                logging.INFO,
                "registration",
                aor=outcome.aor,
                via=decision.via,
                source=f"{incoming.transport}:{_source(incoming)}",
                added=",".join(resource_of(b) for b in changes.added),
                refreshed=len(changes.refreshed),
                removed=",".join(resource_of(b) for b in changes.removed),
                bindings=len(outcome.bindings),
            )
            self._registered(outcome.aor, req)
            self._bindings_changed(
                BindingsChange(outcome.aor, existing, outcome.bindings, "register", now, changes)
            )
            if changes.added or changes.removed:
                self._changed(outcome.aor)
        elif outcome.status == 403:
            self.limiter.charge("register-failure", source=ip, user=claimed, now=now)
            self._refused(incoming, claimed, "forbidden", outcome.reason)
        elif not outcome.ok:  # 400 (bad +sip.instance, reg-id, CSeq...), 423, 439
            event(
                log,
                logging.INFO,
                "registration refused",
                aor=claimed or "-",
                status=outcome.status,
                reason=outcome.reason,
                call_id=req.call_id,
                source=f"{incoming.transport}:{_source(incoming)}",
            )
        incoming.respond(outcome.response(req, to_tag=incoming.to_tag))
        return None

    def _flow(self, incoming: IncomingRequest) -> Flow:
        _, _, local = incoming.listener.partition(":")
        host, _, port = local.rpartition(":")
        conn = incoming.connection_id
        return Flow(
            transport=incoming.transport,
            local=f"{format_host(host)}:{port}" if host else local,
            remote=_source(incoming),
            connection_id=None if conn is None else f"{self._epoch}/{conn}",
        )

    def _registered_flow(
        self, incoming: IncomingRequest, aor: str | None, now: float
    ) -> Binding | None:
        """The live binding of `aor` whose flow this request arrived on (RFC 5626 §5.2):
        the same connection for TCP/TLS, the same source address and port for UDP."""
        bindings = None if aor is None else self._held(aor)
        if not bindings:
            return None
        flow = self._flow(incoming)
        for b in live_bindings(bindings, now):
            f = b.flow
            if f is None or f.transport != flow.transport:
                continue
            if flow.connection_id is not None:
                if f.connection_id == flow.connection_id:
                    return b
            elif f.connection_id is None and f.remote == flow.remote:
                return b
        return None

    # ------------------------------------------------------------------ the trust gate

    def _realm(self, aor: str | None) -> str:
        """The Digest realm of a hosted AOR: the user's, or the domain for unknown users
        (challenged exactly like known ones)."""
        if aor is None:
            return next(iter(sorted(self.policy.hosted_domains)), "")
        user = self.users.by_aor(aor)
        return user.realm if user is not None else _domain_of(aor)

    def _algorithms(self, aor: str | None, realm: str) -> tuple[str, ...]:
        """Challenge algorithms: those the claimed user has hashes for, SHA-256 first
        (RFC 8760 §2.4); the realm's set for unknown users. Offering a user only what it
        can answer keeps MD5-only clients working whose stack gives up at the first
        algorithm it does not know (libre, hence baresip 1.0) instead of skipping it."""
        user = None if aor is None else self.users.by_aor(aor)
        if user is None:
            return self.users.algorithms(realm)
        has = (("SHA-256", user.ha1_sha256), ("MD5", user.ha1_md5))
        return tuple(alg for alg, digest in has if digest)

    def _digest(
        self, req: SipRequest, claimed: str | None, now: float
    ) -> tuple[str | None, AuthStatus | None]:
        """(authenticated AOR, status) from Authorization (REGISTER) or
        Proxy-Authorization credentials for our realm; (None, None) when there are none."""
        if claimed is None or not self.policy.hosts(_domain_of(claimed)):
            return None, None
        assert self._nonces is not None, "registrar not started"
        realm = self._realm(claimed)
        name = "Authorization" if req.method == "REGISTER" else "Proxy-Authorization"
        value = None
        for candidate in req.headers.get_all(name):
            try:
                _, params = parse_auth_params(candidate)
            except AuthError:
                continue
            if params.get("realm") == realm:
                value = candidate
                break
        if value is None:
            return None, None  # none for us (maybe for a proxy further on)
        result = verify_authorization(
            value, req.method, self.users.ha1_lookup, now, nonces=self._nonces, realm=realm
        )
        if not result.ok or result.username is None:
            return None, result.status
        user = self.users.by_login(result.username, realm)
        return (None if user is None else user.sip_aor), result.status

    def _facts(
        self, incoming: IncomingRequest, claimed: str | None, now: float
    ) -> tuple[trust.RequestFacts, AuthStatus | None, Binding | None]:
        req = incoming.request
        uri = req.uri
        authenticated, status = self._digest(req, claimed, now)
        flow_binding = self._registered_flow(incoming, claimed, now)
        facts = trust.RequestFacts(
            method=req.method,
            source_ip=incoming.source[0],
            transport=incoming.transport,
            claimed_aor=claimed,
            target_domain=uri.host_bare.rstrip(".") if isinstance(uri, SipUri) else "",
            tls_names=trust.certificate_names(incoming.peer_certificate)
            if incoming.transport == "tls"
            else (),
            authenticated=authenticated,
            registered_flow=flow_binding is not None,
        )
        return facts, status, flow_binding

    def authorize(self, incoming: IncomingRequest, kind: str) -> Identity | None:
        """The sender's Identity if the request may proceed; otherwise None after this
        method answered it itself (407 challenge, 403, 503 + Retry-After)."""
        if kind not in _LIMIT_KINDS:
            raise ValueError(f"unknown request kind {kind!r}")
        req = incoming.request
        now = self._clock()
        ip = incoming.source[0]
        claimed = _aor_of(req.from_)
        facts, auth, flow_binding = self._facts(incoming, claimed, now)
        decision = self._decisions.decide(facts, self.trust)
        limit = _LIMIT_KINDS[kind]
        if not isinstance(decision, trust.Accept):
            if limit is not None:
                verdict = self.limiter.check(limit, source=ip, now=now)
                if not verdict.allowed:
                    self._rate_limited(incoming, claimed, verdict, limit)
                    return None
            self._answer_refusal(incoming, facts, decision, auth, now)
            return None
        if claimed is None:  # a trusted peer sending a From we cannot name (tel:, ...)
            incoming.reply(403, "Forbidden (From is not a SIP AOR)")
            self._refused(incoming, None, "forbidden", "From is not a SIP address-of-record")
            return None
        if limit is not None and decision.via != "trusted-peer":
            verdict = self.limiter.check(limit, source=ip, user=claimed, now=now)
            if not verdict.allowed:
                self._rate_limited(incoming, claimed, verdict, limit)
                return None
        if kind == "subscribe" and not self._contact_gruu_ok(incoming, claimed, now):
            return None
        resource = resource_of(flow_binding) if flow_binding is not None else None
        if resource is None and req.contacts:
            try:
                resource = self.resource_for(claimed, str(req.contacts[0].uri))
            except RemoteProtocolError:
                resource = None
        return Identity(decision.identity or claimed, resource, decision.via)

    def _contact_gruu_ok(self, incoming: IncomingRequest, claimed: str, now: float) -> bool:
        """A SUBSCRIBE whose Contact (the dialog's remote target, where every NOTIFY will
        go) is a GRUU of a hosted domain: it must be one of the sender's own, with a live
        binding. Another user's GRUU: 403 (RFC 5627 §6: "RECOMMENDED ... 403"); one of
        the sender's whose binding is gone: 480 (it is the answer every NOTIFY would
        get, RFC 5627 §5.3). Answered and logged here; False then."""
        try:
            contacts = incoming.request.contacts
        except RemoteProtocolError:
            return True  # the SUBSCRIBE handler answers a malformed Contact
        uri = contacts[0].uri if contacts else None
        if not isinstance(uri, SipUri) or uri.gr is None or not self.is_hosted(uri.host_bare):
            return True
        owner = canonical_aor(uri)
        if owner != claimed:
            incoming.reply(403, "Forbidden (Contact Is Another User's GRUU)")
            self._refused(incoming, claimed, "forbidden", f"Contact GRUU {uri} of {owner}")
            return False
        if not delivery_order(self._held(claimed), now, resource=uri.gr):
            incoming.reply(480, "Contact GRUU Not Registered")
            self._refused(incoming, claimed, "gruu-unregistered", f"Contact GRUU {uri}")
            return False
        return True

    def _answer_refusal(
        self,
        incoming: IncomingRequest,
        facts: trust.RequestFacts,
        decision: trust.Decision,
        auth: AuthStatus | None,
        now: float,
    ) -> None:
        claimed = facts.claimed_aor
        if isinstance(decision, trust.Challenge):
            assert self._nonces is not None, "registrar not started"
            realm = self._realm(claimed)
            stale = auth is AuthStatus.STALE
            values = make_challenge(
                self._nonces, realm, self._algorithms(claimed, realm), now, stale=stale
            )
            name = "WWW-Authenticate" if decision.status == 401 else "Proxy-Authenticate"
            incoming.reply(decision.status, headers=[(name, v) for v in values])
            failed = auth in _AUTH_FAILED
            detail = auth.value if auth is not None else "no credentials"
            level = logging.WARNING if failed else logging.DEBUG
            self._refused(
                incoming, claimed, "auth-failed" if failed else "challenge", detail, level
            )
            return
        if isinstance(decision, trust.RelayRefused):
            incoming.reply(403, "Forbidden (Not a Relay)")
            self._refused(incoming, claimed, "relay", decision.reason)
            return
        assert isinstance(decision, trust.Refuse)
        incoming.reply(403)
        self._refused(incoming, claimed, "forbidden", decision.reason)

    def _rate_limited(
        self, incoming: IncomingRequest, claimed: str | None, verdict: Verdict, kind: str
    ) -> None:
        incoming.reply(503, "Rate Limited", headers=[("Retry-After", str(verdict.retry_after))])
        detail = f"{kind} limit per {verdict.limited_by}, retry after {verdict.retry_after}s"
        self._refused(incoming, claimed, "rate-limited", detail)

    def _refused(
        self,
        incoming: IncomingRequest,
        claimed: str | None,
        reason: str,
        detail: str,
        level: int = logging.WARNING,
    ) -> None:
        req = incoming.request
        event(
            log,
            level,
            "request refused",
            method=req.method,
            call_id=req.call_id,
            source=f"{incoming.transport}:{_source(incoming)}",
            claimed=claimed or "-",
            reason=reason,
            detail=detail,
        )
        self._metrics.sip_requests_refused.labels(reason).inc()

    # ------------------------------------------------------------------ PUBLISH

    def handle_publish(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        identity = self.authorize(incoming, "publish")
        if identity is None:
            return None
        req = incoming.request
        now = self._clock()
        key = canonical_aor(req.uri)
        existing = self._publications.get(key, ()) if key else ()
        outcome = process_publish(
            req,
            now,
            self.publish_policy,
            existing,
            new_etag=secrets.token_urlsafe(12),  # 96 random bits (RFC 3903 §6)
            identity=None if identity.via == "trusted-peer" else identity.aor,
        )
        if outcome.kind is not None and outcome.aor is not None and outcome.event is not None:
            aor, ev = outcome.aor, outcome.event
            try:
                self._store.set_publications(aor, ev, outcome.publications)
            except StoreError as exc:  # RFC 3903 §6 step 5: atomic
                event(log, logging.ERROR, "publication not stored", aor=aor, error=str(exc))
                incoming.reply(500, "Publication Not Stored")
                return None
            others = tuple(p for p in existing if p.event != ev and p.expires_at > now)
            self._cache_publications(aor, (*others, *outcome.publications))
            self._rearm()
            event(log, logging.INFO, "publication", aor=aor, kind=outcome.kind, via=identity.via)
            if outcome.kind != "refresh":
                self._changed(aor)
        elif not outcome.ok:
            event(
                log,
                logging.INFO,
                "publication refused",
                aor=key,
                status=outcome.status,
                reason=outcome.reason,
                call_id=req.call_id,
                source=f"{incoming.source[0]}:{incoming.source[1]}",
            )
        incoming.respond(outcome.response(req, to_tag=incoming.to_tag))
        return None


def _photo(users: UserDirectory, user: User) -> str | None:
    """The SHA-1 of `user`'s avatar in `users` (None without one): what presence shows."""
    avatar = users.avatar(user.aor)
    return None if avatar is None else avatar.sha1

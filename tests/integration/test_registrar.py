"""The registrar service on a real SipEndpoint (UDP, TCP, TLS on loopback) against real
peers: baresip registering with Digest and exchanging MESSAGEs through the registrar,
sipp spoofing identities, relaying, flooding; a Python UAC built on a second SipEndpoint
for the exact Digest cases (replayed nonce, stale nonce, SHA-256) and PUBLISH.

The registrar runs in-process with a small test dispatcher standing in for the bridge:
REGISTER and PUBLISH go to the registrar; MESSAGE/SUBSCRIBE/NOTIFY pass `authorize`,
and a MESSAGE for a hosted user is delivered with `send_to_user` (so two baresips talk
to each other through the registrar's flows); anything else accepted is answered 200.
The end-to-end test with XMPP is tests/integration/test_registrar_baresip.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import stat
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gateway.config import (
    AdminConfig,
    ComponentConfig,
    Config,
    DnsConfig,
    GatewaySection,
    LimitConfig,
    ListenerConfig,
    RateLimitsConfig,
    RegistrarConfig,
    SipConfig,
    SipTimers,
    TlsClientConfig,
    Transport,
    XmppConfig,
)
from gateway.metrics import Metrics
from gateway.registrar.service import SECRET_FILENAME, Identity, NoBinding, Registrar
from gateway.registrar.users import User, format_user, hash_password
from gateway.sip.auth import build_authorization, parse_challenge, select_challenge
from gateway.sip.locate import Target
from gateway.sip.message import Headers, SipRequest, SipResponse
from gateway.sip.transport.endpoint import SipEndpoint
from gateway.sip.uri import SipUri, parse_uri
from gateway.sip.useragent import IncomingRequest
from gateway.store.sqlite import SqliteStore, open_store
from tests.harness import LOOPBACK, require_binary
from tests.harness.baresip import Baresip, account_line
from tests.harness.ports import free_port
from tests.harness.sipp import Sipp

pytestmark = pytest.mark.integration

LIMIT = 30.0
DOMAIN = "sip.localhost"
XMPP_DOMAIN = "localhost"
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:romeo@sip.localhost">'
    b'<tuple id="t1"><status><basic>open</basic></status><note>on the balcony</note></tuple>'
    b"</presence>"
)


# ---------------------------------------------------------------------------------------
# PKI for the TLS listener (a throwaway CA; baresip verifies with sip_cafile)


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    require_binary("openssl")
    d = tmp_path_factory.mktemp("registrar-pki")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=Registrar Test CA", cwd=d,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
        "-out", "server.csr", "-subj", f"/CN={DOMAIN}", cwd=d,
    )  # fmt: skip
    (d / "ext.cnf").write_text(
        f"subjectAltName=DNS:{DOMAIN},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d,
    )  # fmt: skip
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key")


# ---------------------------------------------------------------------------------------
# The rig: endpoint + registrar + a stand-in dispatcher


def md5_only(aor: str, password: str) -> User:
    """baresip 1.0 (libre) stops at the first algorithm it does not know, so its users
    have only an MD5 HA1 and are challenged with MD5 alone."""
    return dataclasses.replace(hash_password(aor, None, password), ha1_sha256=None)


DEFAULT_USERS = (
    md5_only(f"romeo@{DOMAIN}", "romeo"),
    md5_only(f"mercutio@{DOMAIN}", "mercutio"),
)


class Clock:
    """Wall clock plus an offset the test can move (nonce staleness without sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Dispatcher:
    registrar: Registrar | None = None
    accepted: list[tuple[SipRequest, Identity]] = field(default_factory=list)

    def handle(self, incoming: IncomingRequest) -> Awaitable[None] | None:
        reg = self.registrar
        assert reg is not None
        method = incoming.request.method
        if method == "REGISTER":
            return reg.handle_register(incoming)
        if method == "PUBLISH":
            return reg.handle_publish(incoming)
        if method not in ("MESSAGE", "SUBSCRIBE", "NOTIFY"):
            incoming.reply(405)
            return None
        identity = reg.authorize(incoming, method.lower())
        if identity is None:
            return None
        self.accepted.append((incoming.request, identity))
        uri = incoming.request.uri
        if method == "MESSAGE" and isinstance(uri, SipUri) and reg.is_hosted(uri.host_bare):
            return self._deliver(reg, incoming)
        incoming.reply(200)
        return None

    async def _deliver(self, reg: Registrar, incoming: IncomingRequest) -> None:
        req = incoming.request
        ctype = req.headers.get("Content-Type") or "text/plain"

        def build(contact: str) -> SipRequest:
            return SipRequest(
                "MESSAGE",
                parse_uri(contact),
                Headers(
                    [
                        (
                            "From",
                            f"<{req.from_.uri if req.from_ else ''}>;tag=gw{secrets.token_hex(4)}",
                        ),
                        ("To", f"<{req.uri}>"),
                        ("Call-ID", f"relay-{secrets.token_hex(8)}"),
                        ("CSeq", "1 MESSAGE"),
                        ("Content-Type", ctype),
                    ]
                ),
                req.body,
            )

        response = await reg.send_to_user(str(req.uri), build)  # NoBinding -> 480
        incoming.reply(response.status)


@dataclass
class Rig:
    cfg: Config
    endpoint: SipEndpoint
    registrar: Registrar
    store: SqliteStore
    metrics: Metrics
    dispatcher: Dispatcher
    clock: Clock
    ports: dict[str, int]

    def refused(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cpim_sip_requests_refused_total", {"reason": reason}
        )
        return value or 0.0

    def proxy(self, transport: str = "udp") -> tuple[str, int]:
        return (LOOPBACK, self.ports[transport])


def write_users(path: Path, users: tuple[User, ...]) -> Path:
    path.write_text("".join(format_user(u) for u in users))
    path.chmod(0o600)
    return path


def make_config(
    tmp: Path,
    pki: Pki,
    ports: dict[str, int],
    users: tuple[User, ...],
    *,
    registrar: dict[str, Any] | None = None,
    rate_limits: RateLimitsConfig | None = None,
    federation: bool = False,
) -> Config:
    listeners = (
        ListenerConfig(Transport.UDP, LOOPBACK, ports["udp"]),
        ListenerConfig(Transport.TCP, LOOPBACK, ports["tcp"]),
        ListenerConfig(Transport.TLS, LOOPBACK, ports["tls"], pki.cert, pki.key),
    )
    return Config(
        gateway=GatewaySection(state_dir=tmp / "state"),
        xmpp=XmppConfig(components=(ComponentConfig(DOMAIN, "s3cret"),)),
        sip=SipConfig(
            listeners=listeners,
            hosted_domains=(DOMAIN,),
            served_xmpp_domains=(XMPP_DOMAIN,),
            timers=SipTimers(t1=0.1),
            tls_client=TlsClientConfig(verify=True, ca_file=pki.ca),
            federation=federation,
        ),
        registrar=RegistrarConfig(
            users_file=write_users(tmp / "users.toml", users), **(registrar or {})
        ),
        rate_limits=rate_limits or RateLimitsConfig(),
        dns=DnsConfig(),
        admin=AdminConfig(enabled=False),
    )


MakeRig = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path, pki: Pki) -> AsyncIterator[MakeRig]:
    rigs: list[Rig] = []

    async def make(
        users: tuple[User, ...] = DEFAULT_USERS,
        *,
        ports: dict[str, int] | None = None,
        clock: Clock | None = None,
        nonce_lifetime: float = 300.0,
        **cfg_kwargs: Any,
    ) -> Rig:
        ports = ports or {"udp": free_port(), "tcp": free_port(), "tls": free_port()}
        cfg = make_config(tmp_path, pki, ports, users, **cfg_kwargs)
        dispatcher = Dispatcher()
        endpoint = SipEndpoint(cfg.sip, dispatcher)
        await endpoint.start()
        store = open_store(cfg.gateway.state_dir)
        metrics = Metrics()
        clock = clock or Clock()
        registrar = Registrar(
            cfg, store, endpoint, metrics, clock=clock, nonce_lifetime=nonce_lifetime
        )
        dispatcher.registrar = registrar
        await registrar.start()
        rig = Rig(cfg, endpoint, registrar, store, metrics, dispatcher, clock, ports)
        rigs.append(rig)
        return rig

    try:
        yield make
    finally:
        for rig in rigs:
            await stop_rig(rig)


async def stop_rig(rig: Rig) -> None:
    await rig.registrar.stop()
    await rig.endpoint.stop()
    rig.store.close()


# ---------------------------------------------------------------------------------------
# baresip


@pytest.fixture
async def baresips(tmp_path: Path, pki: Pki) -> AsyncIterator[Callable[..., Awaitable[Baresip]]]:
    started: list[Baresip] = []

    async def make(name: str, contacts: tuple[str, ...] = ()) -> Baresip:
        ua = Baresip(tmp_path / f"baresip-{name}", contacts=contacts, ca_file=pki.ca)
        started.append(ua)
        return await ua.start()

    try:
        yield make
    finally:
        for ua in started:
            await ua.stop()


async def until(check: Callable[[], bool], what: str, timeout: float = LIMIT) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout}s")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_baresip_registers_with_digest_and_messages_flow_both_ways(
    transport: str, make_rig: MakeRig, baresips: Callable[..., Awaitable[Baresip]]
) -> None:
    """romeo registers over `transport`, mercutio over UDP; each messages the other
    through the registrar, which delivers over the registered flows (for TCP/TLS: the
    connection romeo opened, never a new one)."""
    rig = await make_rig()
    romeo = await baresips("romeo", (f"sip:mercutio@{DOMAIN}",))
    mercutio = await baresips("mercutio", (f"sip:romeo@{DOMAIN}",))
    ok = await romeo.register(
        account_line(f"sip:romeo@{DOMAIN}", "romeo", rig.proxy(transport), transport=transport)
    )
    assert ok["type"] == "REGISTER_OK", romeo.tail()
    ok = await mercutio.register(
        account_line(f"sip:mercutio@{DOMAIN}", password="mercutio", proxy=rig.proxy())
    )
    assert ok["type"] == "REGISTER_OK", mercutio.tail()

    (binding,) = rig.registrar.bindings(f"sip:romeo@{DOMAIN}")
    assert binding.flow is not None and binding.flow.transport == transport
    assert (binding.flow.connection_id is None) == (transport == "udp")
    assert rig.store.bindings(f"sip:romeo@{DOMAIN}") == (binding,)  # committed
    assert rig.metrics.registry.get_sample_value("cpim_registrations_active") == 2

    await romeo.send_message(f"sip:mercutio@{DOMAIN}", f"hello over {transport}")
    got = await mercutio.wait_message(f"hello over {transport}")
    assert got.peer == f"sip:romeo@{DOMAIN}"
    await mercutio.send_message(f"sip:romeo@{DOMAIN}", f"hello back to {transport}")
    got = await romeo.wait_message(f"hello back to {transport}")
    assert got.peer == f"sip:mercutio@{DOMAIN}"

    senders = {ident.aor: ident for _, ident in rig.dispatcher.accepted}
    assert senders[f"sip:romeo@{DOMAIN}"].via == "registered-flow"
    assert senders[f"sip:romeo@{DOMAIN}"].resource is not None
    if transport != "udp":
        assert rig.endpoint.connections.opened == 0  # romeo's own connection was reused
    assert rig.refused("auth-failed") == 0


@pytest.mark.parametrize(
    ("aor", "password"),
    [(f"sip:romeo@{DOMAIN}", "not-romeo"), (f"sip:nobody@{DOMAIN}", "nobody")],
    ids=["wrong-password", "unknown-user"],
)
async def test_baresip_bad_credentials_are_refused(
    aor: str,
    password: str,
    make_rig: MakeRig,
    baresips: Callable[..., Awaitable[Baresip]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = await make_rig()
    ua = await baresips("bad")
    caplog.set_level(logging.WARNING, logger="gateway.registrar.service")
    outcome = await ua.register(account_line(aor, password=password, proxy=rig.proxy()))
    assert outcome["type"] == "REGISTER_FAIL", ua.tail()
    assert rig.registrar.bindings(aor) == []
    assert rig.store.bindings(aor) == ()
    assert rig.refused("auth-failed") >= 1
    lines = [r for r in caplog.records if r.getMessage() == "request refused"]
    assert lines, "the refusal is logged"
    fields = lines[0].fields  # type: ignore[attr-defined]
    assert fields["reason"] == "auth-failed" and fields["method"] == "REGISTER"
    assert fields["claimed"] == aor and fields["source"].startswith("udp:127.0.0.1:")
    assert fields["call_id"]
    # Both failures look the same on the wire: a fresh 401 challenge.
    assert "SIP/2.0 401 Unauthorized" in ua.log_path.read_text(errors="replace")


# ---------------------------------------------------------------------------------------
# A Python UAC on a second SipEndpoint: exact Digest cases


class Uac:
    def __init__(self, endpoint: SipEndpoint, registrar_port: int) -> None:
        self.endpoint = endpoint
        self.target = Target("udp", LOOPBACK, LOOPBACK, registrar_port)
        self.port = endpoint.listeners[0].local[1]
        self.call_id = f"uac-{secrets.token_hex(6)}"
        self.cseq = 0

    def register(self, aor: str, *, expires: int = 300, auth: str | None = None) -> SipRequest:
        self.cseq += 1
        user = aor.removeprefix("sip:").partition("@")[0]
        headers = [
            ("From", f"<{aor}>;tag=uac"),
            ("To", f"<{aor}>"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"),
            ("Contact", f"<sip:{user}@{LOOPBACK}:{self.port}>"),
            ("Expires", str(expires)),
        ]
        if auth is not None:
            headers.append(("Authorization", auth))
        return SipRequest("REGISTER", parse_uri(f"sip:{DOMAIN}"), Headers(headers))

    async def send(self, request: SipRequest) -> SipResponse:
        return await asyncio.wait_for(self.endpoint.request(request, self.target), LIMIT)


@pytest.fixture
async def uac_factory() -> AsyncIterator[Callable[[Rig], Awaitable[Uac]]]:
    endpoints: list[SipEndpoint] = []

    async def make(rig: Rig) -> Uac:
        ep = SipEndpoint(
            SipConfig(
                listeners=(ListenerConfig(Transport.UDP, LOOPBACK, free_port()),),
                timers=SipTimers(t1=0.1),
            ),
            _Answer(),
        )
        await ep.start()
        endpoints.append(ep)
        return Uac(ep, rig.ports["udp"])

    try:
        yield make
    finally:
        for ep in endpoints:
            await ep.stop()


class _Answer:
    def __init__(self) -> None:
        self.seen: list[SipRequest] = []

    def handle(self, incoming: IncomingRequest) -> None:
        self.seen.append(incoming.request)
        incoming.reply(200)


def answer(challenge_response: SipResponse, aor: str, password: str, *, nc: int = 1) -> str:
    challenge = select_challenge(list(challenge_response.headers.get_all("WWW-Authenticate")))
    user = aor.removeprefix("sip:").partition("@")[0]
    return build_authorization(
        challenge, "REGISTER", f"sip:{DOMAIN}", user, password=password, nc=nc
    )


async def test_replayed_nonce_is_challenged_again(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    rig = await make_rig()
    uac = await uac_factory(rig)
    aor = f"sip:romeo@{DOMAIN}"
    first = await uac.send(uac.register(aor))
    assert first.status == 401
    creds = answer(first, aor, "romeo", nc=1)
    assert (await uac.send(uac.register(aor, auth=creds))).status == 200
    replay = await uac.send(uac.register(aor, auth=creds))  # same nonce, same nc
    assert replay.status == 401
    old_nonce = parse_challenge(first.headers.get_all("WWW-Authenticate")[0]).nonce
    fresh = parse_challenge(replay.headers.get_all("WWW-Authenticate")[0])
    assert not fresh.stale and fresh.nonce != old_nonce
    assert rig.refused("auth-failed") == 1
    # The same nonce with the next nonce count is fine (RFC 7616 §3.4).
    assert (await uac.send(uac.register(aor, auth=answer(first, aor, "romeo", nc=2)))).status == 200


async def test_stale_nonce_gets_stale_challenge_then_registers(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    clock = Clock()
    rig = await make_rig(clock=clock, nonce_lifetime=60.0)
    uac = await uac_factory(rig)
    aor = f"sip:romeo@{DOMAIN}"
    first = await uac.send(uac.register(aor))
    clock.offset += 120.0  # the nonce is now older than its lifetime
    stale = await uac.send(uac.register(aor, auth=answer(first, aor, "romeo")))
    assert stale.status == 401
    challenge = parse_challenge(stale.headers.get_all("WWW-Authenticate")[0])
    assert challenge.stale
    assert rig.refused("auth-failed") == 0  # a stale nonce is not a failure
    ok = await uac.send(uac.register(aor, auth=answer(stale, aor, "romeo")))
    assert ok.status == 200
    assert len(rig.registrar.bindings(aor)) == 1


async def test_sha256_is_offered_first_and_accepted(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    tybalt = hash_password(f"tybalt@{DOMAIN}", None, "tybalt")  # MD5 and SHA-256
    rig = await make_rig((*DEFAULT_USERS, tybalt))
    uac = await uac_factory(rig)
    aor = f"sip:tybalt@{DOMAIN}"
    first = await uac.send(uac.register(aor))
    algorithms = [parse_challenge(v).algorithm for v in first.headers.get_all("WWW-Authenticate")]
    assert algorithms == ["SHA-256", "MD5"]  # RFC 8760 §2.4: preferred first
    creds = answer(first, aor, "tybalt")
    assert "algorithm=SHA-256" in creds
    assert (await uac.send(uac.register(aor, auth=creds))).status == 200
    # An MD5-only user is offered MD5 alone (baresip 1.0 gives up at SHA-256).
    romeo = await uac.send(uac.register(f"sip:romeo@{DOMAIN}"))
    assert [parse_challenge(v).algorithm for v in romeo.headers.get_all("WWW-Authenticate")] == [
        "MD5"
    ]


async def test_min_expires_and_expiry_and_publish(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    rig = await make_rig(
        registrar={"min_expires": 2, "default_expires": 60, "publish_min_expires": 2}
    )
    changes: list[str] = []
    rig.registrar.on_presence_change(changes.append)
    uac = await uac_factory(rig)
    aor = f"sip:romeo@{DOMAIN}"
    first = await uac.send(uac.register(aor, expires=1))
    assert first.status == 401
    brief = await uac.send(uac.register(aor, expires=1, auth=answer(first, aor, "romeo")))
    assert brief.status == 423 and brief.headers.get("Min-Expires") == "2"
    ok = await uac.send(uac.register(aor, expires=3, auth=answer(first, aor, "romeo", nc=2)))
    assert ok.status == 200 and changes == [aor]
    doc = rig.registrar.presence_of(aor)  # registered, never published: available
    assert doc is not None and [t.basic for t in doc.tuples] == ["open"]

    # PUBLISH from the registered flow (no Digest needed: it came on romeo's flow).
    publish = SipRequest(
        "PUBLISH",
        parse_uri(aor),
        Headers(
            [
                ("From", f"<{aor}>;tag=pub"),
                ("To", f"<{aor}>"),
                ("Call-ID", f"pub-{secrets.token_hex(4)}"),
                ("CSeq", "1 PUBLISH"),
                ("Event", "presence"),
                ("Expires", "60"),
                ("Content-Type", "application/pidf+xml"),
            ]
        ),
        PIDF,
    )
    published = await uac.send(publish)
    assert published.status == 200 and published.headers.get("SIP-ETag")
    assert changes == [aor, aor]
    doc = rig.registrar.presence_of(aor)
    assert doc is not None and [n.text for t in doc.tuples for n in t.notes] == ["on the balcony"]
    assert len(rig.store.publications(aor)) == 1

    # The binding expires (3 s) and is removed from memory and the store.
    await until(lambda: not rig.registrar.bindings(aor), "binding expiry", timeout=20)
    assert rig.store.bindings(aor) == ()
    assert changes[-1] == aor and len(changes) == 3
    assert rig.metrics.registry.get_sample_value("cpim_registrations_active") == 0


# ---------------------------------------------------------------------------------------
# sipp: spoofing, relaying, flooding


def _sipp(sipp: Sipp, scenario: str, rig: Rig, **kwargs: Any) -> Any:
    return sipp.run(scenario, remote=f"{LOOPBACK}:{rig.ports['udp']}", timeout=20, **kwargs)


async def test_spoofed_from_in_hosted_domain_is_challenged_never_delivered(
    make_rig: MakeRig, sipp: Sipp, baresips: Callable[..., Awaitable[Baresip]]
) -> None:
    rig = await make_rig()
    mercutio = await baresips("mercutio")
    ok = await mercutio.register(
        account_line(f"sip:mercutio@{DOMAIN}", password="mercutio", proxy=rig.proxy())
    )
    assert ok["type"] == "REGISTER_OK"
    keys = {"from_uri": f"sip:romeo@{DOMAIN}", "to_uri": f"sip:mercutio@{DOMAIN}", "body": "spoof"}
    result = await asyncio.to_thread(_sipp, sipp, "registrar_message_407", rig, keys=keys)
    assert result.ok, result.describe()
    assert "Proxy-Authenticate: Digest" in result.messages
    assert rig.dispatcher.accepted == []
    await asyncio.sleep(0.5)
    assert mercutio.messages == []
    assert rig.refused("challenge") >= 1


@pytest.mark.parametrize(
    ("from_uri", "to_uri", "reason"),
    [
        (f"sip:juliet@{XMPP_DOMAIN}", f"sip:romeo@{DOMAIN}", "forbidden"),  # bridged identity
        ("sip:eve@example.com", f"sip:juliet@{XMPP_DOMAIN}", "forbidden"),  # outside -> local
        ("sip:eve@example.com", "sip:bob@example.org", "relay"),  # outside -> outside
    ],
    ids=["bridged-identity", "outside-to-local", "outside-to-outside"],
)
async def test_unauthenticated_identities_are_refused_with_403(
    from_uri: str, to_uri: str, reason: str, make_rig: MakeRig, sipp: Sipp
) -> None:
    rig = await make_rig()
    keys = {"from_uri": from_uri, "to_uri": to_uri, "body": "let me in"}
    result = await asyncio.to_thread(_sipp, sipp, "registrar_message_403", rig, keys=keys)
    assert result.ok, result.describe()
    assert rig.dispatcher.accepted == []
    assert rig.refused(reason) == 1


async def test_outside_to_outside_is_refused_even_with_federation(
    make_rig: MakeRig, sipp: Sipp
) -> None:
    rig = await make_rig(federation=True)
    keys = {"from_uri": "sip:eve@example.com", "to_uri": "sip:bob@example.org", "body": "x"}
    result = await asyncio.to_thread(_sipp, sipp, "registrar_message_403", rig, keys=keys)
    assert result.ok, result.describe()
    assert rig.refused("relay") == 1 and rig.dispatcher.accepted == []


async def test_registered_sipp_cannot_relay_to_a_foreign_domain(
    make_rig: MakeRig, sipp: Sipp
) -> None:
    rig = await make_rig()
    keys = {
        "user": "romeo",
        "domain": DOMAIN,
        "local_to": f"sip:juliet@{XMPP_DOMAIN}",
        "foreign_to": "sip:someone@example.net",
    }
    result = await asyncio.to_thread(
        _sipp, sipp, "registrar_register_relay", rig, keys=keys,
        extra_args=["-au", "romeo", "-ap", "romeo"],
    )  # fmt: skip
    assert result.ok, result.describe()
    (accepted,) = rig.dispatcher.accepted  # the local MESSAGE only
    assert str(accepted[0].uri) == f"sip:juliet@{XMPP_DOMAIN}"
    assert accepted[1].via == "registered-flow"
    assert rig.refused("relay") == 1


async def test_bounded_flood_trips_the_rate_limit(
    make_rig: MakeRig, sipp: Sipp, caplog: pytest.LogCaptureFixture
) -> None:
    burst = 5
    limits = RateLimitsConfig(per_source=(("message", LimitConfig(burst, 0.01)),), per_user=())
    rig = await make_rig(rate_limits=limits)
    caplog.set_level(logging.WARNING, logger="gateway.registrar.service")
    keys = {"from_uri": f"sip:romeo@{DOMAIN}", "to_uri": f"sip:juliet@{XMPP_DOMAIN}"}
    calls = 20
    result = await asyncio.to_thread(
        _sipp, sipp, "registrar_flood", rig, keys=keys, calls=calls, rate=50
    )
    assert result.ok, result.describe()
    statuses = [ln.split()[1] for ln in result.messages.splitlines() if ln.startswith("SIP/2.0 ")]
    assert statuses.count("407") == burst
    assert statuses.count("503") == calls - burst
    assert "Retry-After: " in result.messages
    assert rig.refused("rate-limited") == calls - burst
    limited = [
        r for r in caplog.records if getattr(r, "fields", {}).get("reason") == "rate-limited"
    ]
    assert len(limited) == calls - burst
    assert rig.dispatcher.accepted == []


async def test_failed_registers_trip_the_rate_limit(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    limits = RateLimitsConfig(per_source=(("register-failure", LimitConfig(3, 0.01)),), per_user=())
    rig = await make_rig(rate_limits=limits)
    uac = await uac_factory(rig)
    aor = f"sip:romeo@{DOMAIN}"
    challenge = await uac.send(uac.register(aor))
    statuses = []
    for nc in range(1, 7):
        resp = await uac.send(uac.register(aor, auth=answer(challenge, aor, "wrong", nc=nc)))
        statuses.append(resp.status)
    assert statuses == [401, 401, 401, 503, 503, 503]
    # Now even the right password waits for the bucket (Retry-After tells how long).
    resp = await uac.send(uac.register(aor, auth=answer(challenge, aor, "romeo", nc=7)))
    assert resp.status == 503 and int(resp.headers.get("Retry-After") or 0) >= 1


# ---------------------------------------------------------------------------------------
# Persistence


async def restart(make_rig: MakeRig, old: Rig) -> Rig:
    """A new endpoint and registrar on the same ports and state directory; the old
    sockets are closed asynchronously, so binding is retried for a little while."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return await make_rig(ports=old.ports)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_registration_survives_a_restart(
    make_rig: MakeRig, baresips: Callable[..., Awaitable[Baresip]]
) -> None:
    rig = await make_rig()
    romeo = await baresips("romeo")
    ok = await romeo.register(
        account_line(f"sip:romeo@{DOMAIN}", password="romeo", proxy=rig.proxy())
    )
    assert ok["type"] == "REGISTER_OK"
    before = rig.registrar.bindings(f"sip:romeo@{DOMAIN}")
    secret = rig.cfg.gateway.state_dir / SECRET_FILENAME
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    key = secret.read_bytes()
    await stop_rig(rig)

    again = await restart(make_rig, rig)
    assert again.registrar.bindings(f"sip:romeo@{DOMAIN}") == before
    assert secret.read_bytes() == key
    assert again.metrics.registry.get_sample_value("cpim_registrations_active") == 1

    def build(contact: str) -> SipRequest:
        return SipRequest(
            "MESSAGE",
            parse_uri(contact),
            Headers(
                [
                    ("From", f"<sip:juliet@{XMPP_DOMAIN}>;tag=j1"),
                    ("To", f"<sip:romeo@{DOMAIN}>"),
                    ("Call-ID", f"after-restart-{secrets.token_hex(4)}"),
                    ("CSeq", "1 MESSAGE"),
                    ("Content-Type", "text/plain"),
                ]
            ),
            b"still there after the restart",
        )

    response = await asyncio.wait_for(
        again.registrar.send_to_user(f"sip:romeo@{DOMAIN}", build), LIMIT
    )
    assert response.status == 200
    got = await romeo.wait_message("still there after the restart")
    assert got.peer == f"sip:juliet@{XMPP_DOMAIN}"


async def test_no_binding_is_recipient_unavailable(make_rig: MakeRig) -> None:
    rig = await make_rig()
    with pytest.raises(NoBinding) as info:
        await rig.registrar.send_to_user(f"sip:romeo@{DOMAIN}", pytest.fail)
    assert info.value.sip_status == 480
    assert info.value.xmpp_condition == "recipient-unavailable"


async def test_user_file_reload_adds_users_and_keeps_them_on_error(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    rig = await make_rig()
    uac = await uac_factory(rig)
    aor = f"sip:tybalt@{DOMAIN}"
    first = await uac.send(uac.register(aor))
    assert (await uac.send(uac.register(aor, auth=answer(first, aor, "tybalt")))).status == 401
    users_file = rig.cfg.registrar.users_file
    assert users_file is not None
    write_users(users_file, (*DEFAULT_USERS, md5_only(f"tybalt@{DOMAIN}", "tybalt")))
    assert rig.registrar.reload_users()
    first = await uac.send(uac.register(aor))
    assert (await uac.send(uac.register(aor, auth=answer(first, aor, "tybalt")))).status == 200
    users_file.write_text('[users."bad@sip.localhost"]\npassword = "plain"\n')
    assert not rig.registrar.reload_users()
    assert len(rig.registrar.users) == 3  # the previous directory stays in use


async def test_user_removed_from_the_file_loses_its_registrations_at_reload(
    make_rig: MakeRig, uac_factory: Callable[[Rig], Awaitable[Uac]]
) -> None:
    """`cpim-gateway user remove` + SIGHUP: the user's bindings end at once (store and
    presence), not at their expiry; other users keep theirs."""
    rig = await make_rig()
    uac = await uac_factory(rig)
    users_file = rig.cfg.registrar.users_file
    assert users_file is not None
    write_users(users_file, (*DEFAULT_USERS, md5_only(f"tybalt@{DOMAIN}", "tybalt")))
    assert rig.registrar.reload_users()
    aor = f"sip:tybalt@{DOMAIN}"
    first = await uac.send(uac.register(aor))
    assert (await uac.send(uac.register(aor, auth=answer(first, aor, "tybalt")))).status == 200
    assert len(rig.registrar.bindings(aor)) == 1
    assert [b.aor for b in rig.store.all_bindings()] == [aor]
    changed: list[str] = []
    rig.registrar.on_presence_change(changed.append)
    write_users(users_file, DEFAULT_USERS)
    assert rig.registrar.reload_users()
    assert rig.registrar.bindings(aor) == []
    assert list(rig.store.all_bindings()) == []
    assert changed == [aor]
    first = await uac.send(uac.register(aor))
    assert (await uac.send(uac.register(aor, auth=answer(first, aor, "tybalt")))).status == 401

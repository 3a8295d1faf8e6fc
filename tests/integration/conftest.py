"""Fixtures for integration tests: real Prosody/ejabberd, sipp, XMPP clients, the gateway.

- `prosody`: one Prosody for the session, declaring SESSION_COMPONENTS; restarted
  for the next test if a test stopped or killed it.
- `prosody_factory`: fresh Prosody servers a test owns (to kill, restart, reconfigure).
- `ejabberd`: one ejabberd for the session, same components, on one shared
  `ejabberd_service` listener and each on one of its own (`component_ports`).
- `xmpp_account` / `xmpp_client`: unique accounts and logged-in clients.
- `sipp`: run scenarios from a per-test scratch directory.
- `gateway`: start the gateway process (default config pointing at `prosody`).
- `postgres`: one throw-away PostgreSQL for the session (tests/harness/postgres.py),
  started again for the next test if a test stopped it; `create_database()` per test.
A missing binary skips locally and fails in CI (tests.harness.require_binary).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.harness import require_binary
from tests.harness.ejabberd import EjabberdServer
from tests.harness.gateway_proc import GatewayProcess, gateway_config, merge
from tests.harness.postgres import PostgresServer
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp
from tests.harness.xmpp_client import XmppTestClient

XMPP_DOMAIN = "localhost"
# Component domains every session server declares, with their XEP-0114 secrets.
SESSION_COMPONENTS: Mapping[str, str] = {
    "sip.localhost": "s3cret",
    "gw.localhost": "s3cret-gw",
}

_serial = itertools.count(1)


class XmppServer(Protocol):
    host: str
    c2s_port: int
    component_port: int
    domain: str

    def add_user(self, jid: str, password: str) -> str: ...


@dataclass(frozen=True)
class Account:
    jid: str
    password: str


# -- Prosody -------------------------------------------------------------------


@pytest.fixture(scope="session")
def _postgres_session() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def postgres(_postgres_session: PostgresServer) -> PostgresServer:
    if not _postgres_session.running:
        _postgres_session.restart()
    return _postgres_session


@pytest.fixture(scope="session")
def _prosody_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyServer]:
    require_binary("prosody")
    server = ProsodyServer(
        tmp_path_factory.mktemp("prosody"), domain=XMPP_DOMAIN, components=SESSION_COMPONENTS
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prosody(_prosody_session: ProsodyServer) -> ProsodyServer:
    """The session Prosody, running (restarted if an earlier test stopped it)."""
    if not _prosody_session.running:
        _prosody_session.start()
    return _prosody_session


@pytest.fixture
def prosody_factory(tmp_path: Path) -> Iterator[Callable[..., ProsodyServer]]:
    """make(components=..., domain=..., start=True) -> a Prosody this test owns."""
    require_binary("prosody")
    servers: list[ProsodyServer] = []

    def make(
        *,
        components: Mapping[str, str] | None = None,
        domain: str = XMPP_DOMAIN,
        extra_config: str = "",
        start: bool = True,
    ) -> ProsodyServer:
        server = ProsodyServer(
            tmp_path / f"prosody-{len(servers) + 1}",
            domain=domain,
            components=SESSION_COMPONENTS if components is None else components,
            extra_config=extra_config,
        )
        servers.append(server)
        if start:
            server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


# -- ejabberd ------------------------------------------------------------------


@pytest.fixture(scope="session")
def _ejabberd_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EjabberdServer]:
    require_binary("ejabberdctl", package="ejabberd")
    # own_listeners: each component also has a listener of its own
    # (test_ejabberd_listeners.py); the shared `component_port` stays for the other tests
    server = EjabberdServer(
        tmp_path_factory.mktemp("ejabberd"),
        domain=XMPP_DOMAIN,
        components=SESSION_COMPONENTS,
        own_listeners=True,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ejabberd(_ejabberd_session: EjabberdServer) -> EjabberdServer:
    """The session ejabberd, running (restarted if an earlier test stopped it)."""
    if not _ejabberd_session.running:
        _ejabberd_session.start()
    return _ejabberd_session


# -- XMPP accounts and clients ---------------------------------------------------


@pytest.fixture
def xmpp_account(prosody: ProsodyServer) -> Callable[..., Account]:
    """make(prefix="user", server=prosody) -> a fresh account with a unique name."""

    def make(prefix: str = "user", server: XmppServer | None = None) -> Account:
        srv = server or prosody
        n = next(_serial)
        password = f"pw-{prefix}-{n}"
        return Account(srv.add_user(f"{prefix}{n}@{srv.domain}", password), password)

    return make


ClientFactory = Callable[..., Coroutine[Any, Any, XmppTestClient]]


@pytest.fixture
async def xmpp_client(
    prosody: ProsodyServer, xmpp_account: Callable[..., Account]
) -> AsyncIterator[ClientFactory]:
    """await connect(account=None, server=prosody) -> a logged-in client, closed after the test."""
    clients: list[XmppTestClient] = []

    async def connect(
        account: Account | None = None, *, server: XmppServer | None = None, prefix: str = "user"
    ) -> XmppTestClient:
        srv = server or prosody
        acct = account or xmpp_account(prefix, srv)
        client = XmppTestClient(acct.jid, acct.password, host=srv.host, port=srv.c2s_port)
        await client.connect()
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        for client in clients:
            await client.disconnect()


# -- sipp ----------------------------------------------------------------------


@pytest.fixture
def sipp(tmp_path: Path) -> Sipp:
    """sipp.run(scenario, remote=..., ...) and sipp.uas(...) in this test's scratch dir."""
    require_binary("sipp", package="sip-tester")
    return Sipp(tmp_path / "sipp")


# -- the gateway -----------------------------------------------------------------


@pytest.fixture
def gateway(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """start(config_toml=None, **section_overrides) -> a ready GatewayProcess.

    Without config_toml, the config points at the session Prosody and declares
    its components; overrides are merged per section (see gateway_config).
    Every gateway still running at teardown is killed.
    """
    procs: list[GatewayProcess] = []

    def start(config_toml: str | None = None, **overrides: Any) -> GatewayProcess:
        if config_toml is None:
            server: ProsodyServer = request.getfixturevalue("prosody")
            base: dict[str, Any] = {
                "gateway": {"state_dir": str(tmp_path / f"state-{len(procs) + 1}")},
                "xmpp": {
                    "port": server.component_port,
                    "components": [
                        {"domain": "sip.localhost", "secret": server.components["sip.localhost"]}
                    ],
                },
            }
            config_toml = gateway_config(**merge(base, overrides))
        proc = GatewayProcess(config_toml, tmp_path / f"gateway-{len(procs) + 1}")
        procs.append(proc)
        return proc.start()

    try:
        yield start
    finally:
        for proc in procs:
            if proc.running:
                proc.kill()

"""The harness itself: each fixture starts a real peer that does its job, and stops it."""

from __future__ import annotations

import os
import signal
import socket
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from tests.harness import LOOPBACK, require_binary
from tests.harness.ejabberd import EjabberdServer
from tests.harness.gateway_proc import (
    GatewayProcess,
    GatewayProcessError,
    config_of,
    gateway_config,
)
from tests.harness.ports import free_port, free_ports
from tests.harness.prosody import ProsodyServer
from tests.harness.sipp import Sipp, SippProcess
from tests.harness.xmpp_client import XmppClientError, XmppTestClient, component_handshake
from tests.integration.conftest import SESSION_COMPONENTS, Account, ClientFactory


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


# -- binaries: skip locally, fail in CI ----------------------------------------------


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-peer-xyz not installed"):
        require_binary("no-such-peer-xyz")


def test_missing_binary_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI: no-such-peer-xyz not installed"):
        require_binary("no-such-peer-xyz")


def test_present_binary_is_found() -> None:
    assert Path(require_binary("sh")).name == "sh"


# -- ports -----------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable_for_tcp_and_udp() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind((LOOPBACK, port))


# -- Prosody ---------------------------------------------------------------------


async def test_prosody_two_users_exchange_a_message(xmpp_client: ClientFactory) -> None:
    alice = await xmpp_client(prefix="alice")
    bob = await xmpp_client(prefix="bob")
    alice.send_message(bob.jid.bare, "hello bob")
    msg = await bob.wait_message(lambda m: m["body"] == "hello bob")
    assert msg["from"] == alice.jid
    assert msg["type"] == "chat"


async def test_prosody_rejects_a_wrong_password(
    prosody: ProsodyServer, xmpp_account: Callable[..., Account]
) -> None:
    acct = xmpp_account("carol")
    client = XmppTestClient(acct.jid, "not-the-password", port=prosody.c2s_port)
    with pytest.raises(XmppClientError, match="authentication failed"):
        await client.connect(timeout=10)


async def test_prosody_serves_disco_and_ping(
    prosody: ProsodyServer, xmpp_client: ClientFactory
) -> None:
    client = await xmpp_client()
    info = await client.disco_info(prosody.domain)
    assert "urn:xmpp:ping" in info["disco_info"]["features"]
    assert await client.ping(prosody.domain) >= 0


@pytest.mark.parametrize("domain", sorted(SESSION_COMPONENTS))
def test_prosody_accepts_declared_components(prosody: ProsodyServer, domain: str) -> None:
    """XEP-0114 §3: the right secret gets an empty <handshake/>, a wrong one a stream error."""
    good = component_handshake(prosody.component_port, domain, SESSION_COMPONENTS[domain])
    assert "<handshake" in good and "stream:error" not in good
    bad = component_handshake(prosody.component_port, domain, "wrong-secret")
    assert "not-authorized" in bad


def test_prosody_logs_to_its_own_file(prosody: ProsodyServer) -> None:
    assert prosody.log_path.parent != Path("/var/log/prosody")
    prosody.wait_for_log(r"Activated host: sip\.localhost")


async def test_prosody_killed_and_restarted_keeps_ports_and_accounts(
    prosody_factory: Callable[..., ProsodyServer],
) -> None:
    server = prosody_factory()
    ports = (server.c2s_port, server.component_port)
    jid = server.add_user("dave@localhost", "pw")
    client = XmppTestClient(jid, "pw", port=server.c2s_port)
    await client.connect()
    pid = server.pid
    assert pid is not None
    server.kill()
    assert not server.running and _group_gone(pid)
    await client.xmpp.disconnected  # the client sees the stream die
    client.xmpp.abort()  # and does not reconnect behind the test's back
    server.restart()
    assert (server.c2s_port, server.component_port) == ports
    again = XmppTestClient(jid, "pw", port=server.c2s_port, resource="again")
    await again.connect()
    await again.disconnect()
    assert server.stop() == 0
    assert not server.running


def test_prosody_add_component_restarts_with_it(
    prosody_factory: Callable[..., ProsodyServer],
) -> None:
    server = prosody_factory(components={"old.localhost": "x"})
    assert "host-unknown" in component_handshake(server.component_port, "new.localhost", "x")
    server.add_component("new.localhost", "fresh")
    assert server.running
    assert "<handshake" in component_handshake(server.component_port, "new.localhost", "fresh")


# -- ejabberd ----------------------------------------------------------------------


async def test_ejabberd_accepts_client_login_and_delivers(
    ejabberd: EjabberdServer, xmpp_client: ClientFactory, xmpp_account: Callable[..., Account]
) -> None:
    erin = await xmpp_client(xmpp_account("erin", ejabberd), server=ejabberd)
    frank = await xmpp_client(xmpp_account("frank", ejabberd), server=ejabberd)
    erin.send_message(frank.jid.bare, "over ejabberd")
    msg = await frank.wait_message(lambda m: m["body"] == "over ejabberd")
    assert msg["from"] == erin.jid


def test_ejabberd_accepts_declared_components(ejabberd: EjabberdServer) -> None:
    good = component_handshake(ejabberd.component_port, "sip.localhost", "s3cret")
    assert "<handshake" in good and "stream:error" not in good
    bad = component_handshake(ejabberd.component_port, "sip.localhost", "wrong-secret")
    assert "not-authorized" in bad


# -- sipp --------------------------------------------------------------------------


def test_sipp_builtin_uac_against_builtin_uas(sipp: Sipp) -> None:
    with sipp.uas("uas") as uas:
        uac = sipp.run("uac", remote=f"{LOOPBACK}:{uas.local_port}", timeout=15)
        server = uas.wait()
    assert uac.ok, uac.describe()
    assert uac.successful_calls == 1
    assert server.ok, server.describe()
    assert "INVITE sip:" in server.messages


def test_sipp_message_scenarios_carry_the_body(sipp: Sipp) -> None:
    with sipp.uas("message_uas") as uas:
        target = f"sip:bob@{LOOPBACK}:{uas.local_port}"
        uac = sipp.run(
            "message_uac",
            remote=f"{LOOPBACK}:{uas.local_port}",
            keys={"to_uri": target, "from_uri": f"sip:alice@{LOOPBACK}", "body": "hi from sipp"},
            timeout=15,
        )
        server = uas.wait()
    assert uac.ok, uac.describe()
    assert server.ok, server.describe()
    assert f"MESSAGE {target} SIP/2.0" in server.messages
    assert "hi from sipp" in server.messages


def test_sipp_message_over_tcp(sipp: Sipp) -> None:
    with sipp.uas("message_uas", transport="t1") as uas:
        uac = sipp.run(
            "message_uac",
            remote=f"{LOOPBACK}:{uas.local_port}",
            transport="t1",
            keys={"to_uri": f"sip:bob@{LOOPBACK}", "from_uri": "sip:a@127.0.0.1", "body": "tcp"},
            timeout=15,
        )
        server = uas.wait()
    assert uac.ok, uac.describe()
    assert server.ok, server.describe()


def test_sipp_reports_failure_when_nobody_answers(sipp: Sipp) -> None:
    silent = free_port()  # nothing listens here
    result = sipp.run(
        "message_uac",
        remote=f"{LOOPBACK}:{silent}",
        keys={"to_uri": f"sip:x@{LOOPBACK}", "from_uri": "sip:y@127.0.0.1", "body": "?"},
        timeout=2,
    )
    assert not result.ok
    assert result.returncode != 0
    assert not result.timed_out  # sipp's own -timeout ended it
    assert result.successful_calls == 0


def test_sipp_killed_at_the_wall_clock_limit(tmp_path: Path, sipp: Sipp) -> None:
    # A UAS with no caller would wait for its 30 s -timeout; the harness kills it at 1 s.
    proc = SippProcess("uas", timeout=30, workdir=tmp_path)
    proc.wait_listening()
    result = proc.wait(kill_after=1.0)
    assert result.timed_out and not result.ok
    assert result.returncode == -signal.SIGKILL
    assert _group_gone(proc.proc.pid)


def test_sipp_uas_stopped_on_context_exit(sipp: Sipp) -> None:
    with sipp.uas("uas", timeout=30) as uas:
        assert uas.proc.poll() is None
    assert uas.proc.poll() is not None
    assert _group_gone(uas.proc.pid)


# -- the gateway process -------------------------------------------------------------

_FAKE_GATEWAY = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGHUP, lambda *_: print("got hup", flush=True))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("INFO gateway.app: gateway ready pid=1", flush=True)
    while True:
        time.sleep(0.1)
    """
)


def test_gateway_process_mechanics_with_a_stand_in(tmp_path: Path) -> None:
    proc = GatewayProcess("", tmp_path, argv=[sys.executable, "-c", _FAKE_GATEWAY]).start()
    assert "gateway ready" in proc.log_text()
    proc.send_signal(signal.SIGHUP)
    proc.wait_for_log("got hup", timeout=5)
    assert proc.terminate() == 0
    assert not proc.running


def test_gateway_process_raises_with_log_tail_on_early_exit(tmp_path: Path) -> None:
    script = "import sys; print('boom: bad config', flush=True); sys.exit(2)"
    proc = GatewayProcess("", tmp_path, argv=[sys.executable, "-c", script])
    with pytest.raises(GatewayProcessError, match=r"exited with 2(.|\n)*boom: bad config"):
        proc.start()


def test_gateway_process_killed_when_never_ready(tmp_path: Path) -> None:
    script = "import time; print('starting', flush=True); time.sleep(60)"
    proc = GatewayProcess("", tmp_path, argv=[sys.executable, "-c", script], ready_timeout=1)
    with pytest.raises(GatewayProcessError, match=r"no 'gateway ready' within 1s(.|\n)*starting"):
        proc.start()
    assert not proc.running and _group_gone(proc.pid)


def test_gateway_config_is_valid_for_the_loader(tmp_path: Path) -> None:
    text = gateway_config(
        xmpp={"port": 15347},
        sip={"listeners": [{"transport": "tcp", "address": LOOPBACK, "port": 15060}]},
        admin={"enabled": False},
    )
    data = config_of(text)
    cfg = load_config(data, base_dir=tmp_path)
    assert cfg.xmpp.port == 15347
    assert cfg.xmpp.components[0].domain == "sip.localhost"
    assert [(lst.transport.value, lst.port) for lst in cfg.sip.listeners] == [("tcp", 15060)]
    assert cfg.admin.enabled is False


def test_gateway_config_override_can_remove_a_key(tmp_path: Path) -> None:
    data = config_of(gateway_config(xmpp={"components": None}))
    with pytest.raises(ConfigError, match="components"):
        load_config(data, base_dir=tmp_path)


def test_gateway_starts_against_prosody_and_stops_on_sigterm(
    gateway: Callable[..., GatewayProcess],
) -> None:
    proc = gateway()
    assert proc.running
    assert proc.terminate(timeout=15) == 0, proc.tail()
    assert "stopped" in proc.log_text()

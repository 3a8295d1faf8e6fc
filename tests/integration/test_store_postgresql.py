"""The PostgreSQL store (issue 21) against a real PostgreSQL 15 (tests/harness/postgres.py).

Every test of tests/unit/test_store.py that takes the `store` fixture runs here again on
PostgreSQL (collected into this module, so they carry the `integration` marker). Then
what is PostgreSQL's own: paging of the restore, the schema versions and `db` commands,
several gateways migrating at once, and store faults: the server restarted or down while
the store is in use (a write that could not commit raises; the next call reconnects).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from gateway.store.api import Store, StoreError
from gateway.store.migrations import DESCRIPTIONS, SCHEMA_VERSION
from gateway.store.postgresql import PostgresStore, read_status
from gateway.store.sqlite import open_store
from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_command, gateway_config
from tests.harness.ports import free_port
from tests.harness.postgres import PostgresServer
from tests.unit import test_store as shared
from tests.unit.test_store import AOR, binding, pub, stored, sub

ROOT = Path(__file__).resolve().parents[2]

# The "both stores" tests of the unit suite, on PostgreSQL.
SHARED = {
    name: fn
    for name, fn in vars(shared).items()
    if name.startswith("test_") and callable(fn) and "store" in inspect.signature(fn).parameters
}
globals().update(SHARED)


def test_the_shared_suite_is_collected_here() -> None:
    assert len(SHARED) >= 7, sorted(SHARED)


@pytest.fixture
def store(postgres: PostgresServer) -> Iterator[Store]:
    s = PostgresStore(postgres.create_database())
    yield s
    s.close()


def test_restores_everything_after_reopen_in_pages(postgres: PostgresServer) -> None:
    dsn = postgres.create_database()
    s = PostgresStore(dsn)
    bindings = {
        n: binding(f"sip:u@192.0.2.{n}", aor=f"sip:u{n:04}@sip.localhost") for n in range(1500)
    }
    for b in bindings.values():
        s.set_bindings(b.aor, [b])
    s.put_subscriptions(sub(n) for n in range(2500))  # more than one page (_CHUNK rows)
    s.set_publications(AOR, "presence", [pub("e1"), pub("e2")])
    for n in range(1100):
        assert s.put_message(stored(n))
    s.close()
    s = PostgresStore(dsn)
    assert list(s.all_bindings()) == [bindings[n] for n in range(1500)]
    assert sorted(s.all_subscriptions(), key=lambda r: r.local_cseq) == [
        sub(n) for n in range(2500)
    ]
    assert list(s.all_publications()) == [pub("e1"), pub("e2")]
    assert [m.message_id for m in s.all_messages()] == [f"id{n}" for n in range(1100)]
    s.close()


def test_schema_versions_are_recorded(postgres: PostgresServer) -> None:
    dsn = postgres.create_database()
    empty = read_status(dsn)
    assert (empty.version, empty.pending) == (0, tuple(sorted(DESCRIPTIONS)))
    before = time.time()
    PostgresStore(dsn).close()
    found = read_status(dsn)
    assert found.version == SCHEMA_VERSION
    assert [(v, d) for v, d, _ in found.applied] == sorted(DESCRIPTIONS.items())
    assert all(at is not None and at >= before - 1 for _, _, at in found.applied)


def test_newer_schema_refused(postgres: PostgresServer) -> None:
    dsn = postgres.create_database()
    PostgresStore(dsn).close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (%s, 'future', 0)", (SCHEMA_VERSION + 1,)
        )
    with pytest.raises(StoreError, match="schema version"):
        PostgresStore(dsn)


def test_gateways_starting_together_migrate_once(postgres: PostgresServer) -> None:
    dsn = postgres.create_database()
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            PostgresStore(dsn).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == sorted(DESCRIPTIONS)


def test_unreachable_server_fails_at_open_without_the_password() -> None:
    dsn = f"host=127.0.0.1 port={free_port()} dbname=gw user=gw password=hunter2"
    with pytest.raises(StoreError, match="cannot connect") as err:
        PostgresStore(dsn, connect_timeout=1)
    assert "hunter2" not in str(err.value)
    assert f"127.0.0.1:{dsn.split()[1][5:]}/gw" in str(err.value)


def test_db_status_and_upgrade_commands(postgres: PostgresServer, tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[store]\nbackend = "postgresql"\ndsn_env = "GW_TEST_DSN"\n'
        '[[xmpp.components]]\ndomain = "sip.example.org"\nsecret = "s"\n'
    )
    env = {**os.environ, "GW_TEST_DSN": postgres.create_database(), "PYTHONPATH": str(ROOT)}

    def db(action: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "db", action, "-c", str(cfg)],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    before = db("status")
    assert before.returncode == 0, before.stderr
    assert "store      postgresql 127.0.0.1:" in before.stdout
    assert "schema     version 0" in before.stdout
    up = db("upgrade")
    assert up.returncode == 0, up.stderr
    assert f"schema     version {SCHEMA_VERSION}," in up.stdout
    assert "pending" not in up.stdout
    assert db("status").stdout == up.stdout


# -- store faults: the server restarted or down under a store in use


def test_restart_reconnects_on_the_next_call(postgres: PostgresServer) -> None:
    s = PostgresStore(postgres.create_database())
    b = binding("sip:romeo@192.0.2.7")
    s.set_bindings(AOR, [b])
    postgres.restart()
    assert s.bindings(AOR) == (b,)  # a read: retried once on a new connection
    postgres.restart()
    s.put_subscription(sub(1))  # a write whose BEGIN met the dead connection: retried
    assert s.get_subscription("call-1", "tag-1") == sub(1)
    s.close()


def test_write_while_down_raises_and_stores_nothing(postgres: PostgresServer) -> None:
    s = PostgresStore(postgres.create_database(), connect_timeout=1)
    assert s.put_message(stored(1))
    postgres.stop()
    try:
        with pytest.raises(StoreError, match=r"cannot connect|write failed"):
            s.put_message(stored(2))
        with pytest.raises(StoreError):
            s.messages(AOR)
    finally:
        postgres.restart()
    assert [m.message_id for m in s.messages(AOR)] == ["id1"]
    assert s.put_message(stored(2))  # it was not stored: now it is, once
    assert [m.message_id for m in s.messages(AOR)] == ["id1", "id2"]
    s.close()


def test_write_cut_mid_transaction_raises_and_changes_nothing(postgres: PostgresServer) -> None:
    dsn = postgres.create_database()
    s = PostgresStore(dsn)
    old = binding("sip:romeo@192.0.2.1")
    s.set_bindings(AOR, [old])
    s.bindings(AOR)
    holder = psycopg.connect(dsn)  # holds the table, so the write waits after BEGIN
    holder.execute("LOCK TABLE bindings IN ACCESS EXCLUSIVE MODE")
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            s.set_bindings(AOR, [binding("sip:romeo@192.0.2.2")])
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 10
    while True:
        waiting = holder.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        ).fetchone()
        if waiting is not None and waiting[0] >= 1:
            break
        assert time.monotonic() < deadline, "the write never waited on the lock"
        time.sleep(0.05)
    postgres.restart()  # fast shutdown: both connections are cut, nothing commits
    writer.join(20)
    holder.close()
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError), outcome
    assert "write failed" in str(outcome[0])
    assert s.bindings(AOR) == (old,)  # the next call reconnects; the old state is intact
    new = binding("sip:romeo@192.0.2.3")
    s.set_bindings(AOR, [new])
    assert s.bindings(AOR) == (new,)
    s.close()


# -- figures (printed, not asserted): a single-row commit on each back end


def _per_commit(fn: Callable[[int], object], n: int = 500) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n


def test_single_row_commit_latency_figures(
    postgres: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lite = open_store(tmp_path)
    pg = PostgresStore(postgres.create_database())
    _per_commit(lambda i: pg.put_subscription(sub(i)), 100)  # warm up the connection
    lite_s = _per_commit(lambda i: lite.put_subscription(sub(i)))
    pg_s = _per_commit(lambda i: pg.put_subscription(sub(i)))
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET fsync = on")
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        try:
            pg_fsync = _per_commit(lambda i: pg.put_subscription(sub(i, state="pending")))
        finally:
            conn.execute("ALTER SYSTEM RESET fsync")
            conn.execute("SELECT pg_reload_conf()")
    assert pg.get_subscription("call-7", "tag-7") == sub(7, state="pending")
    lite.close()
    pg.close()
    with capsys.disabled():
        print(
            f"\n[store] single-row commit (put_subscription): sqlite WAL/NORMAL"
            f" {lite_s * 1e6:.0f}us, postgresql loopback {pg_s * 1e6:.0f}us (fsync off),"
            f" {pg_fsync * 1e6:.0f}us (fsync on, data dir on {postgres.root})"
        )


# -- the gateway process on PostgreSQL (`[store] backend = "postgresql"`)


def test_gateway_starts_on_postgresql_and_migrates(
    gateway: Callable[..., GatewayProcess], postgres: PostgresServer
) -> None:
    dsn = postgres.create_database()
    gw = gateway(store={"backend": "postgresql", "dsn": dsn})
    assert read_status(dsn).version == SCHEMA_VERSION
    assert "dbname=" not in gw.log_text()  # the DSN is never logged
    assert gw.terminate() == 0


def test_gateway_refuses_to_start_when_postgresql_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    config = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={"port": free_port()},  # nobody listens: the store must fail before the links
        sip={"listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}]},
        admin={"enabled": False},
        store={
            "backend": "postgresql",
            "dsn": f"host={LOOPBACK} port={port} dbname=gw password=hunter2",
            "connect_timeout": 1,
        },
    )
    path = tmp_path / "gateway.toml"
    path.write_text(config, encoding="utf-8")
    done = subprocess.run(
        gateway_command(path, "info"),
        cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode != 0, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert "cannot start:" in errors[0] and "cannot connect" in errors[0], errors[0]
    assert f"{LOOPBACK}:{port}/gw" in errors[0]
    assert "hunter2" not in output
    assert "Traceback" not in output
    assert "gateway ready" not in output

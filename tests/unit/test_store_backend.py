"""The store's back-end choice (issue 21): `[store]` keys, the shared schema versions, the
`schema_migrations` record and `cpim-gateway db status|upgrade` on SQLite. The same on
PostgreSQL: tests/integration/test_store_postgresql.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.config import ConfigError, StoreConfig, load_config
from gateway.store import postgresql, sqlite
from gateway.store.configured import open_configured, status
from gateway.store.migrations import DESCRIPTIONS, SCHEMA_VERSION, SchemaStatus
from gateway.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = '[[xmpp.components]]\ndomain = "sip.example.org"\nsecret = "s"\n'


def load(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> StoreConfig:
    return load_config(tomllib.loads(MINIMAL + text), base_dir=tmp_path, env=env or {}).store


def test_store_defaults_to_sqlite(tmp_path: Path) -> None:
    assert load("", tmp_path) == StoreConfig("sqlite", None, 5.0)


def test_postgresql_dsn_inline_file_or_env_never_in_repr(tmp_path: Path) -> None:
    dsn = "host=127.0.0.1 dbname=gw password=hunter2"
    inline = load(f'[store]\nbackend = "postgresql"\ndsn = "{dsn}"\n', tmp_path)
    assert inline == StoreConfig("postgresql", dsn, 5.0)
    assert "hunter2" not in repr(inline)
    (tmp_path / "dsn").write_text(dsn + "\n")
    from_file = load('[store]\nbackend = "postgresql"\ndsn_file = "dsn"\n', tmp_path)
    assert from_file.dsn == dsn
    env = {"GW_DSN": dsn}
    text = '[store]\nbackend = "postgresql"\ndsn_env = "GW_DSN"\nconnect_timeout = 2.5\n'
    assert load(text, tmp_path, env) == StoreConfig("postgresql", dsn, 2.5)


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        ('[store]\nbackend = "postgresql"\n', "store.dsn", "missing"),
        ('[store]\ndsn = "host=x"\n', "store.dsn", "only for backend"),
        ('[store]\nbackend = "mysql"\n', "store.backend", "one of"),
        ('[store]\nbackend = "postgresql"\ndsn = "a"\ndsn_env = "B"\n', "store.dsn_env",
         "only one"),
        ('[store]\nbackend = "postgresql"\ndsn_env = "NOPE"\n', "store.dsn_env", "not set"),
        ('[store]\nbackend = "postgresql"\ndsn = "a"\nconnect_timeout = 0\n',
         "store.connect_timeout", "positive"),
        ('[store]\npath = "x"\n', "store.path", "unknown key"),
    ],
)  # fmt: skip
def test_store_config_errors_name_the_key(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load(text, tmp_path)
    assert err.value.path == key
    assert message in str(err.value)


def test_both_back_ends_know_the_same_versions() -> None:
    assert set(sqlite._MIGRATIONS) == set(postgresql._MIGRATIONS) == set(DESCRIPTIONS)
    # every version from 1 up is known: no gap
    assert set(DESCRIPTIONS) == set(range(1, SCHEMA_VERSION + 1))
    assert sqlite.SCHEMA_VERSION == SCHEMA_VERSION


def test_sqlite_records_migrations_and_backfills_older_files(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    old = sqlite3.connect(path)  # version 1, as written before the table existed
    old.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    before = sqlite.read_status(path)
    assert (before.version, before.pending) == (1, (2, 3, 4))
    assert before.applied == ((1, DESCRIPTIONS[1], None),)
    SqliteStore(path).close()
    rows = sqlite3.connect(path).execute("SELECT * FROM schema_migrations").fetchall()
    assert [(v, at is None) for v, _, at in rows] == [(1, True), (2, False), (3, False), (4, False)]
    after = sqlite.read_status(path)
    assert (after.version, after.pending) == (4, ())
    assert [v for v, _, _ in after.applied] == [1, 2, 3, 4]


def test_status_of_a_missing_file_creates_nothing(tmp_path: Path) -> None:
    found = status(StoreConfig(), tmp_path / "state")
    assert found == SchemaStatus("sqlite", str(tmp_path / "state" / "gateway.sqlite3"), 0)
    assert found.pending == tuple(sorted(DESCRIPTIONS))
    assert not (tmp_path / "state").exists()
    open_configured(StoreConfig(), tmp_path / "state").close()
    assert status(StoreConfig(), tmp_path / "state").version == SCHEMA_VERSION


def test_newer_schema_is_reported() -> None:
    lines = SchemaStatus("sqlite", "f", SCHEMA_VERSION + 1).lines()
    assert any("newer" in ln for ln in lines)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_db_status_then_upgrade_on_sqlite(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text('[gateway]\nstate_dir = "st"\n' + MINIMAL)
    before = cli("db", "status", "--config", str(cfg), cwd=ROOT)
    assert before.returncode == 0, before.stderr
    assert "schema     version 0" in before.stdout
    assert f"pending    {SCHEMA_VERSION}:" in before.stdout
    up = cli("db", "upgrade", "-c", str(cfg), cwd=ROOT)
    assert up.returncode == 0, up.stderr
    assert f"schema     version {SCHEMA_VERSION}," in up.stdout
    assert "pending" not in up.stdout
    assert (tmp_path / "st" / "gateway.sqlite3").is_file()


def test_db_upgrade_refuses_a_newer_schema_with_exit_1(tmp_path: Path) -> None:
    (tmp_path / "st").mkdir()
    conn = sqlite3.connect(tmp_path / "st" / "gateway.sqlite3")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    cfg = tmp_path / "g.toml"
    cfg.write_text('[gateway]\nstate_dir = "st"\n' + MINIMAL)
    out = cli("db", "upgrade", "-c", str(cfg), cwd=ROOT)
    assert out.returncode == 1
    assert "schema version" in out.stderr

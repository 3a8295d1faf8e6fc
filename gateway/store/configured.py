"""The store the configuration names (`[store] backend`, docs/configuration.md).

`open_configured` opens it (migrating the schema), `status` reads its schema without
changing anything: the two halves of `cpim-gateway db upgrade` / `db status` and of the
application's start. psycopg is imported only for `backend = "postgresql"` (the optional
`postgresql` extra), so an SQLite deployment does not need it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from gateway.config import StoreConfig
from gateway.store.api import Store, StoreError
from gateway.store.migrations import SchemaStatus
from gateway.store.sqlite import DEFAULT_FILENAME, open_store, read_status

__all__ = ["open_configured", "status"]


def _postgresql() -> ModuleType:
    try:
        from gateway.store import postgresql
    except ImportError as exc:  # psycopg missing
        raise StoreError(
            f"backend postgresql needs psycopg 3 (pip install 'cpim-gateway[postgresql]'): {exc}"
        ) from None
    return postgresql


def open_configured(cfg: StoreConfig, state_dir: Path) -> Store:
    """Open the configured store and bring its schema up to date; StoreError on failure."""
    if cfg.backend == "postgresql":
        assert cfg.dsn is not None  # the loader requires it
        store: Store = _postgresql().PostgresStore(cfg.dsn, connect_timeout=cfg.connect_timeout)
        return store
    return open_store(state_dir)


def status(cfg: StoreConfig, state_dir: Path) -> SchemaStatus:
    """The schema of the configured store, read only."""
    if cfg.backend == "postgresql":
        assert cfg.dsn is not None
        found: SchemaStatus = _postgresql().read_status(cfg.dsn, cfg.connect_timeout)
        return found
    return read_status(state_dir / DEFAULT_FILENAME)

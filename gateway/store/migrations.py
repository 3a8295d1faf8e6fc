"""Schema versions shared by every SQL back end (SQLite, PostgreSQL).

A version number means the same tables on every back end: each back end holds its own
statements for each version (`gateway.store.sqlite`, `gateway.store.postgresql`) and a
unit test checks that both know exactly the versions listed here. Applied versions are
rows of the `schema_migrations` table (version, description, applied_at); migrations run
at start and by `cpim-gateway db upgrade` (docs/operations.md, "Database").
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

__all__ = ["DESCRIPTIONS", "SCHEMA_VERSION", "SchemaStatus"]

DESCRIPTIONS: dict[int, str] = {
    1: "bindings, subscriptions, publications",
    2: "offline_messages (issue 17: store-and-forward)",
    3: "xcap_documents (issue 24: resource lists and pres-rules over XCAP)",
    4: "leases (issue 21: timers owned by one live instance of a cluster)",
}
SCHEMA_VERSION = max(DESCRIPTIONS)


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a store's schema stands: `applied` is (version, description, applied_at)
    in version order; `applied_at` is None for versions applied before the table existed."""

    backend: str
    location: str  # a path, or host/port/dbname (never a password)
    version: int
    applied: tuple[tuple[int, str, float | None], ...] = ()

    @property
    def pending(self) -> tuple[int, ...]:
        return tuple(v for v in sorted(DESCRIPTIONS) if v > self.version)

    def lines(self) -> list[str]:
        """The `cpim-gateway db status` report."""
        out = [
            f"store      {self.backend} {self.location}",
            f"schema     version {self.version}, this gateway knows up to {SCHEMA_VERSION}",
        ]
        for v, desc, at in self.applied:
            when = "before migrations were recorded" if at is None else _iso(at)
            out.append(f"applied    {v}: {desc} ({when})")
        out += [f"pending    {v}: {DESCRIPTIONS[v]}" for v in self.pending]
        if self.version > SCHEMA_VERSION:
            out.append("newer      the schema is newer than this gateway (no downgrade)")
        return out


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

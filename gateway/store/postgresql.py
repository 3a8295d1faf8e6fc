"""PostgreSQL `Store` (psycopg 3, synchronous): one connection, one transaction per write.

The `Store` protocol is synchronous and the glue calls it from the event loop (as with
SQLite), so the driver is psycopg 3's blocking API: a single-row commit on loopback takes
a few hundred microseconds (docs/operations.md, "Database"), less than a thread hand-off
plus asyncpg's loop round trip would save, and every caller stays as it is.

Schema: the same versions as SQLite (gateway/store/migrations.py), recorded in
`schema_migrations`; applied at open under a transaction-scoped advisory lock, so several
gateways starting at once migrate once. Opening also commits a real write, so a
read-only role or a full disk fails at start.

Faults (issue 21): a lost connection is noticed by the call that uses it. A read is
retried once on a new connection. A write is retried once only when the old connection
failed at BEGIN (nothing was sent that could commit); a write that failed later raises
`StoreError`, so the caller never answers 2xx for it, and the next call reconnects. While
the server is down every call raises `StoreError` after `connect_timeout`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import conninfo

from gateway.store.api import (
    Binding,
    Expired,
    Flow,
    Lease,
    Publication,
    StoredMessage,
    StoreError,
    SubscriptionRecord,
    XcapDocument,
)
from gateway.store.migrations import DESCRIPTIONS, SCHEMA_VERSION, SchemaStatus

__all__ = ["PostgresStore", "describe_dsn", "read_status"]

_CHUNK = 1000
T = TypeVar("T")
_LOCK_ID = 0x43_50_49_4D_21  # pg_advisory_xact_lock key of the migrations ("CPIM!")

_BINDING_COLS = (
    "aor, pos, contact, expires_at, call_id, cseq, q, instance, reg_id, flow_transport,"
    " flow_local, flow_remote, flow_connection, path, received, updated_at"
)
_SUB_COLS = (
    "call_id, local_tag, direction, watcher, target, remote_tag, event, route_set,"
    " remote_target, local_cseq, remote_cseq, state, expires_at, last_document,"
    " content_type, xmpp_authorization"
)
_PUB_COLS = "aor, event, pos, etag, expires_at, body, content_type, updated_at"
_MSG_COLS = (
    "message_id, aor, stored_at, expires_at, sender, stanza_id, component, recipient, from_uri,"
    " call_id, content_type, body, subject, lang, call_info, receipt_id"
)
_SUB_UPDATE = ", ".join(f"{c.strip()} = EXCLUDED.{c.strip()}" for c in _SUB_COLS.split(",")[2:])

_XCAP_COLS = "auid, aor, name, body, etag, updated_at"

_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at DOUBLE PRECISION)"""

# Version -> statements; the same tables, columns and keys as gateway/store/sqlite.py.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE bindings (
            aor TEXT NOT NULL, pos INTEGER NOT NULL, contact TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL, call_id TEXT NOT NULL, cseq BIGINT NOT NULL,
            q DOUBLE PRECISION, instance TEXT, reg_id BIGINT, flow_transport TEXT,
            flow_local TEXT, flow_remote TEXT, flow_connection TEXT, path TEXT NOT NULL,
            received TEXT, updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (aor, contact),
            UNIQUE (aor, pos))""",
        "CREATE INDEX bindings_expiry ON bindings (expires_at)",
        """CREATE TABLE subscriptions (
            call_id TEXT NOT NULL, local_tag TEXT NOT NULL, direction TEXT NOT NULL,
            watcher TEXT NOT NULL, target TEXT NOT NULL, remote_tag TEXT,
            event TEXT NOT NULL, route_set TEXT NOT NULL, remote_target TEXT,
            local_cseq BIGINT NOT NULL, remote_cseq BIGINT, state TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL, last_document BYTEA, content_type TEXT,
            xmpp_authorization TEXT NOT NULL, PRIMARY KEY (call_id, local_tag))""",
        "CREATE INDEX subscriptions_watcher ON subscriptions (watcher)",
        "CREATE INDEX subscriptions_target ON subscriptions (target)",
        "CREATE INDEX subscriptions_expiry ON subscriptions (expires_at)",
        """CREATE TABLE publications (
            aor TEXT NOT NULL, event TEXT NOT NULL, pos INTEGER NOT NULL,
            etag TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL, body BYTEA NOT NULL,
            content_type TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (aor, event, etag), UNIQUE (aor, event, pos))""",
        "CREATE INDEX publications_expiry ON publications (expires_at)",
    ),
    2: (
        """CREATE TABLE offline_messages (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            message_id TEXT NOT NULL UNIQUE,
            aor TEXT NOT NULL, stored_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            sender TEXT NOT NULL, stanza_id TEXT NOT NULL, component TEXT NOT NULL,
            recipient TEXT NOT NULL, from_uri TEXT NOT NULL, call_id TEXT NOT NULL,
            content_type TEXT NOT NULL,
            body BYTEA NOT NULL, subject TEXT, lang TEXT, call_info TEXT, receipt_id TEXT)""",
        "CREATE INDEX offline_messages_aor ON offline_messages (aor, seq)",
    ),
    3: (
        """CREATE TABLE xcap_documents (
            auid TEXT NOT NULL, aor TEXT NOT NULL, name TEXT NOT NULL,
            body BYTEA NOT NULL, etag TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (auid, aor, name))""",
        "CREATE INDEX xcap_documents_aor ON xcap_documents (aor)",
    ),
    4: (
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)""",
    ),
}

# The compare-and-set of gateway.cluster.lease.claim: free, mine, or lapsed. The row lock
# of ON CONFLICT serialises concurrent claims (READ COMMITTED re-checks the WHERE).
_CLAIM = (
    "INSERT INTO leases (name, owner, expires_at) VALUES (%s, %s, %s) ON CONFLICT (name)"
    " DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at"
    " WHERE leases.owner = EXCLUDED.owner OR leases.expires_at <= %s"
)


def describe_dsn(dsn: str) -> str:
    """host:port/dbname of a DSN, for messages (never its password)."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.Error:
        return "(unparseable DSN)"
    host = parts.get("host") or parts.get("hostaddr") or "local socket"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"{host}{port}/{parts.get('dbname') or parts.get('user') or ''}"


# -- rows (the same shapes as gateway/store/sqlite.py; lists as JSON text)


def _binding_row(b: Binding, pos: int) -> tuple[Any, ...]:
    f = b.flow
    return (
        b.aor, pos, b.contact, b.expires_at, b.call_id, b.cseq, b.q, b.instance, b.reg_id,
        None if f is None else f.transport,
        None if f is None else f.local,
        None if f is None else f.remote,
        None if f is None else f.connection_id,
        json.dumps(list(b.path)), b.received, b.updated_at,
    )  # fmt: skip


def _binding(row: tuple[Any, ...]) -> Binding:
    (aor, _, contact, exp, call_id, cseq, q, inst, reg_id, ft, fl, fr, fc, path, rcv, upd) = row
    flow = None if ft is None else Flow(ft, fl, fr, fc)
    return Binding(
        aor=aor, contact=contact, expires_at=exp, call_id=call_id, cseq=cseq, q=q,
        instance=inst, reg_id=reg_id, flow=flow, path=tuple(json.loads(path)), received=rcv,
        updated_at=upd,
    )  # fmt: skip


def _sub_row(r: SubscriptionRecord) -> tuple[Any, ...]:
    return (
        r.call_id, r.local_tag, r.direction, r.watcher, r.target, r.remote_tag, r.event,
        json.dumps(list(r.route_set)), r.remote_target, r.local_cseq, r.remote_cseq, r.state,
        r.expires_at, r.last_document, r.content_type, r.xmpp_authorization,
    )  # fmt: skip


def _sub(row: tuple[Any, ...]) -> SubscriptionRecord:
    (call_id, ltag, direction, watcher, target, rtag, event, routes, rtarget) = row[:9]
    (lcseq, rcseq, state, exp, doc, ctype, auth) = row[9:]
    return SubscriptionRecord(
        direction=direction, watcher=watcher, target=target, call_id=call_id, local_tag=ltag,
        remote_tag=rtag, event=event,
        route_set=() if routes == "[]" else tuple(json.loads(routes)),
        remote_target=rtarget, local_cseq=lcseq, remote_cseq=rcseq, state=state,
        expires_at=exp, last_document=None if doc is None else bytes(doc), content_type=ctype,
        xmpp_authorization=auth,
    )  # fmt: skip


def _pub_row(p: Publication, pos: int) -> tuple[Any, ...]:
    return (p.aor, p.event, pos, p.etag, p.expires_at, p.body, p.content_type, p.updated_at)


def _pub(row: tuple[Any, ...]) -> Publication:
    aor, event, _, etag, exp, body, ctype, upd = row
    return Publication(aor, etag, event, exp, bytes(body), ctype, upd)


def _msg_row(m: StoredMessage) -> tuple[Any, ...]:
    return (
        m.message_id, m.aor, m.stored_at, m.expires_at, m.sender, m.stanza_id, m.component,
        m.recipient, m.from_uri, m.call_id, m.content_type, m.body, m.subject, m.lang,
        m.call_info, m.receipt_id,
    )  # fmt: skip


def _msg(row: tuple[Any, ...]) -> StoredMessage:
    (mid, aor, stored, exp, sender, sid, comp, rcpt, from_uri, call_id, ctype, body) = row[:12]
    subject, lang, call_info, receipt_id = row[12:]
    return StoredMessage(
        mid, aor, stored, exp, sender, sid, comp, rcpt, from_uri, call_id, ctype, bytes(body),
        subject, lang, call_info, receipt_id,
    )  # fmt: skip


def _xcap(row: tuple[Any, ...]) -> XcapDocument:
    auid, aor, name, body, etag, updated_at = row
    return XcapDocument(auid, aor, name, bytes(body), etag, updated_at)


def _placeholders(n: int) -> str:
    return ", ".join(["%s"] * n)


def read_status(dsn: str, connect_timeout: float = 5.0) -> SchemaStatus:
    """The schema of the database `dsn` names, read only (nothing created or migrated)."""
    where = describe_dsn(dsn)
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, round(connect_timeout))) as conn:
            found = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
            rows = []
            if found is not None and found[0] is not None:
                rows = conn.execute(
                    "SELECT version, description, applied_at FROM schema_migrations"
                    " ORDER BY version"
                ).fetchall()
    except psycopg.Error as exc:
        raise StoreError(f"postgresql store {where}: {_reason(exc)}") from None
    applied = tuple((int(v), str(d), at) for v, d, at in rows)
    return SchemaStatus("postgresql", where, max((v for v, _, _ in applied), default=0), applied)


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class _Broken(Exception):
    """The connection failed before the transaction began: safe to retry elsewhere."""


class PostgresStore:
    def __init__(self, dsn: str, *, connect_timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._timeout = max(1, round(connect_timeout))  # libpq takes whole seconds
        self.location = describe_dsn(dsn)
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._closed = False
        conn = self._connection()
        try:
            self._migrate(conn)
        except psycopg.Error as exc:
            self._drop()
            raise StoreError(
                f"postgresql store {self.location} is unusable: {_reason(exc)}"
            ) from None
        except StoreError:
            self._drop()
            raise

    # -- plumbing
    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._closed:
            raise StoreError("store is closed")
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._drop()
        try:
            self._conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._timeout)
        except psycopg.Error as exc:
            raise StoreError(
                f"postgresql store {self.location}: cannot connect: {_reason(exc)}"
            ) from None
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _migrate(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute(_MIGRATIONS_TABLE)
            row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
            version = 0 if row is None or row[0] is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"postgresql store {self.location} has schema version {version}; this "
                    f"gateway knows up to {SCHEMA_VERSION} (downgrade is not supported)"
                )
            for v in sorted(_MIGRATIONS):
                if v <= version:
                    continue
                for stmt in _MIGRATIONS[v]:
                    conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                    (v, DESCRIPTIONS[v], time.time()),
                )
            # A real write, so that a read-only role fails here and not at the first message.
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (str(SCHEMA_VERSION),),
            )

    def _write(self, work: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        """`work` in one transaction; StoreError when it may not have committed."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return self._transaction(conn, work)
            except _Broken as exc:  # nothing was sent that could commit
                self._drop()
                if attempt == 2:
                    raise StoreError(
                        f"postgresql store {self.location}: write failed: {exc}"
                    ) from None
            except psycopg.Error as exc:
                if conn.closed or conn.broken:
                    self._drop()  # the next call reconnects
                raise StoreError(
                    f"postgresql store {self.location}: write failed: {_reason(exc)}"
                ) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _transaction(
        conn: psycopg.Connection[tuple[Any, ...]],
        work: Callable[[psycopg.Connection[tuple[Any, ...]]], T],
    ) -> T:
        try:
            conn.execute("BEGIN")
        except psycopg.OperationalError as exc:
            raise _Broken(_reason(exc)) from None
        try:
            result = work(conn)
            conn.execute("COMMIT")  # raises when it fails: the caller is told
        except BaseException:
            if not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            raise
        return result

    def _read(
        self, sql: str, args: tuple[Any, ...], conv: Callable[[tuple[Any, ...]], T]
    ) -> tuple[T, ...]:
        for attempt in (1, 2):
            conn = self._connection()
            try:
                return tuple(conv(r) for r in conn.execute(sql, args).fetchall())
            except psycopg.Error as exc:
                lost = conn.closed or conn.broken
                if lost:
                    self._drop()
                if not lost or attempt == 2:
                    raise StoreError(
                        f"postgresql store {self.location}: read failed: {_reason(exc)}"
                    ) from None
        raise AssertionError("unreachable")

    def _pages(
        self,
        sql: str,
        key: Callable[[tuple[Any, ...]], tuple[Any, ...]],
        after: str,
        conv: Callable[[tuple[Any, ...]], T],
    ) -> Iterator[T]:
        """Keyset pages of `_CHUNK` rows: no transaction or cursor stays open between them.
        `sql` has `{where}` where `after` (a row comparison on the ORDER BY key) goes."""
        last: tuple[Any, ...] | None = None
        while True:
            if last is None:
                rows = self._read(sql.format(where="") + f" LIMIT {_CHUNK}", (), lambda r: r)
            else:
                rows = self._read(
                    sql.format(where=f"WHERE {after}") + f" LIMIT {_CHUNK}", last, lambda r: r
                )
            yield from (conv(r) for r in rows)
            if len(rows) < _CHUNK:
                return
            last = key(rows[-1])

    # -- bindings
    def bindings(self, aor: str) -> tuple[Binding, ...]:
        sql = f"SELECT {_BINDING_COLS} FROM bindings WHERE aor = %s ORDER BY pos"
        return self._read(sql, (aor,), _binding)

    def set_bindings(self, aor: str, bindings: Iterable[Binding]) -> None:
        items = tuple(bindings)
        if any(b.aor != aor for b in items):
            raise StoreError(f"binding for another AOR in set_bindings({aor!r})")
        rows = [_binding_row(b, i) for i, b in enumerate(items)]

        def work(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            conn.execute("DELETE FROM bindings WHERE aor = %s", (aor,))
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO bindings ({_BINDING_COLS}) VALUES ({_placeholders(16)})",
                        rows,
                    )

        self._write(work)

    def all_bindings(self) -> Iterator[Binding]:
        sql = f"SELECT {_BINDING_COLS} FROM bindings {{where}} ORDER BY aor, pos"
        return self._pages(sql, lambda r: (r[0], r[1]), "(aor, pos) > (%s, %s)", _binding)

    # -- subscriptions
    def put_subscription(self, record: SubscriptionRecord) -> None:
        self.put_subscriptions((record,))

    def put_subscriptions(self, records: Iterable[SubscriptionRecord]) -> None:
        rows = [_sub_row(r) for r in records]
        if not rows:
            return
        sql = (
            f"INSERT INTO subscriptions ({_SUB_COLS}) VALUES ({_placeholders(16)})"
            f" ON CONFLICT (call_id, local_tag) DO UPDATE SET {_SUB_UPDATE}"
        )

        def work(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            if len(rows) == 1:
                conn.execute(sql, rows[0])
                return
            with conn.cursor() as cur:
                cur.executemany(sql, rows)

        self._write(work)

    def get_subscription(self, call_id: str, local_tag: str) -> SubscriptionRecord | None:
        sql = f"SELECT {_SUB_COLS} FROM subscriptions WHERE call_id = %s AND local_tag = %s"
        found = self._read(sql, (call_id, local_tag), _sub)
        return found[0] if found else None

    def delete_subscription(self, call_id: str, local_tag: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "DELETE FROM subscriptions WHERE call_id = %s AND local_tag = %s",
                (call_id, local_tag),
            )
        )

    def subscriptions(
        self, *, watcher: str | None = None, target: str | None = None
    ) -> tuple[SubscriptionRecord, ...]:
        where, args = [], []
        if watcher is not None:
            where.append("watcher = %s")
            args.append(watcher)
        if target is not None:
            where.append("target = %s")
            args.append(target)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        return self._read(f"SELECT {_SUB_COLS} FROM subscriptions{cond}", tuple(args), _sub)

    def all_subscriptions(self) -> Iterator[SubscriptionRecord]:
        sql = f"SELECT {_SUB_COLS} FROM subscriptions {{where}} ORDER BY call_id, local_tag"
        return self._pages(sql, lambda r: (r[0], r[1]), "(call_id, local_tag) > (%s, %s)", _sub)

    # -- publications
    def publications(self, aor: str, event: str | None = None) -> tuple[Publication, ...]:
        if event is None:
            sql = f"SELECT {_PUB_COLS} FROM publications WHERE aor = %s ORDER BY event, pos"
            return self._read(sql, (aor,), _pub)
        sql = f"SELECT {_PUB_COLS} FROM publications WHERE aor = %s AND event = %s ORDER BY pos"
        return self._read(sql, (aor, event), _pub)

    def set_publications(self, aor: str, event: str, publications: Iterable[Publication]) -> None:
        items = tuple(publications)
        if any(p.aor != aor or p.event != event for p in items):
            raise StoreError(f"publication for another AOR/event in set_publications({aor!r})")
        rows = [_pub_row(p, i) for i, p in enumerate(items)]

        def work(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            conn.execute("DELETE FROM publications WHERE aor = %s AND event = %s", (aor, event))
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO publications ({_PUB_COLS}) VALUES ({_placeholders(8)})",
                        rows,
                    )

        self._write(work)

    def all_publications(self) -> Iterator[Publication]:
        sql = f"SELECT {_PUB_COLS} FROM publications {{where}} ORDER BY aor, event, pos"
        after = "(aor, event, pos) > (%s, %s, %s)"
        return self._pages(sql, lambda r: (r[0], r[1], r[2]), after, _pub)

    # -- stored messages (docs/offline.md): committed before the sender is answered
    def put_message(self, message: StoredMessage) -> bool:
        sql = (
            f"INSERT INTO offline_messages ({_MSG_COLS}) VALUES ({_placeholders(16)})"
            " ON CONFLICT (message_id) DO NOTHING"
        )
        row = _msg_row(message)
        return self._write(lambda conn: conn.execute(sql, row).rowcount == 1)

    def messages(self, aor: str) -> tuple[StoredMessage, ...]:
        sql = f"SELECT {_MSG_COLS} FROM offline_messages WHERE aor = %s ORDER BY seq"
        return self._read(sql, (aor,), _msg)

    def delete_message(self, message_id: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "DELETE FROM offline_messages WHERE message_id = %s", (message_id,)
            )
        )

    def all_messages(self) -> Iterator[StoredMessage]:
        sql = f"SELECT seq, {_MSG_COLS} FROM offline_messages {{where}} ORDER BY seq"
        return self._pages(sql, lambda r: (r[0],), "seq > %s", lambda r: _msg(r[1:]))

    # -- XCAP documents (docs/xcap.md): committed before the HTTP 2xx
    def xcap_document(self, auid: str, aor: str, name: str) -> XcapDocument | None:
        sql = f"SELECT {_XCAP_COLS} FROM xcap_documents WHERE auid = %s AND aor = %s AND name = %s"
        found = self._read(sql, (auid, aor, name), _xcap)
        return found[0] if found else None

    def put_xcap_document(self, document: XcapDocument) -> None:
        d = document
        sql = (
            f"INSERT INTO xcap_documents ({_XCAP_COLS}) VALUES ({_placeholders(6)})"
            " ON CONFLICT (auid, aor, name) DO UPDATE SET body = EXCLUDED.body,"
            " etag = EXCLUDED.etag, updated_at = EXCLUDED.updated_at"
        )
        row = (d.auid, d.aor, d.name, d.body, d.etag, d.updated_at)
        self._write(lambda conn: conn.execute(sql, row))

    def delete_xcap_document(self, auid: str, aor: str, name: str) -> bool:
        sql = "DELETE FROM xcap_documents WHERE auid = %s AND aor = %s AND name = %s"
        return self._write(lambda conn: conn.execute(sql, (auid, aor, name)).rowcount == 1)

    def xcap_documents(
        self, *, aor: str | None = None, auid: str | None = None
    ) -> tuple[XcapDocument, ...]:
        where, args = [], []
        for column, value in (("aor", aor), ("auid", auid)):
            if value is not None:
                where.append(f"{column} = %s")
                args.append(value)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_XCAP_COLS} FROM xcap_documents{cond} ORDER BY auid, aor, name"
        return self._read(sql, tuple(args), _xcap)

    # -- leases (gateway/cluster/lease.py `claim`, in one statement)
    def claim_lease(self, name: str, owner: str, now: float, ttl: float) -> Lease:
        def work(conn: psycopg.Connection[tuple[Any, ...]]) -> Lease:
            conn.execute(_CLAIM, (name, owner, now + ttl, now))
            row = conn.execute(
                "SELECT owner, expires_at FROM leases WHERE name = %s", (name,)
            ).fetchone()
            assert row is not None  # the upsert left a row
            return Lease(name, row[0], row[1])

        return self._write(work)

    def release_lease(self, name: str, owner: str) -> None:
        self._write(
            lambda conn: conn.execute(
                "DELETE FROM leases WHERE name = %s AND owner = %s", (name, owner)
            )
        )

    # -- housekeeping
    def expire_before(self, now: float) -> Expired:
        def work(conn: psycopg.Connection[tuple[Any, ...]]) -> Expired:
            def gone(table: str, cols: str) -> list[tuple[Any, ...]]:
                sql = f"DELETE FROM {table} WHERE expires_at < %s RETURNING {cols}"
                return conn.execute(sql, (now,)).fetchall()

            b = tuple(_binding(r) for r in gone("bindings", _BINDING_COLS))
            s = tuple(_sub(r) for r in gone("subscriptions", _SUB_COLS))
            p = tuple(_pub(r) for r in gone("publications", _PUB_COLS))
            return Expired(b, s, p)

        return self._write(work)

    def close(self) -> None:
        self._closed = True
        self._drop()

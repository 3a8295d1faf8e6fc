"""SQLite `Store` (stdlib sqlite3): one file in the state directory, WAL, schema versioned.

Opening checks everything a later write would need, so that problems surface at start
(issue 12): the directory is created and must be writable, the file must be a database
(`PRAGMA quick_check`), the schema version must be one this code knows, and a write
transaction must commit. Any failure is a `StoreError` naming the path.

Threading: one connection, used from the thread that opened it (sqlite3 enforces it).
Writes are small (one REGISTER = one transaction of a few rows); with WAL and
`synchronous=NORMAL` a commit appends to the log without fsync, so the glue calls the
store synchronously from the event loop. Bulk writes go through `put_subscriptions`
(one transaction). Figures are in docs/registrar.md ("Store").

Durability: `synchronous=NORMAL` in WAL mode can lose the last transactions on power
loss (not on a process crash); registrations and subscriptions are refreshed by the
peers, so that is accepted.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

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

__all__ = ["DEFAULT_FILENAME", "SCHEMA_VERSION", "SqliteStore", "open_store", "read_status"]

DEFAULT_FILENAME = "gateway.sqlite3"
_CHUNK = 1000
T = TypeVar("T")

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
_XCAP_COLS = "auid, aor, name, body, etag, updated_at"
_MSG_COLS = (
    "message_id, aor, stored_at, expires_at, sender, stanza_id, component, recipient, from_uri,"
    " call_id, content_type, body, subject, lang, call_info, receipt_id"
)

# The record of applied versions (gateway/store/migrations.py), the same on every back end.
# `PRAGMA user_version` stays the version SQLite itself checks at open.
_MIGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL)"""

# Version -> statements bringing the schema from the previous version to this one.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE bindings (
            aor TEXT NOT NULL, pos INTEGER NOT NULL, contact TEXT NOT NULL,
            expires_at REAL NOT NULL, call_id TEXT NOT NULL, cseq INTEGER NOT NULL,
            q REAL, instance TEXT, reg_id INTEGER, flow_transport TEXT, flow_local TEXT,
            flow_remote TEXT, flow_connection TEXT, path TEXT NOT NULL, received TEXT,
            updated_at REAL NOT NULL, PRIMARY KEY (aor, contact)) WITHOUT ROWID""",
        "CREATE INDEX bindings_expiry ON bindings (expires_at)",
        """CREATE TABLE subscriptions (
            call_id TEXT NOT NULL, local_tag TEXT NOT NULL, direction TEXT NOT NULL,
            watcher TEXT NOT NULL, target TEXT NOT NULL, remote_tag TEXT,
            event TEXT NOT NULL, route_set TEXT NOT NULL, remote_target TEXT,
            local_cseq INTEGER NOT NULL, remote_cseq INTEGER, state TEXT NOT NULL,
            expires_at REAL NOT NULL, last_document BLOB, content_type TEXT,
            xmpp_authorization TEXT NOT NULL, PRIMARY KEY (call_id, local_tag))""",
        "CREATE INDEX subscriptions_watcher ON subscriptions (watcher)",
        "CREATE INDEX subscriptions_target ON subscriptions (target)",
        "CREATE INDEX subscriptions_expiry ON subscriptions (expires_at)",
        """CREATE TABLE publications (
            aor TEXT NOT NULL, event TEXT NOT NULL, pos INTEGER NOT NULL,
            etag TEXT NOT NULL, expires_at REAL NOT NULL, body BLOB NOT NULL,
            content_type TEXT NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (aor, event, etag)) WITHOUT ROWID""",
        "CREATE INDEX publications_expiry ON publications (expires_at)",
    ),
    # issue 17: messages for offline hosted users; `seq` (the rowid) is the store order.
    2: (
        """CREATE TABLE offline_messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE,
            aor TEXT NOT NULL, stored_at REAL NOT NULL, expires_at REAL NOT NULL,
            sender TEXT NOT NULL, stanza_id TEXT NOT NULL, component TEXT NOT NULL,
            recipient TEXT NOT NULL, from_uri TEXT NOT NULL, call_id TEXT NOT NULL,
            content_type TEXT NOT NULL,
            body BLOB NOT NULL, subject TEXT, lang TEXT, call_info TEXT, receipt_id TEXT)""",
        "CREATE INDEX offline_messages_aor ON offline_messages (aor, seq)",
    ),
    # issue 24: XCAP documents (RFC 4825), one row per (auid, owner, document name).
    3: (
        """CREATE TABLE xcap_documents (
            auid TEXT NOT NULL, aor TEXT NOT NULL, name TEXT NOT NULL,
            body BLOB NOT NULL, etag TEXT NOT NULL, updated_at REAL NOT NULL,
            PRIMARY KEY (auid, aor, name)) WITHOUT ROWID""",
        "CREATE INDEX xcap_documents_aor ON xcap_documents (aor)",
    ),
    # issue 21: leases of a cluster's timers (gateway/cluster/lease.py), one row per name.
    4: (
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)""",
    ),
}


# The compare-and-set of gateway.cluster.lease.claim: free, mine, or lapsed.
_CLAIM = (
    "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?) ON CONFLICT (name)"
    " DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
    " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?"
)


def _binding_row(b: Binding, pos: int) -> tuple[Any, ...]:
    f = b.flow
    return (
        b.aor,
        pos,
        b.contact,
        b.expires_at,
        b.call_id,
        b.cseq,
        b.q,
        b.instance,
        b.reg_id,
        None if f is None else f.transport,
        None if f is None else f.local,
        None if f is None else f.remote,
        None if f is None else f.connection_id,
        json.dumps(list(b.path)),
        b.received,
        b.updated_at,
    )


def _binding(row: tuple[Any, ...]) -> Binding:
    (aor, _, contact, exp, call_id, cseq, q, inst, reg_id, ft, fl, fr, fc, path, rcv, upd) = row
    flow = None if ft is None else Flow(ft, fl, fr, fc)
    return Binding(
        aor=aor,
        contact=contact,
        expires_at=exp,
        call_id=call_id,
        cseq=cseq,
        q=q,
        instance=inst,
        reg_id=reg_id,
        flow=flow,
        path=tuple(json.loads(path)),
        received=rcv,
        updated_at=upd,
    )


def _sub_row(r: SubscriptionRecord) -> tuple[Any, ...]:
    return (
        r.call_id,
        r.local_tag,
        r.direction,
        r.watcher,
        r.target,
        r.remote_tag,
        r.event,
        json.dumps(list(r.route_set)),
        r.remote_target,
        r.local_cseq,
        r.remote_cseq,
        r.state,
        r.expires_at,
        r.last_document,
        r.content_type,
        r.xmpp_authorization,
    )


def _sub(row: tuple[Any, ...]) -> SubscriptionRecord:
    (call_id, ltag, direction, watcher, target, rtag, event, routes, rtarget) = row[:9]
    (lcseq, rcseq, state, exp, doc, ctype, auth) = row[9:]
    return SubscriptionRecord(
        direction=direction,
        watcher=watcher,
        target=target,
        call_id=call_id,
        local_tag=ltag,
        remote_tag=rtag,
        event=event,
        route_set=() if routes == "[]" else tuple(json.loads(routes)),  # the usual: none
        remote_target=rtarget,
        local_cseq=lcseq,
        remote_cseq=rcseq,
        state=state,
        expires_at=exp,
        last_document=None if doc is None else bytes(doc),
        content_type=ctype,
        xmpp_authorization=auth,
    )


def _pub_row(p: Publication, pos: int) -> tuple[Any, ...]:
    return (p.aor, p.event, pos, p.etag, p.expires_at, p.body, p.content_type, p.updated_at)


def _pub(row: tuple[Any, ...]) -> Publication:
    aor, event, _, etag, exp, body, ctype, upd = row
    return Publication(aor, etag, event, exp, bytes(body), ctype, upd)


def _msg_row(m: StoredMessage) -> tuple[Any, ...]:
    return (
        m.message_id,
        m.aor,
        m.stored_at,
        m.expires_at,
        m.sender,
        m.stanza_id,
        m.component,
        m.recipient,
        m.from_uri,
        m.call_id,
        m.content_type,
        m.body,
        m.subject,
        m.lang,
        m.call_info,
        m.receipt_id,
    )


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


def open_store(state_dir: Path, filename: str = DEFAULT_FILENAME) -> SqliteStore:
    """Open (creating if needed) the store in `state_dir`; StoreError on any problem."""
    return SqliteStore(state_dir / filename)


def read_status(path: Path) -> SchemaStatus:
    """The schema of the file at `path`, read only (nothing created or migrated)."""
    if not path.exists():
        return SchemaStatus("sqlite", str(path), 0)
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open store {str(path)!r}: {exc}") from None
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        rows: list[tuple[Any, ...]] = []
        if "schema_migrations" in tables:
            rows = list(db.execute("SELECT * FROM schema_migrations ORDER BY version"))
    except sqlite3.Error as exc:
        raise StoreError(f"store {str(path)!r} is unusable: {exc}") from None
    finally:
        db.close()
    applied = {int(v): (int(v), str(d), at) for v, d, at in rows}
    for v, desc in DESCRIPTIONS.items():  # a file from before the table
        if v <= version:
            applied.setdefault(v, (v, desc, None))
    return SchemaStatus("sqlite", str(path), version, tuple(applied[v] for v in sorted(applied)))


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        directory = path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create state directory {str(directory)!r}: {exc.strerror or exc}"
            ) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StoreError(f"state directory {str(directory)!r} is not writable")
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {str(path)!r}: {exc}") from None
        try:
            self._prepare()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"store {str(path)!r} is unusable: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    def _prepare(self) -> None:
        db = self._db
        db.execute("PRAGMA busy_timeout = 2000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"store {str(self.path)!r}: cannot use WAL (journal mode {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        rows = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
        if rows != ["ok"]:
            # one row may hold several lines, the first a "*** in database main ***" banner
            lines = [ln for row in rows for ln in row.splitlines() if ln.strip()]
            problems = [ln for ln in lines if not ln.startswith("***")][:5] or lines[:1]
            raise StoreError(f"store {str(self.path)!r} is corrupt: {'; '.join(problems)}")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"store {str(self.path)!r} has schema version {version}; this gateway knows "
                f"up to {SCHEMA_VERSION} (downgrade is not supported)"
            )
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(_MIGRATIONS_TABLE)
            known = {int(r[0]) for r in db.execute("SELECT version FROM schema_migrations")}
            db.executemany(  # versions applied before the table existed (issue 21)
                "INSERT INTO schema_migrations VALUES (?, ?, NULL)",
                [(v, d) for v, d in DESCRIPTIONS.items() if v <= version and v not in known],
            )
            for v in sorted(_MIGRATIONS):
                if v <= version:
                    continue
                for stmt in _MIGRATIONS[v]:
                    db.execute(stmt)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (v, DESCRIPTIONS[v], time.time()),
                )
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            # A real write, so that an unwritable file fails here and not at the first message.
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(SCHEMA_VERSION),),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- plumbing
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: {exc}") from None
        try:
            yield self._db
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StoreError(f"store {str(self.path)!r}: write failed: {exc}") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL).
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("ROLLBACK")

    def _query(
        self, sql: str, args: tuple[Any, ...], conv: Callable[[tuple[Any, ...]], T]
    ) -> tuple[T, ...]:
        try:
            return tuple(conv(row) for row in self._db.execute(sql, args))
        except sqlite3.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: read failed: {exc}") from None

    def _iterate(self, sql: str, conv: Callable[[tuple[Any, ...]], T]) -> Iterator[T]:
        try:
            cur = self._db.execute(sql)
            while rows := cur.fetchmany(_CHUNK):
                yield from (conv(r) for r in rows)
        except sqlite3.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: read failed: {exc}") from None

    # -- bindings
    def bindings(self, aor: str) -> tuple[Binding, ...]:
        sql = f"SELECT {_BINDING_COLS} FROM bindings WHERE aor = ? ORDER BY pos"
        return self._query(sql, (aor,), _binding)

    def set_bindings(self, aor: str, bindings: Iterable[Binding]) -> None:
        items = tuple(bindings)
        if any(b.aor != aor for b in items):
            raise StoreError(f"binding for another AOR in set_bindings({aor!r})")
        with self._tx() as db:
            db.execute("DELETE FROM bindings WHERE aor = ?", (aor,))
            db.executemany(
                f"INSERT INTO bindings ({_BINDING_COLS}) VALUES ({','.join('?' * 16)})",
                [_binding_row(b, i) for i, b in enumerate(items)],
            )

    def all_bindings(self) -> Iterator[Binding]:
        return self._iterate(f"SELECT {_BINDING_COLS} FROM bindings ORDER BY aor, pos", _binding)

    # -- subscriptions
    def put_subscription(self, record: SubscriptionRecord) -> None:
        self.put_subscriptions((record,))

    def put_subscriptions(self, records: Iterable[SubscriptionRecord]) -> None:
        with self._tx() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO subscriptions ({_SUB_COLS}) VALUES ({','.join('?' * 16)})",
                (_sub_row(r) for r in records),
            )

    def get_subscription(self, call_id: str, local_tag: str) -> SubscriptionRecord | None:
        sql = f"SELECT {_SUB_COLS} FROM subscriptions WHERE call_id = ? AND local_tag = ?"
        found = self._query(sql, (call_id, local_tag), _sub)
        return found[0] if found else None

    def delete_subscription(self, call_id: str, local_tag: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM subscriptions WHERE call_id = ? AND local_tag = ?",
                (call_id, local_tag),
            )

    def subscriptions(
        self, *, watcher: str | None = None, target: str | None = None
    ) -> tuple[SubscriptionRecord, ...]:
        where, args = [], []
        if watcher is not None:
            where.append("watcher = ?")
            args.append(watcher)
        if target is not None:
            where.append("target = ?")
            args.append(target)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        return self._query(f"SELECT {_SUB_COLS} FROM subscriptions{cond}", tuple(args), _sub)

    def all_subscriptions(self) -> Iterator[SubscriptionRecord]:
        return self._iterate(f"SELECT {_SUB_COLS} FROM subscriptions", _sub)

    # -- publications
    def publications(self, aor: str, event: str | None = None) -> tuple[Publication, ...]:
        if event is None:
            sql = f"SELECT {_PUB_COLS} FROM publications WHERE aor = ? ORDER BY event, pos"
            return self._query(sql, (aor,), _pub)
        sql = f"SELECT {_PUB_COLS} FROM publications WHERE aor = ? AND event = ? ORDER BY pos"
        return self._query(sql, (aor, event), _pub)

    def set_publications(self, aor: str, event: str, publications: Iterable[Publication]) -> None:
        items = tuple(publications)
        if any(p.aor != aor or p.event != event for p in items):
            raise StoreError(f"publication for another AOR/event in set_publications({aor!r})")
        with self._tx() as db:
            db.execute("DELETE FROM publications WHERE aor = ? AND event = ?", (aor, event))
            db.executemany(
                f"INSERT INTO publications ({_PUB_COLS}) VALUES ({','.join('?' * 8)})",
                [_pub_row(p, i) for i, p in enumerate(items)],
            )

    def all_publications(self) -> Iterator[Publication]:
        return self._iterate(f"SELECT {_PUB_COLS} FROM publications ORDER BY aor, event, pos", _pub)

    # -- stored messages (docs/offline.md): committed before the sender is answered
    def put_message(self, message: StoredMessage) -> bool:
        with self._tx() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO offline_messages ({_MSG_COLS})"
                f" VALUES ({','.join('?' * 16)})",
                _msg_row(message),
            )
            return cur.rowcount == 1

    def messages(self, aor: str) -> tuple[StoredMessage, ...]:
        sql = f"SELECT {_MSG_COLS} FROM offline_messages WHERE aor = ? ORDER BY seq"
        return self._query(sql, (aor,), _msg)

    def delete_message(self, message_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM offline_messages WHERE message_id = ?", (message_id,))

    def all_messages(self) -> Iterator[StoredMessage]:
        return self._iterate(f"SELECT {_MSG_COLS} FROM offline_messages ORDER BY seq", _msg)

    # -- XCAP documents (docs/xcap.md): committed before the HTTP 2xx
    def xcap_document(self, auid: str, aor: str, name: str) -> XcapDocument | None:
        sql = f"SELECT {_XCAP_COLS} FROM xcap_documents WHERE auid = ? AND aor = ? AND name = ?"
        found = self._query(sql, (auid, aor, name), _xcap)
        return found[0] if found else None

    def put_xcap_document(self, document: XcapDocument) -> None:
        d = document
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO xcap_documents ({_XCAP_COLS}) VALUES (?,?,?,?,?,?)",
                (d.auid, d.aor, d.name, d.body, d.etag, d.updated_at),
            )

    def delete_xcap_document(self, auid: str, aor: str, name: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "DELETE FROM xcap_documents WHERE auid = ? AND aor = ? AND name = ?",
                (auid, aor, name),
            )
            return cur.rowcount == 1

    def xcap_documents(
        self, *, aor: str | None = None, auid: str | None = None
    ) -> tuple[XcapDocument, ...]:
        where, args = [], []
        for column, value in (("aor", aor), ("auid", auid)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        cond = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_XCAP_COLS} FROM xcap_documents{cond} ORDER BY auid, aor, name"
        return self._query(sql, tuple(args), _xcap)

    # -- leases (gateway/cluster/lease.py `claim`, in one statement)
    def claim_lease(self, name: str, owner: str, now: float, ttl: float) -> Lease:
        with self._tx() as db:
            db.execute(_CLAIM, (name, owner, now + ttl, now))
            row = db.execute(
                "SELECT owner, expires_at FROM leases WHERE name = ?", (name,)
            ).fetchone()
        return Lease(name, row[0], row[1])

    def release_lease(self, name: str, owner: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (name, owner))

    # -- housekeeping
    def expire_before(self, now: float) -> Expired:
        with self._tx() as db:
            b = tuple(
                _binding(r)
                for r in db.execute(
                    f"SELECT {_BINDING_COLS} FROM bindings WHERE expires_at < ?", (now,)
                )
            )
            s = tuple(
                _sub(r)
                for r in db.execute(
                    f"SELECT {_SUB_COLS} FROM subscriptions WHERE expires_at < ?", (now,)
                )
            )
            p = tuple(
                _pub(r)
                for r in db.execute(
                    f"SELECT {_PUB_COLS} FROM publications WHERE expires_at < ?", (now,)
                )
            )
            for table in ("bindings", "subscriptions", "publications"):
                db.execute(f"DELETE FROM {table} WHERE expires_at < ?", (now,))
        return Expired(b, s, p)

    def close(self) -> None:
        try:
            self._db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"store {str(self.path)!r}: close failed: {exc}") from None

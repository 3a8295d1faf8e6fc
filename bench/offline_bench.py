"""Offline store-and-forward (issue 17): 10,000 messages for 100 users stored through
`OfflineService.offer` (quota check + one committed SQLite row each, WAL, synchronous=
NORMAL), against a bare baseline measured in the same run: the same rows INSERTed one per
transaction into a plain table with the same settings. Then all 100 users "register" at
once and the queues drain through a registrar stub answering 200 at once: the in-process
cost of delivery (no network, no SIP transactions; the wire is measured by pager-x2s).

    python -m bench.offline_bench [-n 10000] [--users 100] [--no-json]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import Row, dump_results, print_table
from gateway.bridge.offline.service import OfflineService
from gateway.config import OfflineSection
from gateway.sip.message import SipRequest, SipResponse, make_response
from gateway.store.api import StoredMessage
from gateway.store.sqlite import open_store

__all__ = ["main", "run", "summarize"]

SCENARIO = "offline"


class _Links:
    def component(self, domain: str) -> Any:
        raise AssertionError("no notices in the benchmark")

    def send(self, domain: str, stanza: Any) -> bool:
        return True


class _Registrar:
    def __init__(self) -> None:
        self.listeners: list[Callable[[str], None]] = []
        self.registered: set[str] = set()
        self.delivered = 0

    def bindings(self, aor: str) -> list[Any]:
        return ["b"] if aor in self.registered else []

    def on_presence_change(self, callback: Callable[[str], None]) -> None:
        self.listeners.append(callback)

    async def send_to_user(
        self, aor: str, build: Callable[[str], SipRequest], *, resource: str | None = None
    ) -> SipResponse:
        self.delivered += 1
        return make_response(build("sip:u@127.0.0.1:5070"), 200)


def _message(i: int, users: int) -> StoredMessage:
    return StoredMessage(
        message_id=f"m{i}",
        aor=f"sip:user{i % users}@sip.localhost",
        stored_at=0.0,
        expires_at=0.0,
        sender="juliet@localhost/r",
        stanza_id=f"s{i}",
        component="sip.localhost",
        recipient=f"user{i % users}@sip.localhost",
        from_uri="sip:juliet@localhost;gr=r",
        call_id=f"c{i}@bench",
        content_type="text/plain;charset=UTF-8",
        body=f"offline message number {i} with a typical short text".encode(),
    )


def _bare(directory: Path, messages: Sequence[StoredMessage]) -> float:
    db = sqlite3.connect(directory / "bare.sqlite3", isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE t (id TEXT PRIMARY KEY, aor TEXT, body BLOB)")
    start = time.perf_counter()
    for m in messages:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t VALUES (?, ?, ?)", (m.message_id, m.aor, m.body))
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


async def _measure(n: int, users: int) -> list[Row]:
    messages = [_message(i, users) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        bare = _bare(directory, messages)
        store = open_store(directory / "state")
        reg = _Registrar()
        cfg = OfflineSection(max_messages=n, max_bytes=n * 1000, notice=False)
        service = OfflineService(cfg, store, reg, _Links())
        await service.start()
        start = time.perf_counter()
        for m in messages:
            service.offer(m)
        stored = time.perf_counter() - start
        start = time.perf_counter()
        for u in range(users):  # everybody registers at once
            aor = f"sip:user{u}@sip.localhost"
            reg.registered.add(aor)
            for cb in reg.listeners:
                cb(aor)
        while reg.delivered < n:
            await asyncio.sleep(0.01)
        drained = time.perf_counter() - start
        await service.stop()
        left = sum(1 for _ in store.all_messages())
        store.close()
    store_rate, bare_rate = n / stored, n / bare
    ratio = store_rate / bare_rate
    return [
        Row(SCENARIO, "bare insert (1 row/tx)", rate=bare_rate),
        Row(SCENARIO, f"store {n} msgs / {users} users", rate=store_rate, ratio=ratio),
        Row(SCENARIO, f"drain: {users} register at once", rate=n / drained, errors=left,
            extra={"seconds": drained}),
    ]  # fmt: skip


def run(n: int = 10_000, users: int = 100) -> list[Row]:
    return asyncio.run(_measure(n, users))


def summarize(rows: list[Row]) -> str:
    store = rows[1]
    drain = rows[2]
    return (
        f"stored {store.rate:,.0f} msg/s ({store.ratio:.2f} of a bare insert); "
        f"all users drained in {drain.extra['seconds']:.2f}s, {drain.errors} left"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.offline_bench", description=__doc__)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--no-json", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.n, args.users)
    print_table(rows)
    print(summarize(rows))
    if not args.no_json:
        dump_results(SCENARIO, rows, {"n": args.n, "users": args.users})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A throw-away PostgreSQL server for the integration tests (Debian's postgresql-15).

`initdb` + `postgres` in a temporary directory, listening on a free 127.0.0.1 port only
(no Unix socket), trust authentication for 127.0.0.1/32 and nothing else, fsync off.
Under root the server runs as the `postgres` user (or `nobody`) through `setpriv`:
PostgreSQL refuses to run as root. `restart()` stops it fast (SIGINT: open connections are
cut) and starts it again on the same port and data, for the store-fault tests.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path

import psycopg

from tests.harness import LOOPBACK, kill_group, log_tail, require_binary
from tests.harness.ports import free_port

_serial = count(1)


def pg_binary(name: str) -> str:
    """`name` from PATH or Debian's /usr/lib/postgresql/<newest>/bin; skip/fail otherwise."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return versions[-1] if versions else require_binary(name, package="postgresql")


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_port()
        # Under /tmp itself: pytest's tmp dirs are 0700 root, closed to the server's user.
        self.root = Path(tempfile.mkdtemp(prefix="cpim-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._prefix: list[str] = []
        self._owner: tuple[int, int] | None = None

    @property
    def admin_dsn(self) -> str:
        return self.dsn("postgres")

    def dsn(self, dbname: str) -> str:
        return f"host={LOOPBACK} port={self.port} user=postgres dbname={dbname}"

    def _as_server_user(self) -> None:
        if os.geteuid() != 0:
            return
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            user = pwd.getpwnam("nobody")
        setpriv = require_binary("setpriv", package="util-linux")
        self._owner = (user.pw_uid, user.pw_gid)
        self._prefix = [
            setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
        ]  # fmt: skip
        os.chown(self.root, *self._owner)

    def start(self) -> PostgresServer:
        initdb = pg_binary("initdb")
        self._as_server_user()
        done = subprocess.run(
            [*self._prefix, initdb, "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
             "--auth=trust", "--no-sync", "--no-instructions", "--locale=C"],
            capture_output=True, check=False, cwd=self.root, timeout=120,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")
        # trust on 127.0.0.1 only: no local-socket or other host lines
        (self.data / "pg_hba.conf").write_text(f"host all all {LOOPBACK}/32 trust\n")
        if self._owner is not None:
            os.chown(self.data / "pg_hba.conf", *self._owner)
        self._spawn()
        return self

    def _spawn(self) -> None:
        postgres = pg_binary("postgres")
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*self._prefix, postgres, "-D", str(self.data), "-p", str(self.port),
             "-c", f"listen_addresses={LOOPBACK}", "-c", "unix_socket_directories=",
             "-c", "fsync=off", "-c", "synchronous_commit=on", "-c", "full_page_writes=off",
             "-c", "max_connections=50", "-c", "shared_buffers=16MB"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.root,
        )  # fmt: skip
        out.close()
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{log_tail(self.log)}")
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres not ready:\n{log_tail(self.log)}") from None
                time.sleep(0.1)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)  # fast shutdown: cut clients, checkpoint
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)

    def restart(self) -> None:
        self.stop()
        self._spawn()

    def create_database(self) -> str:
        """A fresh empty database; its DSN."""
        name = f"t{os.getpid()}_{next(_serial)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

"""A broken state directory or store fails the gateway at start, not at the first message.

Each case runs `python -m gateway run` (the `cpim-gateway` CLI) on a config whose state
directory is unusable: a file where the directory should be, a read-only tmpfs, a store
file that is not a database, a damaged database, a schema from a newer gateway, a
directory where the store file should be. The process must exit non-zero by itself,
with exactly one ERROR line ("cannot start: ...") naming the path, no traceback, and
before any SIP listener came up or "gateway ready" was logged (the store opens before
the XMPP links and the SIP listeners, gateway/app.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import gateway_command, gateway_config
from tests.harness.ports import free_port

EXIT_WAIT = 60.0  # generous: imports alone take seconds on the shared machine


def run_gateway(state_dir: Path, workdir: Path) -> tuple[int, str]:
    """Run the gateway on `state_dir` until it exits by itself; (exit code, its output)."""
    port = free_port()
    config = gateway_config(
        gateway={"state_dir": str(state_dir)},
        xmpp={"port": free_port()},  # nobody listens: the store must fail before the links
        sip={"listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}]},
        admin={"enabled": False},
    )
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "gateway.toml"
    path.write_text(config, encoding="utf-8")
    try:
        done = subprocess.run(
            gateway_command(path, "info"),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=EXIT_WAIT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        pytest.fail(f"the gateway did not exit by itself\n{out.decode(errors='replace')}")
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def assert_clear_start_error(rc: int, output: str, *needles: str) -> str:
    """Non-zero, one ERROR line naming the problem, nothing started. The ERROR line."""
    assert rc != 0, output
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    line = errors[0]
    assert "cannot start:" in line, line
    for needle in needles:
        assert needle in line, line
    assert "Traceback" not in output
    assert "gateway ready" not in output
    assert "sip listener up" not in output
    assert "xmpp link" not in output
    return line


def test_file_where_the_state_directory_should_be(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    rc, out = run_gateway(state, tmp_path / "run")
    assert_clear_start_error(rc, out, str(state), "state directory")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (root ignores permission bits, not a read-only mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = require_binary("mount", package="mount")
    umount = require_binary("umount", package="mount")
    target = tmp_path / "ro"
    target.mkdir()
    subprocess.run([mount, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
                   check=True, timeout=30)  # fmt: skip
    try:
        yield target
    finally:
        subprocess.run([umount, str(target)], check=False, timeout=30)


def test_read_only_state_directory(read_only_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(OSError):  # the premise: even root cannot write there
        (read_only_dir / "probe").write_text("x")
    rc, out = run_gateway(read_only_dir, tmp_path / "run")
    assert_clear_start_error(rc, out, str(read_only_dir), "Read-only file system")


def test_state_directory_below_a_read_only_mount(read_only_dir: Path, tmp_path: Path) -> None:
    """The directory does not exist yet and cannot be created."""
    state = read_only_dir / "gateway" / "state"
    rc, out = run_gateway(state, tmp_path / "run")
    assert_clear_start_error(rc, out, str(state))


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def _damaged(path: Path) -> None:
    """A real store whose pages after the header were overwritten."""
    from gateway.store.sqlite import open_store

    open_store(path.parent).close()
    with sqlite3.connect(path) as db:  # fold the WAL in, so the pages are in the file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    data = bytearray(path.read_bytes())
    assert len(data) > 4096
    data[4096:] = b"\xa5" * (len(data) - 4096)
    path.write_bytes(bytes(data))


def _future_schema(path: Path) -> None:
    from gateway.store.sqlite import SCHEMA_VERSION, open_store

    open_store(path.parent).close()
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")


def _directory(path: Path) -> None:
    path.mkdir()


def _truncated_header(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + b"\x10\x00")


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (_garbage, "not a database"),
        (_truncated_header, "store"),
        (_damaged, "is corrupt: Page "),  # the damage itself, on the one line
        (_future_schema, "schema version"),
        (_directory, "store"),
    ],
    ids=["garbage", "truncated-header", "damaged-pages", "future-schema", "directory"],
)
def test_corrupt_store(damage: Callable[[Path], None], needle: str, tmp_path: Path) -> None:
    from gateway.store.sqlite import DEFAULT_FILENAME

    state = tmp_path / "state"
    state.mkdir()
    store = state / DEFAULT_FILENAME
    damage(store)
    rc, out = run_gateway(state, tmp_path / "run")
    assert_clear_start_error(rc, out, str(store), needle)


def test_healthy_store_starts(tmp_path: Path) -> None:
    """The control: the same config on a fresh directory gets past the store (then waits
    for XMPP, which nobody serves) and stops cleanly on SIGTERM."""
    from tests.harness.gateway_proc import GatewayProcess

    config = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={"port": free_port()},
        sip={"listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}]},
        admin={"enabled": False},
    )
    gw = GatewayProcess(config, tmp_path / "run", log_level="info", ready_timeout=EXIT_WAIT)
    with gw:
        assert gw.terminate() == 0
    assert "cannot start" not in gw.log_text()

"""Integration test harness: real peers (Prosody, ejabberd, sipp) and the gateway process.

Every peer runs in its own session (process group) on free loopback ports with a
temporary config, and is stopped by the object that started it. A missing binary
skips the test locally but fails it when `CI` is set, so CI never skips silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

LOOPBACK = "127.0.0.1"


def in_ci() -> bool:
    """True when the `CI` environment variable is set (to anything but empty/0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, *, package: str | None = None) -> str:
    """The path of `name`; skip (locally) or fail (in CI) when it is not installed."""
    path = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d) / name).exists()), None
    )
    if path is not None:
        return path
    reason = (
        f"{name} not installed (apt-get install {package or name}; see scripts/install-deps.sh)"
    )
    if in_ci():
        pytest.fail(f"CI: {reason}", pytrace=False)
    pytest.skip(reason)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM the process group `proc` leads, SIGKILL it after `timeout`; the exit code.

    `proc` must have been started with `start_new_session=True`, so its pid is
    the group id and nothing outside the group is signalled.
    """
    deadline = time.monotonic() + timeout
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait(5)
    _reap_group(proc.pid, max(deadline - time.monotonic(), 1.0))
    return proc.returncode


def kill_group(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the whole process group `proc` leads, at once; the exit code."""
    _signal_group(proc, signal.SIGKILL)
    proc.wait(5)
    _reap_group(proc.pid)
    return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _reap_group(pgid: int, timeout: float = 2.0) -> None:
    """Wait for the rest of the group (a shell's erl, say) to exit; SIGKILL it after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                return
            return
        time.sleep(0.05)


def log_tail(path: Path, lines: int = 50) -> str:
    """The last `lines` lines of a log file ('' if it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])

"""The gateway as a real process, started through its CLI with a generated config.

`GatewayProcess` writes the TOML config, runs `python -m gateway run --config ...`
in its own session with stdout+stderr in a log file, and returns from `start()`
once a line containing `gateway ready` appears. `gateway_config()` renders a
config for tests from defaults plus per-section overrides.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.harness import LOOPBACK, kill_group, log_tail
from tests.harness.ports import free_port

READY_TEXT = "gateway ready"


class GatewayProcessError(RuntimeError):
    """The gateway exited early, never became ready, or ignored SIGTERM."""


def gateway_command(config_path: Path, log_level: str = "debug") -> list[str]:
    """`python -m gateway run ...`, or the console script if the package has no __main__."""
    if importlib.util.find_spec("gateway.__main__") is not None:
        prog = [sys.executable, "-m", "gateway"]
    else:
        prog = [str(Path(sys.executable).with_name("cpim-gateway"))]
    return [*prog, "run", "--config", str(config_path), "--log-level", log_level]


class GatewayProcess:
    """One gateway process; its log is `log_path` (stdout and stderr together)."""

    def __init__(
        self,
        config_toml: str,
        workdir: Path,
        *,
        log_level: str = "debug",
        ready_text: str = READY_TEXT,
        ready_timeout: float = 30.0,
        argv: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "gateway.toml"
        self.config_path.write_text(config_toml, encoding="utf-8")
        self.log_path = workdir / "gateway.log"
        self.ready_text = ready_text
        self.ready_timeout = ready_timeout
        self.argv = list(argv) if argv is not None else gateway_command(self.config_path, log_level)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise GatewayProcessError("gateway not started")
        return self._proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> GatewayProcess:
        """Start and wait for the ready line; on early exit or timeout, raise with the log tail."""
        if self.running:
            raise GatewayProcessError("gateway already running")
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.ready_timeout
        while self.ready_text not in self.log_text():
            if self._proc.poll() is not None:
                raise GatewayProcessError(
                    f"gateway exited with {self._proc.returncode} before ready\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise GatewayProcessError(
                    f"no {self.ready_text!r} within {self.ready_timeout}s\n{self.tail()}"
                )
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 50) -> str:
        return f"--- last {lines} lines of {self.log_path}\n{log_tail(self.log_path, lines)}"

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the log matches the regex `pattern`; the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log_text())
            if m:
                return m
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{pattern!r} not in gateway log after {timeout}s\n{self.tail()}"
                )
            time.sleep(0.05)

    def send_signal(self, sig: int) -> None:
        """Signal the gateway process itself (not its group)."""
        self.proc.send_signal(sig)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; its exit code. If it does not exit in time: kill it and raise."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise GatewayProcessError(
                    f"gateway ignored SIGTERM for {timeout}s; killed\n{self.tail()}"
                ) from None
        return self.proc.returncode

    def kill(self) -> int:
        """SIGKILL the gateway's process group; its exit code."""
        return kill_group(self.proc)

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.running:
            self.kill()


# ---------------------------------------------------------------------------
# Test configs

_serial = itertools.count(1)


def _unique(prefix: str) -> str:
    """A name no other config of this or a concurrent test run uses (the gateway creates it)."""
    return f"{prefix}-{os.getpid()}-{next(_serial)}"


def default_config() -> dict[str, Any]:
    """A complete config on fresh loopback ports: one mirrored component, one UDP listener."""
    return {
        "gateway": {"state_dir": str(Path(tempfile.gettempdir()) / _unique("gw-state"))},
        "xmpp": {
            "server": LOOPBACK,
            "port": 5347,
            "components": [
                {"domain": "sip.localhost", "secret": "s3cret", "addressing": "mirrored"}
            ],
        },
        "sip": {
            "hosted_domains": ["sip.localhost"],
            "served_xmpp_domains": ["localhost"],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": free_port()}],
        },
        "admin": {"listen": f"{LOOPBACK}:{free_port()}"},
        "dns": {"servers": []},
    }


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key, recursively; any other value (arrays too) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def gateway_config(**overrides: Any) -> str:
    """TOML text: `default_config()` with each section merged with its override.

    gateway_config(xmpp={"port": prosody.component_port}, admin={"enabled": False})
    A value of None removes the key: gateway_config(admin=None).
    """
    return to_toml(_drop_none(merge(default_config(), overrides)))


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: _drop_none(v) if isinstance(v, Mapping) else v for k, v in data.items() if v is not None
    }


def config_of(toml_text: str) -> dict[str, Any]:
    """Parse rendered TOML back (for tests reading what they generated)."""
    import tomllib

    return tomllib.loads(toml_text)


# -- a small TOML writer (tables, arrays of tables, scalars, arrays of scalars) --

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str | Path):
        return json.dumps(str(v))  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(x, Mapping) for x in v)


def to_toml(data: Mapping[str, Any], prefix: str = "") -> str:
    lines: list[str] = []
    nested: list[str] = []
    for k, v in data.items():
        name = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, Mapping):
            nested.append(f"\n[{name}]\n{to_toml(v, name)}")
        elif _is_table_array(v):
            nested.extend(f"\n[[{name}]]\n{to_toml(item, name)}" for item in v)
        else:
            lines.append(f"{_key(k)} = {_scalar(v)}")
    return "\n".join(lines) + ("\n" if lines else "") + "".join(nested)

"""Kamailio's dispatcher (deploy/kamailio/dispatcher.cfg, unchanged) in front of gateway
instances on loopback (issue 21). It listens on 127.0.0.2, its own loopback address, so
that the instances' trusted peer is the proxy and not the test clients on 127.0.0.1;
`dispatcher.list` (set 1) is written with the instances' ports."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from tests.harness import LOOPBACK, require_binary, stop_group
from tests.harness.ports import free_port, udp_port_bound

ROOT = Path(__file__).resolve().parents[2]
DISPATCHER_CFG = ROOT / "deploy" / "kamailio" / "dispatcher.cfg"
ADDRESS = "127.0.0.2"


def modules_dir() -> Path:
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    return found[0] if found else Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


def dispatcher_list(ports: Sequence[int]) -> str:
    return "".join(f"1 sip:{LOOPBACK}:{p} 0 0\n" for p in ports)


class Dispatcher:
    def __init__(
        self, workdir: Path, instance_ports: Sequence[int], *, fr_timer_ms: int = 8000
    ) -> None:
        self.binary = require_binary("kamailio")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = ADDRESS
        self.list_path = workdir / "dispatcher.list"
        self.list_path.write_text(dispatcher_list(instance_ports), encoding="utf-8")
        self.log_path = workdir / "kamailio.log"
        self.fr_timer_ms = fr_timer_ms
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Dispatcher:
        w = self.workdir
        args = [
            self.binary,
            *("-DD", "-E", "-f", str(DISPATCHER_CFG)),
            *("-P", str(w / "kamailio.pid"), "-Y", str(w), "-w", str(w)),
            *("-L", str(modules_dir()), "-m", "32", "-M", "8"),
            *("-A", f"LISTEN_ADDR={self.address}", "-A", f"LISTEN_PORT={self.port}"),
            *("-A", f'DISPATCHER_LIST="{self.list_path}"', "-A", f"FR_TIMER={self.fr_timer_ms}"),
        ]
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=w,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not udp_port_bound(self.port, self.address):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"kamailio did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def routed_to(self) -> dict[str, int]:
        """How many requests went to each instance ("127.0.0.1:port" -> count)."""
        out: dict[str, int] = {}
        for m in re.finditer(r"to instance sip:([\d.]+:\d+):", self.log_text()):
            out[m.group(1)] = out.get(m.group(1), 0) + 1
        return out

    def stop(self) -> None:
        if self._proc is not None:
            stop_group(self._proc)
            self._proc = None

    def __enter__(self) -> Dispatcher:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

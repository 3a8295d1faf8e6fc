"""Kamailio as the third system of the pager benchmark (issue 27).

Kamailio 5.6 (Debian) with its xmpp module in component mode, rebuilt from Debian's source
package with the one-line fix of kamailio issue #4154 (`scripts/build-kamailio-xmpp.sh`:
the Debian build crashes on Prosody's stream header). `bench.pager_bench` runs it after
the gateway and the bare relay, with the same Prosody, the same sipp and XMPP generators
and the same ramp, and reports gateway/Kamailio and gateway/bare ratios for the delivered
rate and the CPU seconds per 1,000 messages.

Kamailio answers a MESSAGE 200 as soon as its xmpp module took it (bench/kamailio/
pager.cfg), the gateway only once Prosody confirmed it: Kamailio's figures are for a
weaker promise. Its CPU is the sum over all its processes (SIP workers, timers, the xmpp
process), sampled from /proc like the others.

When the module cannot be built (no kamailio, no deb-src access), the Kamailio rows are
skipped with a message saying why; under CI (`CI=true`) that is an error instead.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.harness import LOOPBACK, stop_group
from tests.harness.ports import free_port, udp_port_bound

__all__ = ["KamailioUnavailable", "build_module", "descendants", "render_config"]

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "scripts" / "build-kamailio-xmpp.sh"
TEMPLATE = Path(__file__).resolve().parent / "kamailio" / "pager.cfg"
# SIP worker processes: one, like the gateway's one event loop (plus Kamailio's own
# timer, xmpp and main processes, all counted).
CHILDREN = 1


class KamailioUnavailable(RuntimeError):
    """The patched xmpp module could not be built or Kamailio is not installed."""


def build_module() -> Path:
    """The patched xmpp.so (built once, then cached by the script)."""
    try:
        done = subprocess.run(
            ["bash", str(BUILD)], capture_output=True, text=True, timeout=1800, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KamailioUnavailable(f"{BUILD.name}: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise KamailioUnavailable(f"{BUILD.name} failed: {' / '.join(tail)}")
    path = Path(done.stdout.strip().splitlines()[-1])
    if not path.is_file():
        raise KamailioUnavailable(f"{BUILD.name} printed no module path")
    return path


def render_config(
    *, module: Path, sip_port: int, component_port: int, domain: str, secret: str, uas_port: int
) -> str:
    values = {
        "CHILDREN": str(CHILDREN),
        "SIP_PORT": str(sip_port),
        "XMPP_SO": str(module),
        "DOMAIN": domain,
        "COMPONENT_PORT": str(component_port),
        "SECRET": secret,
        "UAS_PORT": str(uas_port),
    }
    text = TEMPLATE.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc/*/stat), for Kamailio's CPU."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


class KamailioProcess:
    """One Kamailio in the foreground (-DD -E), its own working and runtime directory."""

    def __init__(
        self,
        workdir: Path,
        *,
        module: Path,
        component_port: int,
        domain: str,
        secret: str,
        uas_port: int,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port()
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(
            render_config(
                module=module,
                sip_port=self.sip_port,
                component_port=component_port,
                domain=domain,
                secret=secret,
                uas_port=uas_port,
            ),
            encoding="utf-8",
        )
        self.log_path = workdir / "kamailio.log"
        argv = ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(workdir), "-w", str(workdir)]
        argv += ["-P", str(workdir / "kamailio.pid"), "-m", "256", "-M", "16"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env={**os.environ},
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise KamailioUnavailable(
                    f"kamailio exited with {self.proc.returncode}: {self.tail()}"
                )
            if udp_port_bound(self.sip_port, LOOPBACK) and "Listening on" in self.log_text():
                time.sleep(1.5)  # the xmpp process's component handshake
                return
            time.sleep(0.1)
        raise KamailioUnavailable(f"kamailio not ready in {timeout}s: {self.tail()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self) -> str:
        return " / ".join(self.log_text().strip().splitlines()[-5:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            stop_group(self.proc, 10)

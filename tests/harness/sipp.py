"""Run sipp scenarios (tests/sipp/*.xml or built-ins) from a scratch directory, always bounded.

Every run is bounded twice: sipp's own `-timeout` (with `-timeout_error`, so reaching
it is a failure) and a wall-clock limit after which the process group is SIGKILLed
and the result says `timed_out`. sipp is bound to 127.0.0.1 (`-i`), its media and
control ports are free ports, and its error, message and statistics traces are kept
in the scratch directory and returned in the result. Debian's sipp 3.6 has no TLS.

sipp exit codes: 0 all calls succeeded, 1 at least one failed, 97 stopped by an
internal command, 99 ended without processing calls, 255 (-1) fatal error,
254 (-2) fatal error binding a socket.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import LOOPBACK, kill_group, stop_group
from tests.harness.ports import free_port, free_port_block, tcp_accepting, udp_port_bound

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "sipp"
BUILTIN_SCENARIOS = frozenset(
    {
        "uac",
        "uas",
        "regexp",
        "branchc",
        "branchs",
        "uac_pcap",
        "3pcc-C-A",
        "3pcc-C-B",
        "3pcc-A",
        "3pcc-B",
    }
)
TRANSPORTS = frozenset({"u1", "un", "ui", "t1", "tn"})  # udp / tcp, one or many sockets
KILL_GRACE = 5.0  # seconds past sipp's own -timeout before the group is killed


class SippError(RuntimeError):
    """sipp could not be started, or did not come up."""


@dataclass(frozen=True)
class SippResult:
    """What one sipp run left behind."""

    returncode: int
    stdout: str
    stderr: str
    stats: Mapping[str, str]  # last row of the -trace_stat CSV, by column name
    errors: str  # -trace_err log: unexpected messages, retransmission failures
    messages: str  # -trace_msg log: every message sent and received
    timed_out: bool  # the wall-clock limit was hit and sipp was killed
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def successful_calls(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0") or 0)

    @property
    def failed_calls(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0") or 0)

    def describe(self) -> str:
        """A summary for assertion messages."""
        state = "killed after timeout" if self.timed_out else f"exit {self.returncode}"
        return (
            f"sipp {state}, {self.successful_calls} ok / {self.failed_calls} failed calls "
            f"(scratch dir {self.workdir})\n--- errors\n{self.errors[-3000:]}\n"
            f"--- stderr\n{self.stderr[-2000:]}\n--- stdout\n{self.stdout[-2000:]}"
        )


def scenario_args(scenario: str | Path) -> list[str]:
    """`-sn name` for a built-in, else `-sf path` (relative names are looked up in tests/sipp)."""
    if isinstance(scenario, str) and scenario in BUILTIN_SCENARIOS:
        return ["-sn", scenario]
    path = Path(scenario)
    if not path.is_absolute() and not path.exists():
        path = SCENARIO_DIR / path
        if path.suffix != ".xml" and not path.exists():
            path = path.with_suffix(".xml")
    if not path.is_file():
        raise SippError(f"no sipp scenario {scenario!r} (looked in {SCENARIO_DIR})")
    return ["-sf", str(path.resolve())]


def _name(scenario: str | Path) -> str:
    return Path(scenario).stem or "sipp"


class SippProcess:
    """One sipp process started in the background; `wait()` or `stop()` gives its result."""

    def __init__(
        self,
        scenario: str | Path,
        *,
        remote: str | None = None,
        local_port: int | None = None,
        transport: str = "u1",
        calls: int = 1,
        rate: float | None = None,
        keys: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        timeout: float = 30.0,
        workdir: Path | None = None,
        binary: str = "sipp",
        trace_messages: bool = True,
    ) -> None:
        if transport not in TRANSPORTS:
            raise SippError(f"transport must be one of {sorted(TRANSPORTS)}, not {transport!r}")
        self.scenario = scenario
        self.transport = transport
        self.timeout = timeout
        self.local_port = local_port or free_port()
        base = workdir if workdir is not None else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{_name(scenario)}-", dir=base))
        args = [shutil.which(binary) or binary, *scenario_args(scenario)]
        if remote is not None:
            args.append(remote)
        args += ["-i", LOOPBACK, "-p", str(self.local_port), "-t", transport]
        args += ["-m", str(calls), "-nostdin"]
        args += ["-timeout", f"{max(int(timeout * 1000), 1)}ms", "-timeout_error"]
        args += ["-mp", str(free_port_block((0, 2))), "-cp", str(free_port())]
        args += ["-trace_err", "-error_file", "errors.log"]
        if trace_messages:  # off for load runs: every message would be written
            args += ["-trace_msg", "-message_file", "messages.log"]
        args += ["-trace_stat", "-stf", "stats.csv"]
        if rate is not None:
            args += ["-r", f"{rate:g}"]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        args += list(extra_args)
        self.args = args
        (self.workdir / "command.txt").write_text(" ".join(args) + "\n", encoding="utf-8")
        with (
            (self.workdir / "stdout.txt").open("wb") as out,
            (self.workdir / "stderr.txt").open("wb") as err,
        ):
            try:
                self.proc: subprocess.Popen[bytes] = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    cwd=self.workdir,
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise SippError(f"cannot run {args[0]}: {exc}") from exc
        self._result: SippResult | None = None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Wait until sipp holds its local port (a UAS is then ready for requests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise SippError(f"sipp exited early\n{self._collect(False).describe()}")
            if self.transport.startswith("u"):
                if udp_port_bound(self.local_port):
                    return
            elif tcp_accepting(self.local_port):
                return
            time.sleep(0.02)
        raise SippError(f"sipp not listening on {self.local_port} after {timeout}s")

    def wait(self, kill_after: float | None = None) -> SippResult:
        """Wait for sipp to end; SIGKILL its group after `kill_after` (default timeout + 5 s)."""
        if self._result is not None:
            return self._result
        limit = self.timeout + KILL_GRACE if kill_after is None else kill_after
        timed_out = False
        try:
            self.proc.wait(limit)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            timed_out = True
        return self._collect(timed_out)

    def stop(self, timeout: float = 5.0) -> SippResult:
        """End sipp now (SIGTERM, then SIGKILL after `timeout`); its result."""
        if self._result is not None:
            return self._result
        stop_group(self.proc, timeout)
        return self._collect(False)

    def _collect(self, timed_out: bool) -> SippResult:
        rc = self.proc.poll()
        result = SippResult(
            returncode=-1 if rc is None else rc,
            stdout=_read(self.workdir / "stdout.txt"),
            stderr=_read(self.workdir / "stderr.txt"),
            stats=_stats(self.workdir / "stats.csv"),
            errors=_read(self.workdir / "errors.log"),
            messages=_read(self.workdir / "messages.log"),
            timed_out=timed_out,
            workdir=self.workdir,
        )
        if rc is not None:
            self._result = result
        return result


def run_sipp(
    scenario: str | Path,
    *,
    remote: str | None = None,
    local_port: int | None = None,
    transport: str = "u1",
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    calls: int = 1,
    rate: float | None = None,
    keys: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    kill_after: float | None = None,
) -> SippResult:
    """Run one sipp scenario to completion (or to its bounds) and return what it did.

    `remote` is "host:port" for a client scenario; `timeout` is sipp's global timeout,
    `kill_after` the wall-clock limit (default timeout + 5 s) after which it is killed.
    """
    proc = SippProcess(
        scenario,
        remote=remote,
        local_port=local_port,
        transport=transport,
        calls=calls,
        rate=rate,
        keys=keys,
        extra_args=extra_args,
        timeout=timeout,
        workdir=workdir,
    )
    return proc.wait(kill_after)


@contextmanager
def start_sipp_uas(
    scenario: str | Path = "uas",
    *,
    local_port: int | None = None,
    transport: str = "u1",
    calls: int = 1,
    keys: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    workdir: Path | None = None,
) -> Iterator[SippProcess]:
    """A sipp server scenario in the background, listening on `local_port` when entered.

    On exit it is stopped if still running; call `.wait()` inside the block to get
    the result of a UAS that ends by itself after `calls` calls.
    """
    proc = SippProcess(
        scenario,
        local_port=local_port,
        transport=transport,
        calls=calls,
        keys=keys,
        extra_args=extra_args,
        timeout=timeout,
        workdir=workdir,
    )
    try:
        proc.wait_listening()
        yield proc
    finally:
        if proc.running:
            proc.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _stats(path: Path) -> dict[str, str]:
    """The last row of sipp's ';'-separated statistics file, keyed by its header."""
    lines = [ln for ln in _read(path).splitlines() if ln.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    row = lines[-1].rstrip(";").split(";")
    return dict(zip(header, row, strict=False))


@dataclass(frozen=True)
class Sipp:
    """`run_sipp` / `start_sipp_uas` with a fixed scratch root (the `sipp` fixture)."""

    workdir: Path

    def run(self, scenario: str | Path, **kwargs: Any) -> SippResult:
        return run_sipp(scenario, workdir=self.workdir, **kwargs)

    def uas(
        self, scenario: str | Path = "uas", **kwargs: Any
    ) -> AbstractContextManager[SippProcess]:
        return start_sipp_uas(scenario, workdir=self.workdir, **kwargs)

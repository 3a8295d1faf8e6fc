"""A real DNS server for tests: dnsmasq (dnsmasq-base) authoritative on 127.0.0.1:<free port>.

dnsmasq runs in the foreground in its own session with no configuration file, no
/etc/hosts, no upstream servers (`--no-resolv`), bound to loopback only, and answers as an
authoritative server (`--auth-server`/`--auth-zone`) for the zones given. Authoritative
mode is what makes it put a SOA in NXDOMAIN/NODATA answers, so negative caching (RFC 2308)
can be tested; every record, positive or negative, then has the TTL `ttl` (`--auth-ttl`,
also the SOA MINIMUM). Names outside the zones are REFUSED.

Every query is logged (`--log-queries`) to a file; `queries()` reads it back. The log is
written asynchronously, so `sync()` first sends a sentinel query and waits for it to show
up: everything asked before it is then in the log.

    with DnsServer(tmp_path, zones=["test"], records=[Srv(...), Host(...)]) as dns:
        cfg = DnsConfig(servers=(dns.address,), timeout=1.0, attempts=2)
"""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.message
import dns.query
import dns.rcode

from tests.harness import LOOPBACK, log_tail, require_binary, stop_group
from tests.harness.ports import free_port

__all__ = ["Cname", "DnsServer", "Host", "Naptr", "Record", "Srv", "Txt"]


@dataclass(frozen=True)
class Srv:
    """`name` SRV priority weight port target; no target: "." (service not available)."""

    name: str
    target: str | None
    port: int = 5060
    priority: int = 0
    weight: int = 0

    def option(self) -> str:
        if self.target is None:
            return f"--srv-host={self.name}"
        return f"--srv-host={self.name},{self.target},{self.port},{self.priority},{self.weight}"


@dataclass(frozen=True)
class Naptr:
    name: str
    order: int
    preference: int
    flags: str
    service: str
    replacement: str
    regexp: str = ""

    def option(self) -> str:
        return (
            f"--naptr-record={self.name},{self.order},{self.preference},{self.flags},"
            f"{self.service},{self.regexp},{self.replacement}"
        )


@dataclass(frozen=True)
class Host:
    """A and/or AAAA records for `name`."""

    name: str
    ipv4: str | None = None
    ipv6: str | None = None

    def option(self) -> str:
        return f"--host-record={self.name},{self.ipv4 or ''},{self.ipv6 or ''}".rstrip(",")


@dataclass(frozen=True)
class Cname:
    name: str
    target: str

    def option(self) -> str:
        return f"--cname={self.name},{self.target}"


@dataclass(frozen=True)
class Txt:
    name: str
    text: str

    def option(self) -> str:
        return f"--txt-record={self.name},{self.text}"


Record = Srv | Naptr | Host | Cname | Txt
# "Nov 21 04:20:44 dnsmasq[24968]: auth[SRV] _sip._udp.example.test from 127.0.0.1"
_QUERY_LINE = re.compile(r"(?:auth|query)\[(\w+)\] (\S+) from ")
_sentinels = itertools.count(1)


class DnsServer:
    """One dnsmasq process; `start()`/`stop()` or a `with` block."""

    def __init__(
        self,
        workdir: Path,
        *,
        zones: Sequence[str],
        records: Sequence[Record] = (),
        ttl: int = 300,
        port: int | None = None,
    ) -> None:
        if not zones:
            raise ValueError("at least one zone")
        self.binary = require_binary("dnsmasq", package="dnsmasq-base")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zones = tuple(z.lower().rstrip(".") for z in zones)
        self.records = tuple(records)
        self.ttl = ttl
        self.port = port or free_port()
        self.log_path = workdir / "dnsmasq.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def args(self) -> list[str]:
        zone = self.zones[0]
        args = [
            self.binary,
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=",
            f"--port={self.port}",
            f"--listen-address={LOOPBACK}",
            "--bind-interfaces",
            f"--auth-server=ns.{zone},{LOOPBACK}",
            f"--auth-ttl={self.ttl}",
            f"--auth-soa=1,hostmaster.{zone},1200,180,1209600",
            "--log-queries",
            f"--log-facility={self.log_path}",
        ]
        args += [f"--auth-zone={z}" for z in self.zones]
        args += [r.option() for r in self.records]
        return args

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        with (self.workdir / "dnsmasq.out").open("wb") as out:
            proc = self.proc = subprocess.Popen(
                self.args(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"dnsmasq exited at start:\n{self._diagnostics()}")
            if self._answers(f"ns.{self.zones[0]}", 0.3):
                return
        self.stop()
        raise RuntimeError(f"dnsmasq did not answer within {timeout}s:\n{self._diagnostics()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
            self.proc = None

    def __enter__(self) -> DnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _answers(self, name: str, timeout: float) -> bool:
        query = dns.message.make_query(name, "SOA")
        try:
            response = dns.query.udp(query, LOOPBACK, port=self.port, timeout=timeout)
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
            return False
        return response.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN)

    def _diagnostics(self) -> str:
        out = (self.workdir / "dnsmasq.out").read_text(errors="replace")
        return f"{' '.join(self.args())}\n{out}\n{log_tail(self.log_path)}"

    # -- the query log ---------------------------------------------------------------

    def sync(self, timeout: float = 10.0) -> None:
        """Wait until every query received so far is in the log (sentinel query)."""
        name = f"sync-{next(_sentinels)}.{self.zones[0]}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._answers(name, 1.0)
            if any(n == name for _, n in self._log()):
                return
            time.sleep(0.05)
        raise RuntimeError(f"dnsmasq log never showed {name}:\n{log_tail(self.log_path)}")

    def queries(self, name: str | None = None, rdtype: str | None = None) -> list[tuple[str, str]]:
        """(rdtype, name) of every query logged so far (after `sync()`), sentinels excluded."""
        self.sync()
        return [
            (t, n)
            for t, n in self._log()
            if not n.startswith(("sync-", "ns."))
            and (name is None or n == name.lower().rstrip("."))
            and (rdtype is None or t == rdtype)
        ]

    def _log(self) -> list[tuple[str, str]]:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return [(m.group(1), m.group(2).lower()) for m in _QUERY_LINE.finditer(text)]

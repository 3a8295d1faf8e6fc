"""Soak (issue 12): the gateway process under a steady bidirectional load for a long time.

Prosody (warn-level log), the gateway process (generated config, admin API on, log level
info) and, in this process:

- SIP -> XMPP: `LeanUac`, a UDP client with its own RFC 3261 §17.1.2 transactions (Timer
  E retransmissions, Timer F timeout), sends MESSAGEs at `--rate` to juliet@localhost;
  juliet is a raw c2s client (`RawXmpp`) that records every body's sequence number;
- XMPP -> SIP: the XMPP user nurse sends `--rate` messages per second to romeo<k>@sip.localhost,
  statically routed to `LeanUas`, which answers 200 and records each sequence number;
- presence: a SIP watcher (a `SipEndpoint`) subscribes to juliet with Expires `--expires`
  and refreshes in-dialog at half of it; juliet authorizes and changes her status every
  20 s, so NOTIFYs flow during the whole run.

Every `--sample` seconds: the gateway's RSS (/proc/PID/status VmRSS, and split by kind of
mapping from /proc/PID/smaps), open descriptors
(/proc/PID/fd), asyncio tasks and SIP transactions in flight (admin /metrics:
`cpim_asyncio_tasks`, `cpim_sip_transactions_in_flight`), glibc's heap split into in use
and free plus live Python blocks (`cpim_heap_bytes`, `cpim_python_allocated_blocks`) and
the counts on both sides.
At the end: the least-squares slope (per hour) of RSS, descriptors, tasks, heap in use and
Python blocks over the
samples after `--warmup`, a verdict ("no growth": the growth the slope predicts over the
window is within the noise of the samples around the line, or below one unit), and the
delivery checks (no 2xx without delivery, no duplicates, nothing lost without an error).
Samples go to bench/results/soak-<UTC>.csv, the summary to soak-<UTC>.json.

    .venv/bin/python scripts/soak.py [--minutes 32] [--rate 100] [--expires 60]

`--tracemalloc DIR` runs the gateway under tracemalloc (slow: use a lower `--rate`), dumps
a snapshot at every sample after the warm-up and prints what grew between the first and
the last, by traceback.

Exit status 0 when every check passes. The lean peers (`LeanUac`, `LeanUas`, `RawXmpp`)
are reused by tests/integration/test_faults.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadgen_xmpp import login  # noqa: E402
from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport  # noqa: E402
from gateway.sip.locate import Target  # noqa: E402
from gateway.sip.message import Headers, SipRequest, SipResponse  # noqa: E402
from gateway.sip.transport.endpoint import IncomingRequest, SipEndpoint  # noqa: E402
from gateway.sip.uri import parse_uri  # noqa: E402
from tests.harness import LOOPBACK  # noqa: E402
from tests.harness.gateway_proc import GatewayProcess, gateway_config  # noqa: E402
from tests.harness.ports import free_port  # noqa: E402
from tests.harness.prosody import ProsodyServer  # noqa: E402

__all__ = [
    "LeanUac",
    "LeanUas",
    "RawXmpp",
    "SoakWatcher",
    "Trend",
    "proc_fds",
    "proc_rss",
    "proc_rss_by_kind",
    "scrape",
    "trend",
]

COMPONENT = "sip.localhost"
SECRET = "soak-secret"
SEQ = re.compile(rb"seq=(\d+)")
_counter = itertools.count(1)
HEAP_KINDS = ("arena", "in_use", "free", "mmapped")
SAMPLED_METRICS = (
    "cpim_asyncio_tasks",
    "cpim_sip_transactions_in_flight",
    "cpim_python_allocated_blocks",
    *(f'cpim_heap_bytes{{kind="{k}"}}' for k in HEAP_KINDS),
)
# Growth in live pymalloc blocks below this is no growth (about 1 MiB of small objects).
PY_BLOCKS_FLOOR = 10_000.0


# ------------------------------------------------------------------ /proc and /metrics


def proc_rss(pid: int) -> int:
    """VmRSS of `pid` in bytes (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def proc_fds(pid: int) -> int:
    """Open file descriptors of `pid` (0 when it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def proc_rss_by_kind(pid: int) -> dict[str, float]:
    """Resident MiB of `pid` by mapping (/proc/PID/smaps): `brk` = glibc's main heap,
    `anon` = anonymous maps (pymalloc's arenas, glibc's mmapped chunks and other arenas),
    `file` = libraries and other files, `other` = stack, vdso. Empty when it is gone."""
    kinds = {"brk": 0, "anon": 0, "file": 0, "other": 0}
    kind = "other"
    try:
        with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
            for line in f:
                head = line.split(maxsplit=5)
                if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
                    path = head[5].strip() if len(head) > 5 else ""
                    kind = (
                        "brk"
                        if path == "[heap]"
                        else "anon"
                        if not path
                        else "other"
                        if path.startswith("[")
                        else "file"
                    )
                elif head and head[0] == "Rss:":
                    kinds[kind] += int(head[1]) * 1024
    except OSError:
        return {}
    return {f"rss_{k}_mib": round(v / 2**20, 2) for k, v in kinds.items()}


async def scrape(admin: str, names: Iterable[str]) -> dict[str, float]:
    """The admin API's /metrics, unlabelled samples (and label sums) of the `names`."""
    import aiohttp

    wanted = set(names)
    out: dict[str, float] = {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(f"http://{admin}/metrics") as resp,
    ):
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        base = name.split("{", 1)[0]
        if base in wanted:
            out[base] = out.get(base, 0.0) + float(value)
        if name != base and name in wanted:  # one labelled sample, asked for by full name
            out[name] = float(value)
    return out


def heap_columns(metrics: dict[str, float]) -> dict[str, float]:
    """The sample's glibc heap split (MiB) and live Python blocks; -1 where not scraped."""
    cols: dict[str, float] = {}
    for k in HEAP_KINDS:
        v = metrics.get(f'cpim_heap_bytes{{kind="{k}"}}')
        cols[f"heap_{k}_mib"] = round(v / 2**20, 2) if v is not None else -1
    cols["py_blocks"] = metrics.get("cpim_python_allocated_blocks", -1)
    return cols


# ------------------------------------------------------------------ lean SIP peers


def _header(data: bytes, name: bytes) -> bytes:
    m = re.search(rb"(?im)^" + name + rb"[ \t]*:[ \t]*(.*?)\r?$", data)
    return m.group(1) if m else b""


@dataclass
class _Txn:
    seq: int
    data: bytes
    started: float
    interval: float
    timer: asyncio.TimerHandle | None = None
    deadline: asyncio.TimerHandle | None = None
    provisional: bool = False


class LeanUac(asyncio.DatagramProtocol):
    """A UAC sending MESSAGEs over UDP with its own non-INVITE client transactions
    (RFC 3261 §17.1.2.2): Timer E from T1 doubling to T2 (T2 once a 1xx came), Timer F =
    64*T1 -> outcome 408. `outcomes` maps each sequence number to its final status.
    With `rport` (RFC 3581) responses come back to the source address the server saw."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        from_uri: str = f"sip:romeo@{COMPONENT}",
        t1: float = 0.5,
        t2: float = 4.0,
        via_host: str = LOOPBACK,
        rport: bool = False,
    ) -> None:
        self.target = target
        self.rport = ";rport" if rport else ""
        self.from_uri = from_uri
        self.t1, self.t2 = t1, t2
        self.via_host = via_host
        self.outcomes: dict[int, int] = {}
        self.reasons: dict[int, str] = {}  # seq -> the final response's reason phrase
        self.pending: dict[bytes, _Txn] = {}
        self.retransmissions = 0
        self.sent = 0
        self.responses = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.done = asyncio.Event()

    async def start(self, bind: tuple[str, int] = (LOOPBACK, 0)) -> LeanUac:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=bind)
        assert self.transport is not None
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        for t in self.pending.values():
            for h in (t.timer, t.deadline):
                if h is not None:
                    h.cancel()
        self.pending.clear()
        if self.transport is not None:
            self.transport.close()

    def send(self, seq: int, to_uri: str, body: str | None = None) -> None:
        """Start the transaction of MESSAGE number `seq` (body: `... seq=<seq>`)."""
        call_id = f"uac{seq}-{os.getpid()}-{next(_counter)}@{self.via_host}".encode()
        text = (body if body is not None else f"soak seq={seq}").encode()
        data = (
            f"MESSAGE {to_uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.via_host}:{self.port};branch=z9hG4bK{call_id.hex()[:24]}"
            f"{next(_counter)}{self.rport}\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <{self.from_uri}>;tag=f{seq}\r\n"
            f"To: <{to_uri}>\r\n"
            f"Call-ID: {call_id.decode()}\r\n"
            f"CSeq: 1 MESSAGE\r\n"
            f"Content-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {len(text)}\r\n\r\n"
        ).encode() + text
        loop = asyncio.get_running_loop()
        txn = _Txn(seq, data, loop.time(), self.t1)
        self.pending[call_id] = txn
        self.done.clear()
        self._write(data)
        self.sent += 1
        txn.timer = loop.call_later(self.t1, self._timer_e, call_id)
        txn.deadline = loop.call_later(64 * self.t1, self._timer_f, call_id)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(data, self.target)

    def _timer_e(self, call_id: bytes) -> None:
        txn = self.pending.get(call_id)
        if txn is None:
            return
        self._write(txn.data)
        self.retransmissions += 1
        txn.interval = self.t2 if txn.provisional else min(2 * txn.interval, self.t2)
        txn.timer = asyncio.get_running_loop().call_later(txn.interval, self._timer_e, call_id)

    def _timer_f(self, call_id: bytes) -> None:
        self._final(call_id, 408)

    def _final(self, call_id: bytes, status: int) -> None:
        txn = self.pending.pop(call_id, None)
        if txn is None:
            return  # a retransmitted final response (Completed state absorbs it)
        for h in (txn.timer, txn.deadline):
            if h is not None:
                h.cancel()
        self.outcomes[txn.seq] = status
        if not self.pending:
            self.done.set()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        m = re.match(rb"SIP/2\.0 (\d{3}) ?([^\r\n]*)", data)
        if m is None:
            return
        self.responses += 1
        status = int(m.group(1))
        call_id = _header(data, rb"(?:Call-ID|i)")
        if status < 200:
            txn = self.pending.get(call_id)
            if txn is not None:
                txn.provisional = True
            return
        txn = self.pending.get(call_id)
        if txn is not None:
            self.reasons[txn.seq] = m.group(2).decode("utf-8", "replace")
        self._final(call_id, status)

    async def drain(self, timeout: float) -> None:
        """Wait until every transaction has its outcome (or `timeout`)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.pending:
                    await self.done.wait()


class LeanUas(asyncio.DatagramProtocol):
    """A UDP UAS: MESSAGE -> 200 (or nothing when `silent`), every arrival recorded.

    `deliveries[seq]` holds the branches that carried sequence `seq`: one branch per
    transaction, so two branches are a duplicate while a retransmission is not."""

    def __init__(self, *, silent: bool = False) -> None:
        self.silent = silent
        self.deliveries: dict[int, set[bytes]] = {}
        self.requests: dict[str, int] = {}
        self.datagrams = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    async def start(self, bind: tuple[str, int] = (LOOPBACK, 0)) -> LeanUas:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=bind)
        assert self.transport is not None
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.datagrams += 1
        if data.startswith(b"SIP/2.0"):
            return
        head, _, body = data.partition(b"\r\n\r\n")
        method = head.split(b" ", 1)[0].decode(errors="replace")
        self.requests[method] = self.requests.get(method, 0) + 1
        if self.silent or method == "ACK":
            return
        vias = re.findall(rb"(?im)^(?:Via|v)[ \t]*:.*?(?=\r?$)", head)
        branch = re.search(rb"branch=([^;,\s]+)", vias[0]) if vias else None
        status = "200 OK"
        if method == "MESSAGE":
            m = SEQ.search(body)
            if m is not None and branch is not None:
                self.deliveries.setdefault(int(m.group(1)), set()).add(branch.group(1))
        elif method != "OPTIONS":
            status = "501 Not Implemented"
        to = _header(head, rb"(?:To|t)")
        if b";tag=" not in to:
            to += b";tag=uas"
        lines = [f"SIP/2.0 {status}".encode(), *vias, b"To: " + to]
        for name, short in ((b"From", b"f"), (b"Call-ID", b"i"), (b"CSeq", b"")):
            pattern = name if not short else rb"(?:" + name + rb"|" + short + rb")"
            lines.append(name + b": " + _header(head, pattern))
        lines.append(b"Content-Length: 0")
        if self.transport is not None:
            self.transport.sendto(b"\r\n".join(lines) + b"\r\n\r\n", addr)

    def duplicates(self) -> list[int]:
        return sorted(seq for seq, branches in self.deliveries.items() if len(branches) > 1)


# ------------------------------------------------------------------ raw XMPP client


_STREAM_OPEN = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
)


class RawXmpp:
    """A c2s client on a raw stream (bench.loadgen_xmpp.login: SASL PLAIN, bind,
    available presence); stanzas are parsed with an XML pull parser and handed to
    `on_stanza`. With `reconnect`, `run()` logs in again whenever the stream ends."""

    def __init__(
        self,
        port: int,
        jid: str,
        password: str,
        *,
        resource: str = "soak",
        on_stanza: Callable[[RawXmpp, ET.Element], None] | None = None,
        reconnect: bool = False,
    ) -> None:
        self.port = port
        self.jid = jid
        self.password = password
        self.resource = resource
        self.on_stanza = on_stanza
        self.reconnect = reconnect
        self.writer: asyncio.StreamWriter | None = None
        self.messages: list[ET.Element] = []
        self.connected = asyncio.Event()
        self.logins = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self, timeout: float = 20.0) -> RawXmpp:
        self._task = asyncio.create_task(self.run())
        async with asyncio.timeout(timeout):
            await self.connected.wait()
        return self

    async def stop(self) -> None:
        self._stopping = True
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def send(self, xml: str | bytes) -> bool:
        """Write a stanza; False when there is no stream right now."""
        w = self.writer
        if w is None or w.is_closing() or not self.connected.is_set():
            return False
        w.write(xml.encode() if isinstance(xml, str) else xml)
        return True

    async def run(self) -> None:
        while not self._stopping:
            try:
                conn = await login(self.port, self.jid, self.password, resource=self.resource)
            except (OSError, TimeoutError, RuntimeError, asyncio.IncompleteReadError):
                if not self.reconnect:
                    raise
                await asyncio.sleep(0.3)
                continue
            self.logins += 1
            self.writer = conn.writer
            self.connected.set()
            try:
                await self._read(conn.reader, conn.buf)
            except (OSError, ET.ParseError):
                pass
            finally:
                self.connected.clear()
                conn.writer.close()
            if not self.reconnect:
                return
            await asyncio.sleep(0.3)

    async def _read(self, reader: asyncio.StreamReader, pending: bytes) -> None:
        parser: Any = ET.XMLPullParser(events=("start", "end"))
        parser.feed(_STREAM_OPEN)
        depth = 0
        chunk = pending
        while True:
            parser.feed(chunk)
            for event, item in parser.read_events():
                elem = cast(ET.Element, item)  # "start"/"end" events carry elements
                if event == "start":
                    depth += 1
                    continue
                depth -= 1
                if depth == 1:  # a stanza (depth 0 is our fake stream element)
                    if elem.tag.endswith("}message"):
                        self.messages.append(elem)
                    if self.on_stanza is not None:
                        self.on_stanza(self, elem)
            chunk = await reader.read(65536)
            if not chunk or b"</stream:stream>" in chunk:
                return


def body_seq(elem: ET.Element) -> int | None:
    """The `seq=N` of a message stanza's body, None when it has none."""
    body = elem.find("{jabber:client}body")
    if body is None or body.text is None:
        return None
    m = SEQ.search(body.text.encode())
    return int(m.group(1)) if m else None


# ------------------------------------------------------------------ SIP watcher


class SoakWatcher:
    """A SIP watcher (a real SipEndpoint on loopback): SUBSCRIBE with refreshes in the
    same dialog; NOTIFYs answered 200 and counted."""

    def __init__(self, user: str, t1: float = 0.5) -> None:
        self.user = user
        self.port = free_port()
        cfg = SipConfig(
            listeners=(ListenerConfig(Transport.UDP, LOOPBACK, self.port),),
            timers=SipTimers(t1=t1, t2=4.0, t4=5.0),
        )
        self.endpoint = SipEndpoint(cfg, self)
        self.call_id = f"soakw{os.getpid()}-{next(_counter)}@{LOOPBACK}"
        self.tag = f"w{next(_counter)}"
        self.to_tag: str | None = None
        self.cseq = 0
        self.notifies: list[SipRequest] = []
        self.arrived = asyncio.Event()

    def handle(self, incoming: IncomingRequest) -> None:
        if incoming.request.method == "NOTIFY":
            self.notifies.append(incoming.request)
            self.arrived.set()
            incoming.reply(200)
        elif incoming.request.method != "ACK":
            incoming.reply(405)

    async def subscribe(self, port: int, to: str, expires: int) -> SipResponse:
        self.cseq += 1
        to_value = f"<sip:{to}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        headers = Headers(
            [
                ("From", f"<sip:{self.user}>;tag={self.tag}"),
                ("To", to_value),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} SUBSCRIBE"),
                ("Contact", f"<sip:watcher@{LOOPBACK}:{self.port}>"),
                ("Event", "presence"),
                ("Accept", "application/pidf+xml"),
                ("Expires", str(expires)),
            ]
        )
        request = SipRequest("SUBSCRIBE", parse_uri(f"sip:{to}"), headers)
        response = await self.endpoint.request(request, Target("udp", LOOPBACK, LOOPBACK, port))
        if response.is_success and self.to_tag is None:
            self.to_tag = response.to_tag
        return response

    def states(self) -> list[str]:
        return [str(n.subscription_state) for n in self.notifies]


# ------------------------------------------------------------------ trend


@dataclass(frozen=True)
class Trend:
    """Least squares of value against time after the warm-up."""

    samples: int
    window_h: float
    start: float
    end: float
    slope_per_h: float
    noise: float  # 2 x the standard deviation of the residuals
    floor: float  # growth below this is no growth (one fd, one task, 1 MiB)
    growth: bool

    @property
    def predicted(self) -> float:
        return self.slope_per_h * self.window_h


def trend(points: list[tuple[float, float]], floor: float) -> Trend:
    """`points` are (seconds, value). Growth = the slope predicts, over the window, more
    than max(noise, floor), where noise is 2 x the residuals' standard deviation."""
    n = len(points)
    if n < 3:
        v0 = points[0][1] if points else 0.0
        v1 = points[-1][1] if points else 0.0
        return Trend(n, 0.0, v0, v1, 0.0, 0.0, floor, False)
    ts = [t / 3600 for t, _ in points]
    vs = [v for _, v in points]
    mt, mv = sum(ts) / n, sum(vs) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    slope = sum((t - mt) * (v - mv) for t, v in zip(ts, vs, strict=True)) / sxx if sxx else 0.0
    resid = [v - (mv + slope * (t - mt)) for t, v in zip(ts, vs, strict=True)]
    noise = 2 * math.sqrt(sum(r * r for r in resid) / max(n - 2, 1))
    window = ts[-1] - ts[0]
    grows = slope * window > max(noise, floor)
    return Trend(n, window, vs[0], vs[-1], slope, noise, floor, grows)


# ------------------------------------------------------------------ the run


@dataclass
class Counts:
    s2x_sent: int = 0
    x2s_sent: int = 0
    x2s_errors: int = 0
    x2s_error_ids: set[int] = field(default_factory=set)
    s2x_delivered: dict[int, int] = field(default_factory=dict)  # seq -> arrivals
    subscribe_ok: int = 0
    subscribe_failed: int = 0
    presence_changes: int = 0


def _on_juliet(counts: Counts) -> Callable[[RawXmpp, ET.Element], None]:
    def handle(client: RawXmpp, elem: ET.Element) -> None:
        if elem.tag.endswith("}message"):
            seq = body_seq(elem)
            if seq is not None and elem.get("type") != "error":
                counts.s2x_delivered[seq] = counts.s2x_delivered.get(seq, 0) + 1
        elif elem.tag.endswith("}presence") and elem.get("type") == "subscribe":
            client.send(f"<presence to='{elem.get('from')}' type='subscribed'/>")

    return handle


def _on_nurse(counts: Counts) -> Callable[[RawXmpp, ET.Element], None]:
    def handle(client: RawXmpp, elem: ET.Element) -> None:
        if elem.tag.endswith("}message") and elem.get("type") == "error":
            counts.x2s_errors += 1
            mid = elem.get("id", "")
            if mid.startswith("x") and mid[1:].isdigit():
                counts.x2s_error_ids.add(int(mid[1:]))

    return handle


async def _paced(rate: float, until: float, send: Callable[[int], None]) -> int:
    """Call send(0), send(1), ... at `rate` per second until loop time `until`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while loop.time() < until:
        due = int(rate * (loop.time() - start)) + 1
        while n < due:
            send(n)
            n += 1
        await asyncio.sleep(0.01)
    return n


async def soak(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    plog = work / "prosody" / "prosody.log"
    prosody = ProsodyServer(
        work / "prosody",
        components={COMPONENT: SECRET},
        extra_config=(
            f'log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = "{plog}" }} }}'
        ),
    )
    prosody.start()
    uas = await LeanUas().start()
    gw: GatewayProcess | None = None
    juliet = nurse = None
    watcher: SoakWatcher | None = None
    uac: LeanUac | None = None
    try:
        prosody.add_user("juliet", "pw")
        prosody.add_user("nurse", "pw")
        sip_port, admin_port = free_port(), free_port()
        admin = f"{LOOPBACK}:{admin_port}"
        config = gateway_config(
            gateway={"state_dir": str(work / "gw-state")},
            xmpp={
                "port": prosody.component_port,
                "components": [{"domain": COMPONENT, "secret": SECRET, "addressing": "mirrored"}],
            },
            sip={
                "listeners": [{"transport": "udp", "address": LOOPBACK, "port": sip_port}],
                "hosted_domains": [],
                "trusted_peers": [LOOPBACK],
                "routes": [{"domain": COMPONENT, "target": f"sip:{LOOPBACK}:{uas.port}"}],
            },
            admin={"listen": admin},
            # the soak's own rate is well above the per-source defaults (all from loopback)
            rate_limits={
                "per_source": {"message": {"burst": 0.0, "rate": 1.0}},
                "per_user": {"message": {"burst": 0.0, "rate": 1.0}},
            },
        )
        argv = None
        if args.tracemalloc is not None:
            argv = _traced_argv(work, Path(args.tracemalloc), args.tracemalloc_frames)
        gw = GatewayProcess(config, work / "gateway", log_level="info", argv=argv)
        gw.start()
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=30)
        counts = Counts()
        juliet = await RawXmpp(
            prosody.c2s_port, "juliet@localhost", "pw", on_stanza=_on_juliet(counts)
        ).start()
        nurse = await RawXmpp(
            prosody.c2s_port, "nurse@localhost", "pw", on_stanza=_on_nurse(counts)
        ).start()
        uac = await LeanUac((LOOPBACK, sip_port)).start()
        watcher = SoakWatcher(f"alice@{COMPONENT}")
        await watcher.endpoint.start()
        first = await watcher.subscribe(sip_port, "juliet@localhost", args.expires)
        if not first.is_success:
            raise RuntimeError(f"SUBSCRIBE answered {first.status}")
        counts.subscribe_ok += 1

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        until = t0 + args.minutes * 60
        samples: list[dict[str, float]] = []
        print(
            f"# soak: gateway pid {gw.pid}, {args.minutes} min at {args.rate}/s each way, "
            f"SUBSCRIBE Expires {args.expires}, samples every {args.sample} s; work dir {work}",
            flush=True,
        )
        assert uac is not None and juliet is not None and nurse is not None
        u, n_, w = uac, nurse, watcher

        def s2x(i: int) -> None:
            u.send(i, "sip:juliet@localhost")

        def x2s(i: int) -> None:
            n_.send(
                f"<message type='chat' id='x{i}' to='romeo{i % 20}@{COMPONENT}'>"
                f"<body>soak seq={i}</body></message>"
            )

        async def refresher() -> None:
            while loop.time() < until:
                await asyncio.sleep(args.expires / 2)
                try:
                    r = await w.subscribe(sip_port, "juliet@localhost", args.expires)
                    ok = r.is_success
                except Exception:  # counted, the run goes on
                    ok = False
                if ok:
                    counts.subscribe_ok += 1
                else:
                    counts.subscribe_failed += 1

        async def presence_changes() -> None:
            assert juliet is not None
            rnd = random.Random(7)
            while loop.time() < until:
                await asyncio.sleep(20)
                show = rnd.choice(["away", "dnd", "chat", "xa"])
                juliet.send(f"<presence><show>{show}</show><status>soak {show}</status></presence>")
                counts.presence_changes += 1

        async def sampler() -> None:
            assert gw is not None
            while True:
                metrics: dict[str, float] = {}
                with contextlib.suppress(Exception):
                    metrics = await scrape(admin, SAMPLED_METRICS)
                row = {
                    "t": round(loop.time() - t0, 1),
                    "rss_mib": round(proc_rss(gw.pid) / 2**20, 2),
                    "fds": proc_fds(gw.pid),
                    "tasks": metrics.get("cpim_asyncio_tasks", -1),
                    "transactions": metrics.get("cpim_sip_transactions_in_flight", -1),
                    "s2x_sent": u.sent,
                    "s2x_2xx": sum(1 for s in u.outcomes.values() if 200 <= s < 300),
                    "s2x_delivered": len(counts.s2x_delivered),
                    "x2s_sent": counts.x2s_sent,
                    "x2s_delivered": len(uas.deliveries),
                    "errors": counts.x2s_errors + sum(1 for s in u.outcomes.values() if s >= 300),
                    "notifies": len(w.notifies),
                    "prosody_rss_mib": round(proc_rss(prosody.pid or 0) / 2**20, 2),
                    **heap_columns(metrics),
                    **proc_rss_by_kind(gw.pid),
                }
                samples.append(row)
                if args.tracemalloc is not None and row["t"] >= args.warmup * 60:
                    gw.send_signal(signal.SIGUSR2)  # the wrapper dumps a snapshot
                print(json.dumps(row), flush=True)
                if loop.time() >= until:
                    return
                await asyncio.sleep(min(args.sample, max(until - loop.time(), 0.1)))

        sample_task = asyncio.create_task(sampler())
        helpers = [asyncio.create_task(refresher()), asyncio.create_task(presence_changes())]
        s2x_task = asyncio.create_task(_paced(args.rate, until, s2x))

        async def x2s_run() -> None:
            def one(i: int) -> None:
                x2s(i)
                counts.x2s_sent += 1

            await _paced(args.rate, until, one)

        await asyncio.gather(s2x_task, x2s_run())
        await sample_task
        for h in helpers:
            h.cancel()
        try:
            unsubscribe_status = (await watcher.subscribe(sip_port, "juliet@localhost", 0)).status
        except Exception:  # counted below as a failed check
            unsubscribe_status = 0
        # let everything in flight finish (Timer F = 32 s)
        await uac.drain(40)
        deadline = loop.time() + 40
        while loop.time() < deadline and (
            len(uas.deliveries) + len(counts.x2s_error_ids) < counts.x2s_sent
        ):
            await asyncio.sleep(0.5)
        # completed server transactions linger for Timer J (64*T1 = 32 s): wait them out
        final_metrics: dict[str, float] = {}
        deadline = loop.time() + 45
        while loop.time() < deadline:
            with contextlib.suppress(Exception):
                final_metrics = await scrape(
                    admin, ("cpim_asyncio_tasks", "cpim_sip_transactions_in_flight")
                )
            if final_metrics.get("cpim_sip_transactions_in_flight", -1) == 0:
                break
            await asyncio.sleep(1)

        # ------------------------------------------------ verdicts
        warm = args.warmup * 60
        after = [r for r in samples if r["t"] >= warm]
        trends = {
            "rss_mib": trend([(r["t"], r["rss_mib"]) for r in after], 1.0),
            "fds": trend([(r["t"], r["fds"]) for r in after], 1.0),
            "tasks": trend([(r["t"], r["tasks"]) for r in after], 1.0),
        }
        if after and after[-1]["heap_in_use_mib"] >= 0:  # glibc: what is allocated, not held
            trends["heap_in_use_mib"] = trend([(r["t"], r["heap_in_use_mib"]) for r in after], 1.0)
            trends["py_blocks"] = trend([(r["t"], r["py_blocks"]) for r in after], PY_BLOCKS_FLOOR)
        ok2xx = {s for s, st in uac.outcomes.items() if 200 <= st < 300}
        failed = {s for s, st in uac.outcomes.items() if st >= 300}
        delivered = set(counts.s2x_delivered)
        x2s_delivered = set(uas.deliveries)
        checks = {
            "s2x_2xx_without_delivery": len(ok2xx - delivered),
            "s2x_delivered_after_error": len(failed & delivered),
            "s2x_duplicates": sum(1 for c in counts.s2x_delivered.values() if c > 1),
            "s2x_without_outcome": uac.sent - len(uac.outcomes),
            "x2s_duplicates": len(uas.duplicates()),
            "x2s_lost_without_error": len(
                set(range(counts.x2s_sent)) - x2s_delivered - counts.x2s_error_ids
            ),
            "x2s_delivered_and_error": len(x2s_delivered & counts.x2s_error_ids),
            "subscribe_refresh_failures": counts.subscribe_failed,
            "subscription_terminated_early": sum(
                1 for s in watcher.states()[:-1] if s.startswith("terminated")
            ),
            "gateway_alive": 0 if gw.running else 1,
            "unsubscribe_failed": 0 if 200 <= unsubscribe_status < 300 else 1,
        }
        growth = [k for k, t in trends.items() if t.growth]
        summary: dict[str, Any] = {
            "kind": "soak",
            "started_utc": stamp,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "cpu": _cpu_model(),
            },
            "minutes": args.minutes,
            "rate_each_way": args.rate,
            "expires": args.expires,
            "warmup_min": args.warmup,
            "counts": {
                "s2x_sent": uac.sent,
                "s2x_2xx": len(ok2xx),
                "s2x_errors": len(failed),
                "s2x_delivered": len(delivered),
                "s2x_retransmissions": uac.retransmissions,
                "x2s_sent": counts.x2s_sent,
                "x2s_delivered": len(x2s_delivered),
                "x2s_error_stanzas": counts.x2s_errors,
                "subscribe_2xx": counts.subscribe_ok,
                "notifies": len(watcher.notifies),
                "presence_changes": counts.presence_changes,
                "unsubscribe_status": unsubscribe_status,
                "transactions_in_flight_end": final_metrics.get(
                    "cpim_sip_transactions_in_flight", -1
                ),
                "tasks_end": final_metrics.get("cpim_asyncio_tasks", -1),
            },
            "trends": {k: {**asdict(t), "predicted": t.predicted} for k, t in trends.items()},
            "checks": checks,
            "verdict": "no growth" if not growth else f"growth: {', '.join(growth)}",
        }
        csv_path = out_dir / f"soak-{stamp}.csv"
        with csv_path.open("w", newline="", encoding="ascii") as f:
            writer = csv.DictWriter(f, fieldnames=list(samples[0]))
            writer.writeheader()
            writer.writerows(samples)
        json_path = out_dir / f"soak-{stamp}.json"
        json_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        _print_summary(summary, csv_path, json_path)
        if args.tracemalloc is not None:
            gw.terminate(30)
            _print_tracemalloc(Path(args.tracemalloc))
        passed = not growth and not any(checks.values())
        return 0 if passed else 1
    finally:
        if watcher is not None:
            await watcher.endpoint.stop()
        if uac is not None:
            uac.close()
        for c in (juliet, nurse):
            if c is not None:
                await c.stop()
        uas.close()
        if gw is not None and gw.running:
            with contextlib.suppress(Exception):  # terminate() kills it then
                gw.terminate(20)
        prosody.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


_TRACED = """\
import signal, sys, tracemalloc
tracemalloc.start(int(sys.argv[1]))
out, count = sys.argv[2], [0]
def dump(*_):
    count[0] += 1
    tracemalloc.take_snapshot().dump(f"{out}/snap-{count[0]:04d}.bin")
signal.signal(signal.SIGUSR2, dump)
from gateway.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _traced_argv(work: Path, out: Path, frames: int) -> list[str]:
    """The gateway under tracemalloc: SIGUSR2 dumps a snapshot into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    wrapper = work / "traced_gateway.py"
    wrapper.write_text(_TRACED, encoding="utf-8")
    config = work / "gateway" / "gateway.toml"
    cmd = ["run", "--config", str(config), "--log-level", "info"]
    return [sys.executable, str(wrapper), str(frames), str(out), *cmd]


def _print_tracemalloc(out: Path, top: int = 15) -> None:
    """What grew between the first and the last snapshot after the warm-up."""
    import tracemalloc

    snaps = sorted(out.glob("snap-*.bin"))
    if len(snaps) < 2:
        print("# tracemalloc: fewer than two snapshots")
        return
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<*")]
    first = tracemalloc.Snapshot.load(str(snaps[0])).filter_traces(ignore)
    last = tracemalloc.Snapshot.load(str(snaps[-1])).filter_traces(ignore)
    print(f"# tracemalloc: {snaps[0].name} -> {snaps[-1].name}, top {top} by growth")
    grown = sorted(last.compare_to(first, "traceback"), key=lambda st: -st.size_diff)
    total = sum(st.size_diff for st in grown)
    print(f"#   traced total {total / 1024:+.1f} KiB")
    for stat in [st for st in grown if st.size_diff > 0][:top]:
        print(f"#   {stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks")
        for line in stat.traceback.format(limit=6):
            print(f"#       {line}")


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def _print_summary(s: dict[str, Any], csv_path: Path, json_path: Path) -> None:
    print(f"# soak {s['minutes']} min, {s['rate_each_way']}/s each way; {csv_path}, {json_path}")
    for k, v in s["counts"].items():
        print(f"#   {k}: {v}")
    for k, t in s["trends"].items():
        print(
            f"#   {k}: start {t['start']:g} end {t['end']:g} slope {t['slope_per_h']:+.3f}/h "
            f"(predicted {t['predicted']:+.2f} over {t['window_h']:.2f} h, noise {t['noise']:.2f})"
            f"{' GROWTH' if t['growth'] else ''}"
        )
    bad = {k: v for k, v in s["checks"].items() if v}
    print(f"#   checks: {bad or 'all zero'}")
    print(f"# verdict: {s['verdict']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=32.0)
    ap.add_argument("--rate", type=float, default=100.0, help="messages per second, each way")
    ap.add_argument("--expires", type=int, default=60, help="SUBSCRIBE Expires (refresh at half)")
    ap.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes left out of the trend")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (logs)")
    ap.add_argument("--tracemalloc", metavar="DIR", help="run the gateway under tracemalloc")
    ap.add_argument("--tracemalloc-frames", type=int, default=10)

    args = ap.parse_args(argv)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())

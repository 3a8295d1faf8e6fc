"""Over-the-wire fuzzing of the running gateway in a network namespace (issue 12).

Everything runs in a fresh namespace with only loopback: the test re-runs this file
there (`ip netns exec NS python -m tests.integration.test_fuzz_wire_netns drive DIR`),
and the driver starts a real Prosody and the gateway process (through its CLI) inside
it, then for a bounded time (DURATION seconds) attacks the gateway's UDP and TCP
listeners with random and mutated datagrams (RFC 4475 vectors and generated messages,
which carry foreign addresses: hence the namespace), mutated TCP streams cut at random,
slowloris connections that never complete a message, and oversized header sections,
while a well-behaved client sends an OPTIONS every 100 ms (retransmitting as RFC 3261
§17.1.2.2 Timer E says). The driver prints a JSON report that the test checks:

- the gateway process is alive, its log has no traceback, its XMPP link stayed up;
- every OPTIONS of the well-behaved client was answered 200 (UDP and TCP probes);
- oversized headers on TCP close the connection (RFC 3261 §18.3: framing cannot recover);
- a slowloris connection does not stop anyone else from being served.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import secrets
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DURATION = 40.0  # seconds of attack; the whole test stays near a minute
COMPONENT = "sip.localhost"
SEED = 1212
PROBE_EVERY = 0.1
SLOW_CONNECTIONS = 40


# ======================================================================= the test


def _ip() -> str:
    path = shutil.which("ip") or next(
        (p for p in ("/usr/sbin/ip", "/sbin/ip") if os.path.exists(p)), None
    )
    if path is None:
        from tests.harness import require_binary

        return require_binary("ip", package="iproute2")
    return path


@pytest.fixture
def netns() -> Iterator[str]:
    ip = _ip()
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root (ip netns add)")
    name = f"cpimgw-fuzz-{os.getpid()}"
    subprocess.run([ip, "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run([ip, "netns", "exec", name, "ip", "link", "set", "lo", "up"],
                       check=True, timeout=30)  # fmt: skip
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], check=False, timeout=30)


@pytest.mark.netns
@pytest.mark.integration
def test_wire_fuzz_in_a_namespace(netns: str, tmp_path: Path) -> None:
    from tests.harness import require_binary

    require_binary("prosody")
    driver = subprocess.run(
        [_ip(), "netns", "exec", netns, sys.executable, "-m", __name__, "drive", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        timeout=DURATION + 240,
        check=False,
    )
    assert driver.returncode == 0, driver.stderr.decode(errors="replace")[-4000:]
    report: dict[str, Any] = json.loads(driver.stdout)
    print(json.dumps(report))  # the figures for docs/reliability.md (pytest -s)
    log = (tmp_path / "gw" / "gateway.log").read_text(errors="replace")
    assert report["alive"], log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    assert report["link_down_lines"] == 0, log[-4000:]
    sent = report["sent"]
    assert sent["udp_datagrams"] > 1000 and sent["tcp_streams"] > 100, sent
    assert sent["slowloris"] == SLOW_CONNECTIONS
    options = report["options"]
    assert options["sent"] >= DURATION / PROBE_EVERY / 4, options  # a loaded machine is slow
    assert options["answered"] == options["sent"], options
    assert options["statuses"] == [200], options
    assert report["oversized"] == {"tcp_closed": True, "udp_answer": None}
    assert report["after"] == {"udp": 200, "tcp": 200, "tcp_beside_slowloris": 200}


# ======================================================================= inside the namespace

LOOP = "127.0.0.1"
WAIT = 20.0


def _options(port: int, local: tuple[str, int], call_id: str, transport: str, cseq: int) -> bytes:
    return (
        f"OPTIONS sip:{COMPONENT} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {local[0]}:{local[1]};branch=z9hG4bK{call_id}-{cseq};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:probe@{LOOP}>;tag=p\r\nTo: <sip:{COMPONENT}>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: {cseq} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


_status_re = re.compile(rb"^SIP/2\.0 (\d{3})")
_call_id_re = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.MULTILINE | re.IGNORECASE)


def _status_and_call_id(data: bytes) -> tuple[int | None, str | None]:
    s = _status_re.match(data)
    c = _call_id_re.search(data.split(b"\r\n\r\n", 1)[0])
    return (int(s.group(1)) if s else None), (c.group(1).decode() if c else None)


class WellBehaved(threading.Thread):
    """OPTIONS every 100 ms over UDP; each retransmitted with Timer E (T1 = 0.5 s,
    doubling, capped at T2 = 4 s) until answered or Timer F (64*T1 = 32 s) expires."""

    def __init__(self, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOP, 0))
        self.pending: dict[str, tuple[bytes, float, float, float]] = {}
        self.sent = 0
        self.answered = 0
        self.statuses: set[int] = set()

    def run(self) -> None:
        n = 0
        next_send = time.monotonic()
        while not self.stop.is_set() or self.pending:
            now = time.monotonic()
            if not self.stop.is_set() and now >= next_send:
                n += 1
                call_id = f"wb-{n}-{secrets.token_hex(3)}"
                data = _options(self.port, self.sock.getsockname(), call_id, "UDP", 1)
                self.sock.sendto(data, (LOOP, self.port))
                self.pending[call_id] = (data, now + 0.5, 0.5, now + 32.0)
                self.sent += 1
                next_send = now + PROBE_EVERY
            for call_id, (data, due, interval, give_up) in list(self.pending.items()):
                if now >= give_up:
                    del self.pending[call_id]
                elif now >= due:
                    self.sock.sendto(data, (LOOP, self.port))
                    step = min(interval * 2, 4.0)
                    self.pending[call_id] = (data, now + step, step, give_up)
            if select.select([self.sock], [], [], 0.02)[0]:
                status, answered = _status_and_call_id(self.sock.recv(65536))
                if answered in self.pending and status is not None and status >= 200:
                    del self.pending[answered]
                    self.answered += 1
                    self.statuses.add(status)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        i = rng.randrange(len(buf))
        j = min(len(buf), i + rng.randint(1, 64))
        op = rng.randrange(6)
        if op == 0:
            buf[i] = rng.randrange(256)
        elif op == 1:
            del buf[i:j]
        elif op == 2:
            buf[i:i] = buf[i:j] * rng.randint(1, 8)
        elif op == 3:
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            del buf[j:]
        else:
            buf[i:i] = rng.choice([b"\r\n", b"\r\n\r\n", b";", b",", b":", b"<", b'"', b"%"])
    return bytes(buf)


def _corpus() -> list[bytes]:
    from tests.unit.test_fuzz_sip import SAMPLES

    vectors = list(SAMPLES)
    # messages aimed at the gateway's own domain and served XMPP users reach the bridge
    for method, ctype, body in [
        ("MESSAGE", "text/plain", b"hello"),
        ("MESSAGE", "application/im-iscomposing+xml",
         b'<isComposing xmlns="urn:ietf:params:xml:ns:im-iscomposing"><state>active</state>'
         b"</isComposing>"),
        ("MESSAGE", "message/cpim",
         b"From: <sip:romeo@sip.localhost>\r\n\r\nContent-Type: text/plain\r\n\r\nhi"),
        ("PUBLISH", "application/pidf+xml",
         b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:romeo@sip.localhost"/>'),
        ("SUBSCRIBE", "", b""),
        ("REGISTER", "", b""),
    ]:  # fmt: skip
        head = (
            f"{method} sip:juliet@localhost SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKfz\r\nMax-Forwards: 70\r\n"
            f"From: <sip:romeo@{COMPONENT}>;tag=f\r\nTo: <sip:juliet@localhost>\r\n"
            f"Call-ID: fz@127.0.0.1\r\nCSeq: 1 {method}\r\nEvent: presence\r\n"
            "Contact: <sip:romeo@127.0.0.1:5999>\r\n"
            + (f"Content-Type: {ctype}\r\n" if ctype else "")
            + f"Content-Length: {len(body)}\r\n\r\n"
        )
        vectors.append(head.encode() + body)
    return vectors


def _udp_flood(port: int, rng: random.Random, corpus: list[bytes], until: float) -> int:
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        while time.monotonic() < until:
            if rng.random() < 0.2:
                data = rng.randbytes(rng.randrange(1, 1500))
            else:
                data = _mutate(rng, rng.choice(corpus))
            with contextlib.suppress(BlockingIOError):
                s.sendto(data or b"x", (LOOP, port))
                sent += 1
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                while s.recv(65536):  # drain answers so the flood is not throttled by them
                    pass
            if sent % 50 == 0:
                time.sleep(0.01)  # ~ a few thousand datagrams a second at most
    return sent


def _tcp_streams(port: int, rng: random.Random, corpus: list[bytes], until: float) -> int:
    sent = 0
    while time.monotonic() < until:
        stream = b"".join(_mutate(rng, rng.choice(corpus)) for _ in range(rng.randint(1, 4)))
        try:
            with socket.create_connection((LOOP, port), timeout=5) as s:
                pos = 0
                while pos < len(stream):
                    size = rng.randint(1, 700)
                    s.sendall(stream[pos : pos + size])
                    pos += size
                if rng.random() < 0.5:  # sometimes read what comes back, sometimes not
                    s.settimeout(0.2)
                    with contextlib.suppress(OSError):
                        s.recv(65536)
        except OSError:
            pass  # the gateway closed a broken stream while we were still writing
        sent += 1
    return sent


def _tcp_options(port: int, sock: socket.socket | None = None) -> int | None:
    own = sock is None
    s = sock or socket.create_connection((LOOP, port), timeout=WAIT)
    try:
        call_id = f"tcp-{secrets.token_hex(4)}"
        s.sendall(_options(port, s.getsockname(), call_id, "TCP", 1))
        s.settimeout(WAIT)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                return None
            data += chunk
        return _status_and_call_id(data)[0]
    finally:
        if own:
            s.close()


def _udp_options(port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOP, 0))
        s.settimeout(2.0)
        call_id = f"udp-{secrets.token_hex(4)}"
        for _ in range(8):  # retransmit: the flood may have filled a socket buffer
            s.sendto(_options(port, s.getsockname(), call_id, "UDP", 1), (LOOP, port))
            with contextlib.suppress(TimeoutError):
                while True:
                    status, got = _status_and_call_id(s.recv(65536))
                    if got == call_id:
                        return status
        return None


def _slowloris(port: int, stop: threading.Event, opened: list[socket.socket]) -> None:
    """Connections that send a message a byte at a time and never finish it."""
    start = b"OPTIONS sip:slow@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9"
    for _ in range(SLOW_CONNECTIONS):
        s = socket.create_connection((LOOP, port), timeout=WAIT)
        s.sendall(start)
        opened.append(s)
    while not stop.wait(1.0):
        for s in list(opened):
            try:
                s.sendall(b"x")
            except OSError:
                opened.remove(s)  # closed by the gateway: allowed


def _oversized(port: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pad = "".join(f"X-Pad-{i}: {'a' * 900}\r\n" for i in range(110))  # ~100 KB of headers
    msg = (
        f"OPTIONS sip:{COMPONENT} SIP/2.0\r\nVia: SIP/2.0/TCP {LOOP}:9;branch=z9hG4bKbig\r\n"
        f"{pad}Content-Length: 0\r\n\r\n"
    ).encode()
    with socket.create_connection((LOOP, port), timeout=WAIT) as s:
        with contextlib.suppress(OSError):
            s.sendall(msg)
        s.settimeout(WAIT)
        try:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            out["tcp_closed"] = True
        except ConnectionResetError:
            out["tcp_closed"] = True
        except TimeoutError:
            out["tcp_closed"] = False
    udp_pad = "".join(f"X-Pad-{i}: {'a' * 900}\r\n" for i in range(40))  # 36 KB > 32 KiB
    udp_msg = (
        f"OPTIONS sip:{COMPONENT} SIP/2.0\r\nVia: SIP/2.0/UDP {LOOP}:0;branch=z9hG4bKbigu\r\n"
        f"{udp_pad}Call-ID: big-udp\r\nContent-Length: 0\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOP, 0))
        msg_u = udp_msg.replace(f"{LOOP}:0;", f"{LOOP}:{s.getsockname()[1]};").encode()
        s.sendto(msg_u, (LOOP, port))
        # the gateway answers in order: an OPTIONS after it is a barrier (see the torture test)
        call_id = "barrier-big"
        s.sendto(_options(port, s.getsockname(), call_id, "UDP", 1), (LOOP, port))
        s.settimeout(WAIT)
        answer = None
        while True:
            status, got = _status_and_call_id(s.recv(65536))
            if got == call_id:
                break
            answer = status
        out["udp_answer"] = answer  # the bounded parser reads no Via: nobody to answer
    return out


def _drive(workdir: Path) -> None:
    from tests.harness.gateway_proc import GatewayProcess, gateway_config
    from tests.harness.ports import free_port
    from tests.harness.prosody import ProsodyServer

    rng = random.Random(SEED)
    prosody = ProsodyServer(workdir / "prosody", components={COMPONENT: "s3cret"})
    prosody.start()
    port = free_port()
    config = gateway_config(
        gateway={"state_dir": str(workdir / "state")},
        xmpp={"port": prosody.component_port,
              "components": [{"domain": COMPONENT, "secret": "s3cret"}]},
        sip={"listeners": [{"transport": "udp", "address": LOOP, "port": port},
                           {"transport": "tcp", "address": LOOP, "port": port}],
             "hosted_domains": [], "trusted_peers": ["127.0.0.1"], "timers": {"t1": 0.1}},
        admin={"enabled": False},
    )  # fmt: skip
    gw = GatewayProcess(config, workdir / "gw", log_level="info", ready_timeout=60)
    report: dict[str, Any] = {}
    try:
        gw.start()
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=60)
        corpus = _corpus()
        stop = threading.Event()
        slow: list[socket.socket] = []
        loris = threading.Thread(target=_slowloris, args=(port, stop, slow), daemon=True)
        loris.start()
        good = WellBehaved(port, stop)
        good.start()
        until = time.monotonic() + DURATION
        results: dict[str, int] = {}
        workers = [
            threading.Thread(
                target=lambda: results.__setitem__(
                    "udp_datagrams", _udp_flood(port, random.Random(rng.random()), corpus, until)
                )
            ),
            threading.Thread(
                target=lambda: results.__setitem__(
                    "tcp_streams", _tcp_streams(port, random.Random(rng.random()), corpus, until)
                )
            ),
        ]
        for w in workers:
            w.start()
        report["oversized"] = _oversized(port)
        for w in workers:
            w.join(DURATION + 60)
        beside = _tcp_options(port)  # slowloris connections are still open here
        stop.set()
        good.join(60)
        loris.join(10)
        report["sent"] = {**results, "slowloris": SLOW_CONNECTIONS}
        report["slowloris_still_open"] = len(slow)
        report["options"] = {
            "sent": good.sent,
            "answered": good.answered,
            "statuses": sorted(good.statuses),
        }
        report["after"] = {
            "udp": _udp_options(port),
            "tcp": _tcp_options(port),
            "tcp_beside_slowloris": beside,
        }
        for s in slow:
            s.close()
        report["alive"] = gw.running
        report["link_down_lines"] = len(re.findall(r"xmpp link \S+ down", gw.log_text()))
    finally:
        if gw.running:
            gw.terminate(30)
        prosody.stop()
    json.dump(report, sys.stdout)


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["drive"])
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args()
    _drive(args.workdir)


if __name__ == "__main__":
    _main()

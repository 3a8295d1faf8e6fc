"""Wire torture: RFC 4475 vectors and random mutations against a SipEndpoint process.

The vectors carry foreign addresses (192.0.2.x, example.com in Via, Contact, maddr), so
everything runs in a fresh network namespace that has only loopback: the endpoint
process (`serve`) and the attacking client (`attack`) are this same file run with
`ip netns exec`. The client sends every vector over UDP and over TCP, a few hundred
seeded random mutations, and a slowloris; it prints a JSON report that the test checks.

Over UDP the endpoint answers to the source address and the Via port (RFC 3261 §18.2.2;
5060 when absent), so the client sends from 127.0.0.1:5060 and also listens on 5050
(the one vector with another Via port). After each vector an OPTIONS probe acts as a
barrier: the endpoint handles datagrams in order, so once the probe's 200 is back,
any answer to the vector has arrived too ("nothing" is checked without a timer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors" / "rfc4475"
UDP_SERVER_PORT = 5070  # one endpoint process per run: a vector sent over UDP and then
TCP_SERVER_PORT = 5080  # over TCP would match the first one's transaction (§17.2.3)
LIMIT = 20.0
MUTATIONS = 300
SEED = 4475

# What the endpoint answers over UDP (None: nothing, e.g. responses and messages without
# Via). The torture handler answers INVITE 488 and anything else 200; the statuses of
# invalid messages are those asserted one by one in tests/unit/test_rfc4475.py.
EXPECTED_UDP: dict[str, int | None] = {
    "wsinv": 488, "intmeth": 501, "esc01": 488, "escnull": 200, "esc02": 501,
    "lwsdisp": 200, "longreq": 488, "dblreq": 200, "semiuri": 200, "transports": 200,
    "mpart01": 200, "unreason": None, "noreason": None, "badinv01": 400, "clerr": 400,
    "ncl": 400, "scalar02": 400, "scalarlg": None, "quotbal": 400, "ltgtruri": 400,
    "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 400, "baddate": 488,
    "regbadct": 400, "badaspec": 400, "baddn": 400, "badvers": 505, "mismatch01": 400,
    "mismatch02": 501, "bigcode": None, "badbranch": 200, "insuf": 400, "unkscm": 416,
    "novelsc": 416, "unksm2": 400, "bext01": 420, "invut": 415, "regaut01": 200,
    "multi01": 400, "mcl01": 400, "bcast": None, "zeromf": 200, "cparam01": 200,
    "cparam02": 200, "regescrt": 200, "sdp01": 406, "inv2543": 488, "test": None,
}  # fmt: skip
# Over TCP, Content-Length frames the stream (§18.3): "closed" for framing errors (no or
# bad Content-Length, RFC 4475 §3.1.2.3/§3.3.9), "open" when nothing is answered and the
# connection waits (body shorter than Content-Length, §3.1.2.2; dropped messages).
EXPECTED_TCP: dict[str, int | str] = {
    name: "open" if status is None else status for name, status in EXPECTED_UDP.items()
}
# dblreq: the REGISTER is framed and answered; the junk after it then closes the stream.
EXPECTED_TCP.update({"ncl": "closed", "mcl01": "closed", "inv2543": "closed"})
EXPECTED_TCP.update({"clerr": "open", "baddn": "open"})


def _vectors() -> dict[str, bytes]:
    entries = json.loads((VECTORS / "expectations.json").read_text(encoding="utf-8"))
    return {e["name"]: (VECTORS / e["file"]).read_bytes() for e in entries}


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
    name = f"cpimgw-torture-{os.getpid()}"
    subprocess.run([ip, "netns", "add", name], check=True, timeout=30)
    try:
        subprocess.run([ip, "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True,
                       timeout=30)  # fmt: skip
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], check=False, timeout=30)


def _in_ns(ns: str, *args: str) -> list[str]:
    return [_ip(), "netns", "exec", ns, sys.executable, "-m", __name__, *args]


@pytest.mark.netns
@pytest.mark.integration
def test_torture_in_a_namespace(netns: str, tmp_path: Path) -> None:
    from tests.harness import log_tail, stop_group

    servers = []
    logs = [tmp_path / f"endpoint-{port}.log" for port in (UDP_SERVER_PORT, TCP_SERVER_PORT)]
    try:
        for port, log in zip((UDP_SERVER_PORT, TCP_SERVER_PORT), logs, strict=True):
            with log.open("wb") as out:
                server = subprocess.Popen(
                    _in_ns(netns, "serve", str(port)),
                    cwd=ROOT,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=out,
                    start_new_session=True,
                )
            servers.append(server)
            assert server.stdout is not None
            ready = select.select([server.stdout], [], [], LIMIT)[0]
            assert ready and server.stdout.readline().strip() == b"READY", log_tail(log)
        attack = subprocess.run(
            _in_ns(netns, "attack", str(UDP_SERVER_PORT), str(TCP_SERVER_PORT)),
            cwd=ROOT,
            capture_output=True,
            timeout=300,
            check=False,
        )
        assert attack.returncode == 0, attack.stderr.decode(errors="replace")[-3000:]
        report: dict[str, Any] = json.loads(attack.stdout)
        alive = [server.poll() is None for server in servers]
    finally:
        for server in servers:
            stop_group(server)
    assert alive == [True, True], "\n".join(log_tail(log) for log in logs)
    assert report["udp"] == EXPECTED_UDP
    assert report["tcp"] == EXPECTED_TCP
    assert report["mutations_sent"] == 2 * MUTATIONS
    assert report["after_mutations"] == {"udp": [200, 200], "tcp": [200, 200]}
    assert report["slowloris"] == {
        "probe_udp": 200,
        "probe_tcp": 200,
        "slow_still_open": True,
        "flood_closed": True,
        "probe_after_flood": 200,
    }
    for log in logs:
        assert "Traceback" not in log.read_text(errors="replace")


# ======================================================================= inside the namespace


def _serve(port: int) -> None:
    """A SipEndpoint on 127.0.0.1 (UDP+TCP); INVITE gets 488, anything else 200."""
    from gateway.config import ListenerConfig, SipConfig, SipTimers, Transport
    from gateway.logs import setup_logging
    from gateway.sip.transport.endpoint import SipEndpoint
    from gateway.sip.useragent import IncomingRequest

    class Handler:
        def handle(self, request: IncomingRequest) -> None:
            if request.request.method != "ACK":
                request.reply(488 if request.request.method == "INVITE" else 200)

    async def main() -> None:
        listeners = (
            ListenerConfig(Transport.UDP, "127.0.0.1", port),
            ListenerConfig(Transport.TCP, "127.0.0.1", port),
        )
        config = SipConfig(listeners=listeners, timers=SipTimers(t1=0.05))
        ep = SipEndpoint(config, Handler())
        await ep.start()
        print("READY", flush=True)
        await asyncio.Event().wait()

    setup_logging("info")
    asyncio.run(main())


_status_re = re.compile(rb"^SIP/2\.0 (\d{3})")
_call_id_re = re.compile(rb"^Call-ID: ?(.*?)\r?$", re.MULTILINE)


def _status(data: bytes) -> int | None:
    m = _status_re.match(data)
    return int(m.group(1)) if m else None


def _call_id_of_response(data: bytes) -> str | None:
    m = _call_id_re.search(data.split(b"\r\n\r\n", 1)[0])
    return None if m is None else m.group(1).decode("utf-8", "surrogateescape").strip()


def _vector_keys(data: bytes) -> tuple[str | None, str | None, str | None]:
    """(Call-ID, top Via branch, CSeq) of a vector, read by the parser (best effort)."""
    from gateway.sip.errors import SipError
    from gateway.sip.message import Headers
    from gateway.sip.parser import parse_message

    headers: Headers | None
    try:
        headers = parse_message(data).headers
    except SipError as exc:
        headers = getattr(exc, "headers", None)
    if headers is None:
        return None, None, None
    via = headers.get("Via") or ""
    m = re.search(r"branch=([^;,\s]+)", via)
    return headers.get("Call-ID"), m.group(1) if m else None, headers.get("CSeq")


def _answers(packet: bytes, keys: tuple[str | None, str | None, str | None]) -> bool:
    """Whether `packet` answers the request with `keys`: same Call-ID, or same branch and
    CSeq method. Vectors reuse branches (e.g. cparam01/cparam02, unkscm/novelsc): within
    Timer J the second matches the first one's transaction (RFC 3261 §17.2.3: branch,
    sent-by, method) and gets its response again, which carries the first Call-ID."""
    call_id, branch, cseq = keys
    head = packet.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    if call_id is not None and _call_id_of_response(packet) == call_id:
        return True
    via = re.search(r"^Via: ?(.*)$", head, re.MULTILINE)
    got_cseq = re.search(r"^CSeq: ?(.*?)\r?$", head, re.MULTILINE)
    got_branch = re.search(r"branch=([^;,\s]+)", via.group(1)) if via else None
    return (
        branch is not None
        and got_branch is not None
        and got_branch.group(1) == branch
        and got_cseq is not None
        and got_cseq.group(1).split()[-1:] == (cseq or "").split()[-1:]  # the method
    )


def _options(port: int, local_port: int, call_id: str, transport: str = "UDP") -> bytes:
    return (
        f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK{call_id};rport\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\n"
        f"To: <sip:probe@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class _Udp:
    def __init__(self, port: int) -> None:
        self.server = ("127.0.0.1", port)
        self.main = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.main.bind(("127.0.0.1", 5060))
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 5050))
        self.probes = 0

    def exchange(self, data: bytes) -> list[bytes]:
        """Send `data`, then a probe; every datagram received until the probe's answer."""
        self.probes += 1
        probe_id = f"probe-{self.probes}"
        self.main.sendto(data, self.server)
        self.main.sendto(_options(self.server[1], 5060, probe_id), self.server)
        got: list[bytes] = []
        deadline = time.monotonic() + LIMIT
        while time.monotonic() < deadline:
            ready = select.select([self.main, self.other], [], [], 1.0)[0]
            for sock in ready:
                packet = sock.recv(65536)
                if _call_id_of_response(packet) == probe_id and _status(packet) == 200:
                    got += self._drain(self.other)
                    return got
                got.append(packet)
        raise RuntimeError(f"no answer to {probe_id}")

    @staticmethod
    def _drain(sock: socket.socket) -> list[bytes]:
        out = []
        while select.select([sock], [], [], 0)[0]:
            out.append(sock.recv(65536))
        return out


def _udp_vectors(port: int, vectors: dict[str, bytes]) -> dict[str, int | None]:
    udp = _Udp(port)
    result: dict[str, int | None] = {}
    for name, data in vectors.items():
        keys = _vector_keys(data)
        answers = [_status(p) for p in udp.exchange(data) if _answers(p, keys)]
        result[name] = answers[0] if answers else None
    return result


def _tcp_connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=LIMIT)


def _tcp_probe(port: int, call_id: str) -> int | None:
    with _tcp_connect(port) as sock:
        sock.sendall(_options(port, sock.getsockname()[1], call_id, "TCP"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return _status(data)


def _tcp_vectors(port: int, vectors: dict[str, bytes]) -> dict[str, int | str]:
    """One connection per vector. A complete frame is followed by an OPTIONS probe on the
    same connection (frames are handled in order, so the probe's 200 is a strict
    barrier); an incomplete one gets a probe on another connection, then a look."""
    from gateway.sip.errors import RemoteProtocolError
    from gateway.sip.framing import StreamFramer

    result: dict[str, int | str] = {}
    for i, (name, data) in enumerate(vectors.items()):
        framer = StreamFramer()
        try:
            framer.feed(data)
            complete = framer.buffered == 0 or framer.error is not None
        except RemoteProtocolError:
            complete = True  # a framing error: the endpoint closes, the probe is moot
        with _tcp_connect(port) as sock:
            sock.sendall(data)
            if complete:
                probe = f"tcp-probe-{i}"
                with contextlib.suppress(OSError):  # already closed by the endpoint
                    sock.sendall(_options(port, sock.getsockname()[1], probe, "TCP"))
                result[name] = _tcp_read_until_probe(sock, probe)
            else:
                assert _tcp_probe(port, f"tcp-barrier-{i}") == 200
                result[name] = "open" if not select.select([sock], [], [], 0)[0] else "data"
    return result


def _tcp_read_until_probe(sock: socket.socket, probe: str) -> int | str:
    """The first answer that is not the probe's; "open" when only the probe was
    answered; "closed" for EOF before any answer."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return _status(data) or "closed"
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, data = data.partition(b"\r\n\r\n")
            m = re.search(rb"^Content-Length: ?(\d+)", head, re.MULTILINE)
            data = data[int(m.group(1)) if m else 0 :]
            if _call_id_of_response(head) == probe:
                return "open"
            return _status(head) or "garbage"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        op = rng.randrange(6)
        i = rng.randrange(len(buf))
        j = min(len(buf), i + rng.randint(1, 64))
        if op == 0:
            buf[i] = rng.randrange(256)
        elif op == 1:
            del buf[i:j]
        elif op == 2:
            buf[i:i] = buf[i:j]
        elif op == 3:
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4:
            del buf[j:]
        else:
            buf[i:i] = rng.choice([b"\r\n", b"\r\n\r\n", b";", b",", b":", b"<", b'"', b"%"])
    return bytes(buf)


def _mutations(udp_port: int, tcp_port: int, vectors: dict[str, bytes]) -> int:
    rng = random.Random(SEED)
    samples = list(vectors.values())
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for _ in range(MUTATIONS):
            udp.sendto(_mutate(rng, rng.choice(samples)), ("127.0.0.1", udp_port))
            sent += 1
    for _ in range(MUTATIONS):
        with _tcp_connect(tcp_port) as sock:
            sock.sendall(_mutate(rng, rng.choice(samples)))
            sent += 1
    return sent


def _slowloris(port: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    slow = _tcp_connect(port)
    slow.sendall(b"OPTIONS sip:slow@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;bra")
    out["probe_tcp"] = _tcp_probe(port, "slow-tcp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(LIMIT)
        s.bind(("127.0.0.1", 0))
        s.sendto(_options(port, s.getsockname()[1], "slow-udp"), ("127.0.0.1", port))
        out["probe_udp"] = _status(s.recv(65536))
    slow.sendall(b"nch=z9hG4bKslow\r\n")  # still incomplete: no blank line
    out["slow_still_open"] = not select.select([slow], [], [], 0)[0]
    slow.close()
    flood = _tcp_connect(port)
    try:
        for _ in range(20):  # 80 KB without CRLFCRLF: over the framer's bound
            flood.sendall(b"A" * 4096)
    except OSError:
        pass
    flood.settimeout(LIMIT)
    try:
        out["flood_closed"] = flood.recv(65536) == b""
    except ConnectionResetError:
        out["flood_closed"] = True
    flood.close()
    out["probe_after_flood"] = _tcp_probe(port, "after-flood")
    return out


def _attack(udp_port: int, tcp_port: int) -> None:
    vectors = _vectors()
    report: dict[str, Any] = {
        "udp": _udp_vectors(udp_port, vectors),
        "tcp": _tcp_vectors(tcp_port, vectors),
        "mutations_sent": _mutations(udp_port, tcp_port, vectors),
    }
    ports = (udp_port, tcp_port)
    report["after_mutations"] = {
        "udp": [_udp_probe_once(p) for p in ports],
        "tcp": [_tcp_probe(p, f"after-mutations-tcp-{p}") for p in ports],
    }
    report["slowloris"] = _slowloris(tcp_port)
    json.dump(report, sys.stdout)


def _udp_probe_once(port: int) -> int | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(LIMIT)
        s.bind(("127.0.0.1", 0))
        call_id = "after-mutations-udp"
        s.sendto(_options(port, s.getsockname()[1], call_id), ("127.0.0.1", port))
        while True:
            data = s.recv(65536)
            if _call_id_of_response(data) == call_id:
                return _status(data)


def _main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["serve", "attack"])
    parser.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args()
    if args.role == "serve":
        _serve(args.ports[0])
    else:
        _attack(*args.ports)


if __name__ == "__main__":
    _main()

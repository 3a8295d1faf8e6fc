"""Free loopback ports, never handed out twice in one test process."""

from __future__ import annotations

import socket
import threading

from tests.harness import LOOPBACK

_handed: set[int] = set()
_lock = threading.Lock()


def _bindable(port: int, kind: socket.SocketKind, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A port on 127.0.0.1 free for both TCP and UDP (SIP listens on both)."""
    with _lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOOPBACK, 0))
                port: int = s.getsockname()[1]
            if port in _handed or not _bindable(port, socket.SOCK_DGRAM):
                continue
            _handed.add(port)
            return port
    raise RuntimeError("no free loopback port found in 200 attempts")


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports."""
    return [free_port() for _ in range(n)]


def udp_port_bound(port: int, host: str = LOOPBACK) -> bool:
    """True when something already holds UDP `host:port` (readiness probe for UDP servers)."""
    return not _bindable(port, socket.SOCK_DGRAM, host)


def tcp_accepting(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True when a TCP connection to `host:port` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port_block(offsets: tuple[int, ...]) -> int:
    """A free port P such that P + each offset is free too (sipp media uses P and P+2)."""
    with _lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((LOOPBACK, 0))
                base: int = s.getsockname()[1]
            wanted = [base + off for off in offsets]
            if any(p > 65535 or p in _handed for p in wanted):
                continue
            if all(
                _bindable(p, socket.SOCK_DGRAM) and _bindable(p, socket.SOCK_STREAM) for p in wanted
            ):
                _handed.update(wanted)
                return base
    raise RuntimeError(f"no free loopback port block {offsets} found in 200 attempts")

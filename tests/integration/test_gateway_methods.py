"""What the running gateway says it does matches what it does (RFC 3261 §8.2.1, §11):
OPTIONS lists the methods it handles in Allow, INVITE and BYE among them; without a
Media for message sessions (docs/sessions.md) an INVITE gets 488 with Warning 304, and
the ACK for the 488 is absorbed by the INVITE server transaction (no answer, no error)."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable
from typing import Any

from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port

LOOPBACK = "127.0.0.1"
HANDLED = {"MESSAGE", "SUBSCRIBE", "NOTIFY", "REGISTER", "PUBLISH", "OPTIONS", "ACK", "CANCEL"} | {
    "INVITE",
    "BYE",
}


def _request(method: str, local: int, branch: str, call_id: str, cseq: str) -> bytes:
    return (
        f"{method} sip:juliet@localhost SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:romeo@example.net>;tag={secrets.token_hex(4)}\r\n"
        "To: <sip:juliet@localhost>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _allow(response: bytes) -> set[str]:
    for line in response.decode().split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "allow":
            return {m.strip() for m in value.split(",")}
    raise AssertionError(f"no Allow in {response!r}")


def test_options_allow_and_invite_488_without_media(gateway: Callable[..., GatewayProcess]) -> None:
    port = free_port()
    sip: dict[str, Any] = {
        "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
        "hosted_domains": [],
    }
    gateway(sip=sip)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(10)
        local = sock.getsockname()[1]

        sock.sendto(
            _request("OPTIONS", local, "z9hG4bKopt1", "opt@t", "1 OPTIONS"), (LOOPBACK, port)
        )
        options = sock.recv(65536)
        assert options.startswith(b"SIP/2.0 200 ")
        assert _allow(options) == HANDLED

        sock.sendto(_request("INVITE", local, "z9hG4bKinv1", "inv@t", "1 INVITE"), (LOOPBACK, port))
        answers = [sock.recv(65536)]
        while answers[-1].startswith(b"SIP/2.0 1"):
            answers.append(sock.recv(65536))
        final = answers[-1]
        assert final.startswith(b"SIP/2.0 488 "), final
        assert b'\r\nWarning: 304 gateway "message sessions not enabled"\r\n' in final, final

        to_tag = next(
            line.split("tag=")[1] for line in final.decode().split("\r\n") if line.startswith("To:")
        )
        ack = _request("ACK", local, "z9hG4bKinv1", "inv@t", "1 ACK").replace(
            b"To: <sip:juliet@localhost>", f"To: <sip:juliet@localhost>;tag={to_tag}".encode()
        )
        sock.sendto(ack, (LOOPBACK, port))
        # The ACK is absorbed: the next thing we hear is the answer to a fresh OPTIONS.
        sock.sendto(
            _request("OPTIONS", local, "z9hG4bKopt2", "opt2@t", "1 OPTIONS"), (LOOPBACK, port)
        )
        after = sock.recv(65536)
        assert after.startswith(b"SIP/2.0 200 ") and b"opt2@t" in after

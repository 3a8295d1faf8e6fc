"""STUN keep-alives on the SIP UDP port (RFC 5626 §4.4.2, §8): a running gateway
process answers a real Binding request with the client's address in XOR-MAPPED-ADDRESS,
drops a STUN message that is not a Binding request (logged), and still speaks SIP on the
same port. The XOR-MAPPED-ADDRESS is decoded here from RFC 5389 §15.2, not with the
module under test.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
from pathlib import Path

import pytest

from tests.harness import LOOPBACK
from tests.harness.gateway_proc import GatewayProcess, gateway_config
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer

pytestmark = pytest.mark.integration

COMPONENT = "sip.localhost"
LIMIT = 10.0
COOKIE = 0x2112A442


def stun_message(mtype: int, txid: bytes) -> bytes:
    return struct.pack("!HHI", mtype, 0, COOKIE) + txid


def xor_mapped(reply: bytes) -> tuple[str, int]:
    offset = 20
    while offset < len(reply):
        atype, alen = struct.unpack_from("!HH", reply, offset)
        value = reply[offset + 4 : offset + 4 + alen]
        if atype == 0x0020:
            port = struct.unpack("!H", value[2:4])[0] ^ (COOKIE >> 16)
            addr = int.from_bytes(value[4:8], "big") ^ COOKIE
            return str(ipaddress.IPv4Address(addr)), port
        offset += 4 + ((alen + 3) & ~3)
    raise AssertionError(f"no XOR-MAPPED-ADDRESS in {reply.hex()}")


def test_binding_request_answered_and_others_dropped(
    prosody: ProsodyServer, tmp_path: Path
) -> None:
    port = free_port()
    conf = gateway_config(
        gateway={"state_dir": str(tmp_path / "state")},
        xmpp={
            "port": prosody.component_port,
            "components": [{"domain": COMPONENT, "secret": prosody.components[COMPONENT]}],
        },
        sip={
            "hosted_domains": [COMPONENT],
            "served_xmpp_domains": [prosody.domain],
            "listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}],
        },
        admin={"enabled": False},
    )
    with GatewayProcess(conf, tmp_path / "gw", log_level="debug") as gw:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(LIMIT)
        sock.bind((LOOPBACK, 0))
        try:
            # Not Binding requests: an Allocate (TURN), a Binding indication, a bad cookie.
            sock.sendto(stun_message(0x0003, secrets.token_bytes(12)), (LOOPBACK, port))
            sock.sendto(stun_message(0x0011, secrets.token_bytes(12)), (LOOPBACK, port))
            sock.sendto(
                struct.pack("!HHI", 1, 0, 0xDEADBEEF) + secrets.token_bytes(12), (LOOPBACK, port)
            )
            txid = secrets.token_bytes(12)
            sock.sendto(stun_message(0x0001, txid), (LOOPBACK, port))
            reply, _ = sock.recvfrom(2048)  # the first answer is the Binding request's
            mtype, length, cookie = struct.unpack_from("!HHI", reply)
            assert (mtype, cookie, reply[8:20]) == (0x0101, COOKIE, txid)
            assert length == len(reply) - 20
            assert xor_mapped(reply) == sock.getsockname()
            for reason in ("not Binding", "not a request", "magic cookie"):
                gw.wait_for_log(rf"stun dropped.*{reason}", timeout=LIMIT)

            # SIP on the same port still works (OPTIONS is answered by the UA core).
            lport = sock.getsockname()[1]
            options = (
                f"OPTIONS sip:{COMPONENT} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {LOOPBACK}:{lport};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{LOOPBACK}>;tag=1\r\nTo: <sip:{COMPONENT}>\r\n"
                f"Call-ID: {secrets.token_hex(8)}\r\nCSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            sock.sendto(options, (LOOPBACK, port))
            answer, _ = sock.recvfrom(65535)
            assert answer.startswith(b"SIP/2.0 200"), answer[:80]
        finally:
            sock.close()

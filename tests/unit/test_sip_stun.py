"""gateway.sip.stun: the limited STUN server of RFC 5626 §8, against RFC 5389.

The XOR-MAPPED-ADDRESS vectors are the attribute bytes of the RFC 5769 §2.2 (IPv4) and
§2.3 (IPv6) sample responses: 192.0.2.1:32853 and 2001:db8:1234:5678:11:2233:4455:6677
port 32853, with the transaction ids given there; each is also re-derived here from the
RFC 5389 §15.2 rule (port XOR the cookie's top 16 bits, address XOR cookie[+id]).
"""

from __future__ import annotations

import ipaddress
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip import stun

pytestmark = pytest.mark.unit

TXID_V4 = bytes.fromhex("b7e7a701bc34d686fa87dfae")  # RFC 5769 §2.2
TXID_V6 = bytes.fromhex("b7e7a701bc34d686fa87dfae")  # RFC 5769 §2.3
XMA_V4 = bytes.fromhex("0001a147e112a643")  # RFC 5769 §2.2 XOR-MAPPED-ADDRESS value
XMA_V6 = bytes.fromhex("0002a1470113a9faa5d3f179bc25f4b5bed2b9d9")  # RFC 5769 §2.3


def header(mtype: int, length: int, txid: bytes, cookie: int = stun.MAGIC_COOKIE) -> bytes:
    return struct.pack("!HHI", mtype, length, cookie) + txid


def attrs(message: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    offset = 20
    while offset < len(message):
        atype, alen = struct.unpack_from("!HH", message, offset)
        out[atype] = message[offset + 4 : offset + 4 + alen]
        offset += 4 + ((alen + 3) & ~3)
    return out


def decode_xma(value: bytes, txid: bytes) -> tuple[str, int]:
    """RFC 5389 §15.2, read independently of the module."""
    family, xport = value[1], struct.unpack("!H", value[2:4])[0]
    port = xport ^ 0x2112
    if family == 1:
        return str(ipaddress.IPv4Address(int.from_bytes(value[4:8], "big") ^ 0x2112A442)), port
    key = int.from_bytes(bytes.fromhex("2112a442") + txid, "big")
    return str(ipaddress.IPv6Address(int.from_bytes(value[4:20], "big") ^ key)), port


def test_xor_mapped_address_rfc5769_ipv4() -> None:
    assert stun.xor_mapped_address("192.0.2.1", 32853, TXID_V4) == XMA_V4
    assert decode_xma(XMA_V4, TXID_V4) == ("192.0.2.1", 32853)


def test_xor_mapped_address_rfc5769_ipv6() -> None:
    addr = "2001:db8:1234:5678:11:2233:4455:6677"
    assert stun.xor_mapped_address(addr, 32853, TXID_V6) == XMA_V6
    assert decode_xma(XMA_V6, TXID_V6) == (addr, 32853)


def test_ipv4_mapped_peer_is_answered_as_ipv4() -> None:
    assert stun.xor_mapped_address("::ffff:192.0.2.1", 32853, TXID_V4) == XMA_V4


def test_binding_request_answered_with_success_and_xor_mapped_address() -> None:
    request = stun.binding_request(TXID_V4)
    assert request == header(0x0001, 0, TXID_V4)
    reply = stun.answer(request, ("192.0.2.1", 32853))
    mtype, length, cookie = struct.unpack_from("!HHI", reply)
    assert (mtype, cookie, reply[8:20]) == (0x0101, 0x2112A442, TXID_V4)
    assert length == len(reply) - 20 == 12
    assert attrs(reply) == {0x0020: XMA_V4}


def test_binding_request_from_ipv6_peer() -> None:
    reply = stun.answer(
        stun.binding_request(TXID_V6), ("2001:db8:1234:5678:11:2233:4455:6677", 32853)
    )
    assert attrs(reply) == {0x0020: XMA_V6}
    assert struct.unpack_from("!H", reply, 2)[0] == 24


def test_request_with_fingerprint_and_software_is_answered() -> None:
    software = b"test vector "  # 12 bytes: no padding
    body = struct.pack("!HH", 0x8022, len(software)) + software
    partial = header(0x0001, len(body) + 8, TXID_V4) + body
    crc = zlib.crc32(partial) ^ 0x5354554E
    request = partial + struct.pack("!HHI", 0x8028, 4, crc)
    assert attrs(stun.answer(request, ("192.0.2.1", 32853))) == {0x0020: XMA_V4}
    bad = request[:-1] + bytes([request[-1] ^ 1])
    with pytest.raises(stun.StunError, match="FINGERPRINT"):
        stun.answer(bad, ("192.0.2.1", 32853))


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    body = struct.pack("!HH", 0x0042, 4) + b"abcd"
    reply = stun.answer(header(0x0001, len(body), TXID_V4) + body, ("192.0.2.1", 1))
    assert struct.unpack_from("!H", reply)[0] == 0x0111
    found = attrs(reply)
    assert found[0x0009][2:4] == bytes([4, 20])  # class 4, number 20: 420
    assert found[0x000A] == b"\x00\x42"


@pytest.mark.parametrize(
    ("datagram", "reason"),
    [
        (header(0x0001, 0, TXID_V4)[:19], "shorter"),
        (header(0x0001, 0, TXID_V4, cookie=0x12345678), "cookie"),
        (header(0x0001, 4, TXID_V4), "length"),
        (header(0x0001, 2, TXID_V4) + b"\x00\x00", "length"),
        (header(0x0101, 0, TXID_V4), "not a request"),  # a success response
        (header(0x0011, 0, TXID_V4), "not a request"),  # an indication
        (header(0x0003, 0, TXID_V4), "not Binding"),  # TURN Allocate
        (header(0x0001, 4, TXID_V4) + struct.pack("!HH", 0x8022, 8), "past"),
    ],
)
def test_not_a_binding_request_is_refused_with_a_reason(datagram: bytes, reason: str) -> None:
    with pytest.raises(stun.StunError, match=reason):
        stun.answer(datagram, ("192.0.2.1", 5060))


def test_demultiplexing() -> None:
    assert stun.is_stun(stun.binding_request(TXID_V4))
    assert not stun.is_stun(b"OPTIONS sip:a@b SIP/2.0\r\n")
    assert not stun.is_stun(b"SIP/2.0 200 OK\r\n")
    assert not stun.is_stun(b"\r\n\r\n")  # keep-alive / leading CRLF: SIP's
    assert not stun.is_stun(b"")
    # RFC 4475 §3.1.1.4: a method may begin with "!" (0x21, top bits zero): SIP's
    assert not stun.is_stun(b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_un")
    assert not stun.is_stun(b"%25 sip:a@b SIP/2.0\r\n\r\n")


@given(st.binary(max_size=200))
def test_any_datagram_is_answered_or_refused_never_crashes(data: bytes) -> None:
    try:
        reply = stun.answer(data, ("127.0.0.1", 5060))
    except stun.StunError:
        return
    assert struct.unpack_from("!H", reply)[0] in (0x0101, 0x0111)
    assert reply[4:20] == data[4:20]


@given(
    st.binary(min_size=12, max_size=12),
    st.integers(0, 65535),
    st.ip_addresses().filter(lambda ip: getattr(ip, "ipv4_mapped", None) is None),
)
def test_xor_mapped_address_round_trips(txid: bytes, port: int, ip: object) -> None:
    value = stun.xor_mapped_address(str(ip), port, txid)
    assert decode_xma(value, txid) == (str(ip), port)

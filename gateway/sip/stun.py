"""The limited STUN server of RFC 5626 §8: Binding requests on the SIP UDP port.

Pure: `is_stun(datagram)` demultiplexes, `answer(datagram, source)` returns the bytes to
send back (or None) and `StunError` says why a datagram was dropped.

A client that registered with outbound keeps its UDP flow (its NAT binding) alive with
STUN Binding requests to the registrar (RFC 5626 §4.4.2) and watches the
XOR-MAPPED-ADDRESS of the answer: a change is a flow failure. The server side is small
(RFC 5626 §8): answer a valid Binding request with a Binding success response carrying
XOR-MAPPED-ADDRESS (RFC 5389 §15.2), nothing else.

Demultiplexing (RFC 5626 §8, RFC 7983 §7): the two most significant bits of every STUN
message are zero (RFC 5389 §6), while a SIP message starts with a letter, or with the
CR/LF/space allowed before it (RFC 3261 §7.5) and used as keep-alives; those go to SIP.

Checks (RFC 5389 §7.3): 20-byte header, the length a multiple of 4 and equal to what
follows, the magic cookie 0x2112A442, well-formed attributes, a FINGERPRINT (if any) that
matches. A request with an unknown comprehension-required attribute gets a 420 error
response listing it (§7.3.1); anything else that is not a Binding request (another
method, an indication, a response) is dropped (§7.3.2-§7.3.4: not ours to answer).
No authentication: this usage has none (RFC 5626 §8, "do not require any attributes").
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "BINDING_REQUEST",
    "BINDING_SUCCESS",
    "MAGIC_COOKIE",
    "StunError",
    "StunMessage",
    "answer",
    "binding_request",
    "is_stun",
    "parse",
    "xor_mapped_address",
]

MAGIC_COOKIE = 0x2112A442
BINDING_REQUEST = 0x0001  # method Binding, class request (RFC 5389 §18.1)
BINDING_SUCCESS = 0x0101
BINDING_ERROR = 0x0111
_HEADER = struct.Struct("!HHI12s")
_HEADER_SIZE = 20
_CLASS_MASK = 0x0110  # C1 (bit 8) and C0 (bit 4) of the message type (§6)
_REQUEST_CLASS = 0x0000

# Attributes (RFC 5389 §18.2)
XOR_MAPPED_ADDRESS = 0x0020
ERROR_CODE = 0x0009
UNKNOWN_ATTRIBUTES = 0x000A
FINGERPRINT = 0x8028
_FINGERPRINT_XOR = 0x5354554E  # §15.5
# Comprehension-required attributes we understand well enough to ignore: no credentials
# are used by this usage (USERNAME, MESSAGE-INTEGRITY, REALM, NONCE), and the address
# attributes a client has no reason to send but that do not change the answer.
_KNOWN_REQUIRED = frozenset({0x0001, 0x0006, 0x0008, 0x0014, 0x0015, 0x0020})
# Bytes below 0x40 a SIP datagram may start with: CR/LF/SP/HT before a message (§7.5) and
# the token characters a method may begin with (§25.1).
_SIP_FIRST = frozenset(b"\r\n \t!%'*+-.0123456789")
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")


class StunError(ValueError):
    """Why a datagram that looked like STUN was dropped (for the log line)."""


@dataclass(frozen=True, slots=True)
class StunMessage:
    type: int
    transaction_id: bytes  # 96 bits
    attributes: tuple[tuple[int, bytes], ...] = ()

    @property
    def method(self) -> int:
        t = self.type
        return (t & 0x000F) | ((t & 0x00E0) >> 1) | ((t & 0x3E00) >> 2)

    @property
    def is_request(self) -> bool:
        return self.type & _CLASS_MASK == _REQUEST_CLASS


def is_stun(datagram: bytes) -> bool:
    """Does this datagram go to STUN rather than SIP? Top two bits zero (RFC 5389 §6), and
    either a first byte no SIP message can start with or the magic cookie at bytes 4-7
    (§7.3). The top bits alone do not decide: a SIP method may begin with a token character
    below 0x40 ("!", "%", "'", "*", "+", "-", ".", a digit: RFC 3261 §25.1, RFC 4475
    §3.1.1.4), and SIP allows CR/LF before a message (§7.5)."""
    if not datagram or datagram[0] >= 0x40:
        return False
    return datagram[0] not in _SIP_FIRST or datagram[4:8] == _COOKIE_BYTES


def _pad(n: int) -> int:
    return (n + 3) & ~3


def parse(datagram: bytes) -> StunMessage:
    """A STUN message (RFC 5389 §6, §15); StunError when it is not one."""
    if len(datagram) < _HEADER_SIZE:
        raise StunError(f"{len(datagram)} bytes: shorter than the 20-byte STUN header")
    mtype, length, cookie, txid = _HEADER.unpack_from(datagram)
    if mtype & 0xC000:
        raise StunError("the two most significant bits are not zero")
    if cookie != MAGIC_COOKIE:
        raise StunError(f"magic cookie 0x{cookie:08x}, not 0x{MAGIC_COOKIE:08x}")
    if length % 4 or _HEADER_SIZE + length != len(datagram):
        raise StunError(f"length {length} does not match the {len(datagram)}-byte datagram")
    attributes: list[tuple[int, bytes]] = []
    offset = _HEADER_SIZE
    while offset < len(datagram):
        if offset + 4 > len(datagram):
            raise StunError("truncated attribute header")
        atype, alen = struct.unpack_from("!HH", datagram, offset)
        end = offset + 4 + alen
        if end > len(datagram):
            raise StunError(f"attribute 0x{atype:04x} runs past the message")
        if atype == FINGERPRINT:  # §15.5: last, CRC-32 of what precedes it
            if end != len(datagram) or alen != 4:
                raise StunError("FINGERPRINT is not the last 4-byte attribute")
            (crc,) = struct.unpack_from("!I", datagram, offset + 4)
            if crc != (zlib.crc32(datagram[:offset]) ^ _FINGERPRINT_XOR):
                raise StunError("FINGERPRINT does not match")
        attributes.append((atype, datagram[offset + 4 : end]))
        offset = _pad(end) if atype != FINGERPRINT else end
    if offset != len(datagram):
        raise StunError("attribute padding runs past the message")
    return StunMessage(mtype, txid, tuple(attributes))


def xor_mapped_address(address: str, port: int, transaction_id: bytes) -> bytes:
    """The XOR-MAPPED-ADDRESS value (RFC 5389 §15.2) for `address`:`port`."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    xport = port ^ (MAGIC_COOKIE >> 16)
    if isinstance(ip, ipaddress.IPv4Address):
        xaddr = int(ip) ^ MAGIC_COOKIE
        return struct.pack("!BBHI", 0, 0x01, xport, xaddr)
    key = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + transaction_id, "big")
    return struct.pack("!BBH", 0, 0x02, xport) + (int(ip) ^ key).to_bytes(16, "big")


def _attribute(atype: int, value: bytes) -> bytes:
    return struct.pack("!HH", atype, len(value)) + value + b"\x00" * (_pad(len(value)) - len(value))


def _message(mtype: int, transaction_id: bytes, *attributes: bytes) -> bytes:
    body = b"".join(attributes)
    return _HEADER.pack(mtype, len(body), MAGIC_COOKIE, transaction_id) + body


def binding_request(transaction_id: bytes) -> bytes:
    """A Binding request with no attributes (what a client sends as a keep-alive)."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 96 bits")
    return _message(BINDING_REQUEST, transaction_id)


def _unknown_attributes_error(message: StunMessage, unknown: list[int]) -> bytes:
    """420 (Unknown Attribute) error response listing them (RFC 5389 §7.3.1, §15.6, §15.9)."""
    reason = b"Unknown Attribute"
    error = struct.pack("!HBB", 0, 4, 20) + reason
    listed = b"".join(struct.pack("!H", a) for a in unknown)
    return _message(
        BINDING_ERROR,
        message.transaction_id,
        _attribute(ERROR_CODE, error),
        _attribute(UNKNOWN_ATTRIBUTES, listed),
    )


def answer(datagram: bytes, source: tuple[str, int]) -> bytes:
    """The response to a Binding request from `source` (the address and port it came
    from: the client's public, NAT-mapped address). StunError when the datagram is not
    a well-formed Binding request, with the reason."""
    message = parse(datagram)
    if not message.is_request:
        raise StunError(f"message type 0x{message.type:04x} is not a request")
    if message.method != 0x001:
        raise StunError(f"method 0x{message.method:03x} is not Binding")
    unknown = [a for a, _ in message.attributes if a < 0x8000 and a not in _KNOWN_REQUIRED]
    if unknown:
        return _unknown_attributes_error(message, unknown)
    mapped = xor_mapped_address(source[0], source[1], message.transaction_id)
    return _message(BINDING_SUCCESS, message.transaction_id, _attribute(XOR_MAPPED_ADDRESS, mapped))

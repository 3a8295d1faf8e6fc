"""The bare baseline for the pager benchmarks: the gateway's I/O without its logic.

One asyncio process that does what the gateway does on the wire for a pager message, and
nothing else, so that `gateway rate / baseline rate` says how much of the machine's limit
(kernel, Prosody, generators, the asyncio loop itself) the gateway reaches:

- SIP -> XMPP: a UDP datagram that starts with `MESSAGE ` is answered with a canned
  `200 OK` (its Via, From, To, Call-ID and CSeq lines copied, as any UAS must for the
  client to match it, RFC 3261 §8.2.6.2) and a canned `<message/>` is written to a real
  XEP-0114 component stream (handshake done), its `to` taken from the Request-URI and its
  body copied (XML-escaped) from the datagram's body.
- XMPP -> SIP: each `<message>` read from the component stream becomes one canned
  `MESSAGE` datagram to `--sip-target`, its body copied from the stanza's `<body>`.
  Responses to those (and every other datagram) are read and dropped: no transactions,
  no retransmissions, no parsing beyond finding the lines to copy.

    python -m bench.baseline --sip-port P --component-port C --domain sip.localhost \
        --secret S [--sip-target 127.0.0.1:U] [--seconds 600]

It prints `baseline ready` once the component handshake succeeded and the UDP socket is
bound; it exits on SIGTERM/SIGINT or after `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import re
import signal
import sys
from collections.abc import Sequence
from xml.sax.saxutils import escape

__all__ = ["canned_200", "canned_message", "canned_stanza", "handshake_digest", "main"]

LOOPBACK = "127.0.0.1"
_COPIED = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")
_STREAM_ID = re.compile(rb"<stream:stream[^>]*?\bid=['\"]([^'\"]+)['\"]")
_BODY = re.compile(rb"<body>(.*?)</body>", re.DOTALL)
_TO_USER = re.compile(rb"\bto=['\"]([^'\"@/]+)@")


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: hex SHA-1 of the stream id concatenated with the shared secret."""
    return hashlib.sha1((stream_id + secret).encode()).hexdigest()


def canned_200(datagram: bytes) -> bytes:
    """A 200 OK carrying the request's Via/From/To/Call-ID/CSeq lines (To gets a tag)."""
    head = datagram.partition(b"\r\n\r\n")[0]
    out = [b"SIP/2.0 200 OK"]
    for line in head.split(b"\r\n")[1:]:
        name = line.partition(b":")[0].strip().lower()
        if name in _COPIED:
            out.append(line + b";tag=bare" if name in (b"to", b"t") else line)
    out += [b"Content-Length: 0", b"", b""]
    return b"\r\n".join(out)


def canned_stanza(datagram: bytes, domain: str, serial: int) -> bytes:
    """The `<message/>` for a MESSAGE: to = Request-URI user@host, body = the SIP body."""
    start, _, rest = datagram.partition(b"\r\n")
    uri = start.split(b" ", 2)[1]
    to = uri.partition(b":")[2].partition(b";")[0]
    body = rest.partition(b"\r\n\r\n")[2]
    text = escape(body.decode("utf-8", "replace"))
    return (
        f"<message from='romeo@{domain}' to='{to.decode()}' id='b{serial}'>"
        f"<body>{text}</body></message>"
    ).encode()


def canned_message(body: bytes, user: bytes, domain: str, serial: int) -> bytes:
    """A MESSAGE datagram to `user`@domain with `body`."""
    return b"\r\n".join(
        [
            b"MESSAGE sip:" + user + b"@" + domain.encode() + b" SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK};branch=z9hG4bKbare{serial}".encode(),
            b"Max-Forwards: 70",
            f"From: <sip:juliet@localhost>;tag=b{serial}".encode(),
            b"To: <sip:" + user + b"@" + domain.encode() + b">",
            f"Call-ID: bare{serial}@{LOOPBACK}".encode(),
            b"CSeq: 1 MESSAGE",
            b"Content-Type: text/plain;charset=UTF-8",
            f"Content-Length: {len(body)}".encode(),
            b"",
            body,
        ]
    )


def _unescape(text: bytes) -> bytes:
    if b"&" not in text:
        return text
    return (
        text.replace(b"&lt;", b"<")
        .replace(b"&gt;", b">")
        .replace(b"&quot;", b'"')
        .replace(b"&apos;", b"'")
        .replace(b"&amp;", b"&")
    )


class _Sip(asyncio.DatagramProtocol):
    def __init__(self, bare: Baseline) -> None:
        self.bare = bare

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if data.startswith(b"MESSAGE "):
            self.bare.sip_message(data, addr)


class Baseline:
    """The component stream and the UDP socket, joined by two canned transformations."""

    def __init__(self, domain: str, sip_target: tuple[str, int] | None) -> None:
        self.domain = domain
        self.sip_target = sip_target
        self.serial = itertools.count(1)
        self.udp: asyncio.DatagramTransport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.counts = {"sip_in": 0, "xmpp_in": 0}

    async def connect(self, port: int, secret: str) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='" + self.domain.encode() + b"'>"
        )
        buf = b""
        while (m := _STREAM_ID.search(buf)) is None:
            chunk = await reader.read(4096)
            if not chunk:
                raise ConnectionError(f"component stream closed before its header: {buf!r}")
            buf += chunk
        digest = handshake_digest(m.group(1).decode(), secret)
        writer.write(f"<handshake>{digest}</handshake>".encode())
        while b"<handshake" not in buf.partition(m.group(0))[2]:
            chunk = await reader.read(4096)
            if not chunk or b"stream:error" in chunk:
                raise ConnectionError(f"component handshake refused: {chunk!r}")
            buf += chunk
        self.writer = writer
        return reader

    def sip_message(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.udp is not None and self.writer is not None
        self.counts["sip_in"] += 1
        self.udp.sendto(canned_200(data), addr)
        self.writer.write(canned_stanza(data, self.domain, next(self.serial)))

    async def read_stanzas(self, reader: asyncio.StreamReader) -> None:
        """Every complete `<message>` becomes one MESSAGE datagram; the rest is dropped."""
        buf = b""
        while chunk := await reader.read(65536):
            buf += chunk
            end = buf.rfind(b"</message>")
            if end < 0:
                continue
            done, buf = buf[: end + 10], buf[end + 10 :]
            for stanza in done.split(b"</message>"):
                self._stanza(stanza)

    def _stanza(self, stanza: bytes) -> None:
        body = _BODY.search(stanza)
        if body is None or self.sip_target is None or self.udp is None:
            return
        self.counts["xmpp_in"] += 1
        user = _TO_USER.search(stanza)
        datagram = canned_message(
            _unescape(body.group(1)),
            user.group(1) if user else b"romeo",
            self.domain,
            next(self.serial),
        )
        self.udp.sendto(datagram, self.sip_target)


async def serve(args: argparse.Namespace) -> int:
    target = None
    if args.sip_target:
        host, _, port = args.sip_target.rpartition(":")
        target = (host, int(port))
    bare = Baseline(args.domain, target)
    reader = await bare.connect(args.component_port, args.secret)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _Sip(bare), local_addr=(LOOPBACK, args.sip_port)
    )
    bare.udp = transport
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("baseline ready", flush=True)
    reading = asyncio.ensure_future(bare.read_stanzas(reader))
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait({reading, waiting}, timeout=args.seconds, return_when="FIRST_COMPLETED")
    for task in (reading, waiting):
        task.cancel()
    transport.close()
    print(f"baseline done sip_in={bare.counts['sip_in']} xmpp_in={bare.counts['xmpp_in']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--domain", default="sip.localhost")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--sip-target", default="", help="host:port for XMPP->SIP MESSAGEs")
    ap.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    return asyncio.run(serve(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

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

With `--fanout` (the `presence-fanout` scenario's baseline) the stream side is presence
instead: each `<presence/>` Prosody writes to a watcher JID `w<i>@<domain>` (available or
unavailable; other types are dropped) becomes one canned NOTIFY-sized datagram to
`--sip-target` (Call-ID `fw<i>-bare@...`, as `bench.watchers` numbers its watchers, a
PIDF body carrying the stanza's `<status>` text), and every `200` datagram is counted. No
dialogs, no CSeq state, no PIDF mapping, no retransmissions. Its last line then adds
`fanout={...}` (JSON): presence stanzas in, NOTIFYs out, 200s in, the wall-clock times
(`time.time()`) of the last stanza and the last 200, and per `<status>` text the number
of stanzas that carried it and when the first and the last were read.

It prints `baseline ready` once the component handshake succeeded and the UDP socket is
bound; it exits on SIGTERM/SIGINT or after `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import re
import signal
import socket
import sys
import time
from collections.abc import Sequence
from xml.sax.saxutils import escape

__all__ = [
    "canned_200",
    "canned_message",
    "canned_notify",
    "canned_stanza",
    "handshake_digest",
    "main",
]

LOOPBACK = "127.0.0.1"
_COPIED = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")
_STREAM_ID = re.compile(rb"<stream:stream[^>]*?\bid=['\"]([^'\"]+)['\"]")
_BODY = re.compile(rb"<body>(.*?)</body>", re.DOTALL)
_TO_USER = re.compile(rb"\bto=['\"]([^'\"@/]+)@")
_PRESENCE = re.compile(rb"<presence\b[^>]*?(?:/>|>.*?</presence>)", re.DOTALL)
_TO_WATCHER = re.compile(rb"\bto=['\"]w(\d+)@")
_TYPE = re.compile(rb"\btype=['\"]([^'\"]*)['\"]")
_STATUS = re.compile(rb"<status>(.*?)</status>", re.DOTALL)
# The gateway's PIDF (mappings/pidf.py) has about this shape; the note carries <status>.
_PIDF = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n"
    b"<presence xmlns='urn:ietf:params:xml:ns:pidf' "
    b"xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' "
    b"xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' entity='pres:juliet@localhost'>"
    b"<tuple id='bare'><status><basic>open</basic></status><note>%s</note></tuple>"
    b"<dm:person id='p'><rpid:activities><rpid:away/></rpid:activities></dm:person>"
    b"</presence>"
)


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


def canned_notify(index: bytes, domain: str, sip_port: int, serial: int, note: bytes) -> bytes:
    """A NOTIFY datagram to watcher `w<index>` (Call-ID `fw<index>-bare@...`, as
    `bench.watchers` numbers them) with a PIDF-sized body carrying `note`."""
    body = _PIDF % note
    w = b"w" + index
    return b"\r\n".join(
        [
            b"NOTIFY sip:" + w + f"@{LOOPBACK} SIP/2.0".encode(),
            f"Via: SIP/2.0/UDP {LOOPBACK}:{sip_port};branch=z9hG4bKbare{serial}".encode(),
            b"Max-Forwards: 70",
            b"From: <sip:juliet@localhost>;tag=bare",
            b"To: <sip:" + w + b"@" + domain.encode() + b">;tag=f" + index,
            b"Call-ID: fw" + index + f"-bare@{LOOPBACK}".encode(),
            f"CSeq: {serial} NOTIFY".encode(),
            f"Contact: <sip:juliet@{LOOPBACK}:{sip_port}>".encode(),
            b"Event: presence",
            b"Subscription-State: active;expires=3600",
            b"Content-Type: application/pidf+xml",
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
        elif data.startswith(b"SIP/2.0 200 "):
            self.bare.fanout["ok"] += 1
            self.bare.fanout["last_ok"] = time.time()


class Baseline:
    """The component stream and the UDP socket, joined by two canned transformations."""

    def __init__(self, domain: str, sip_target: tuple[str, int] | None) -> None:
        self.domain = domain
        self.sip_target = sip_target
        self.serial = itertools.count(1)
        self.udp: asyncio.DatagramTransport | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.counts = {"sip_in": 0, "xmpp_in": 0}
        self.sip_port = 0
        self.fanout: dict[str, float] = dict.fromkeys(
            ("presence_in", "notify_out", "ok", "last_presence", "last_ok"), 0
        )
        # per <status> text: [stanzas, time of the first, time of the last]
        self.notes: dict[str, list[float]] = {}

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

    async def read_presence(self, reader: asyncio.StreamReader) -> None:
        """Every complete `<presence>` to a watcher becomes one NOTIFY datagram."""
        buf = b""
        while chunk := await reader.read(262144):
            buf += chunk
            end = 0
            for m in _PRESENCE.finditer(buf):
                self._presence(m.group(0))
                end = m.end()
            buf = buf[end:]

    def _presence(self, stanza: bytes) -> None:
        head = stanza[: stanza.find(b">") + 1]
        to = _TO_WATCHER.search(head)
        kind = _TYPE.search(head)
        if to is None or self.sip_target is None or self.udp is None:
            return
        if kind is not None and kind.group(1) != b"unavailable":
            return
        now = time.time()
        self.fanout["presence_in"] += 1
        self.fanout["last_presence"] = now
        status = _STATUS.search(stanza)
        note = status.group(1) if status else b""
        if (seen := self.notes.get(text := note.decode(errors="replace"))) is None:
            self.notes[text] = [1, now, now]
        else:
            seen[0] += 1
            seen[2] = now
        datagram = canned_notify(to.group(1), self.domain, self.sip_port, next(self.serial), note)
        self.udp.sendto(datagram, self.sip_target)
        self.fanout["notify_out"] += 1

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
    bare.sip_port = args.sip_port
    if args.fanout:  # 10,000 200s at once: SO_RCVBUFFORCE (Linux 33), else SO_RCVBUF
        sock = transport.get_extra_info("socket")
        for opt in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, 16 << 20)
                break
            except OSError:
                continue
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("baseline ready", flush=True)
    read = bare.read_presence if args.fanout else bare.read_stanzas
    reading = asyncio.ensure_future(read(reader))
    waiting = asyncio.ensure_future(stop.wait())
    await asyncio.wait({reading, waiting}, timeout=args.seconds, return_when="FIRST_COMPLETED")
    for task in (reading, waiting):
        task.cancel()
    transport.close()
    done = f"baseline done sip_in={bare.counts['sip_in']} xmpp_in={bare.counts['xmpp_in']}"
    if args.fanout:
        done += f" fanout={json.dumps({**bare.fanout, 'notes': bare.notes})}"
    print(done, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    ap.add_argument("--sip-port", type=int, required=True)
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--domain", default="sip.localhost")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--sip-target", default="", help="host:port for XMPP->SIP MESSAGEs")
    ap.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    ap.add_argument(
        "--fanout", action="store_true", help="presence -> NOTIFY to --sip-target (fan-out)"
    )
    return asyncio.run(serve(ap.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

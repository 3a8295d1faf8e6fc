"""An MSRP test client written from RFC 4975/4976 alone (issue 18: it must not import the
gateway's MSRP stack, so the tests are not the stack checking itself).

Deliberately simple: messages are framed by searching the end-line of the transaction id
on the start line (RFC 4975 §7.1), headers are split on ": ", SENDs are answered 200
(unless `auto_answer` is off), REPORTs and responses are collected. `raw()` writes any
bytes, for the bad-input tests. `auth()` does the RFC 4976 §5.1 AUTH exchange with an
RFC 2617 digest (qop=auth, the rightmost To-Path URI as digest URI, §9.1).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import ssl
import string
from dataclasses import dataclass, field

_ALNUM = string.ascii_letters + string.digits


def new_id(n: int = 12) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(n))


@dataclass
class Msg:
    """One MSRP message as read off the wire."""

    tid: str
    method: str | None  # None for a response
    code: int | None
    comment: str | None
    headers: list[tuple[str, str]]
    body: bytes | None
    flag: str

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


def parse(frame: bytes) -> Msg:
    head = frame.split(b"\r\n", 1)[0]
    parts = head.decode().split(" ", 3)
    assert parts[0] == "MSRP", head
    tid = parts[1]
    end = b"-------" + tid.encode()
    at = frame.rindex(end)
    flag = chr(frame[at + len(end)])
    hdr_end = frame.find(b"\r\n\r\n", 0, at)
    if hdr_end >= 0:
        headers_blob = frame[len(head) + 2 : hdr_end]
        body: bytes | None = frame[hdr_end + 4 : at - 2]
    else:
        headers_blob = frame[len(head) + 2 : at - 2] if at > len(head) + 2 else b""
        body = None
    headers = []
    for line in headers_blob.decode().split("\r\n"):
        if line:
            name, _, value = line.partition(":")
            headers.append((name, value.lstrip(" ")))
    if parts[2].isdigit():
        comment = parts[3] if len(parts) > 3 else None
        return Msg(tid, None, int(parts[2]), comment, headers, body, flag)
    return Msg(tid, parts[2], None, None, headers, body, flag)


def build(tid: str, method: str, headers: list[tuple[str, str]], body: bytes | None = None,
          content_type: str | None = None, flag: str = "$") -> bytes:  # fmt: skip
    lines = [f"MSRP {tid} {method}"] + [f"{n}: {v}" for n, v in headers]
    out = "\r\n".join(lines).encode() + b"\r\n"
    if body is not None:
        out += f"Content-Type: {content_type}\r\n\r\n".encode() + body + b"\r\n"
    return out + f"-------{tid}{flag}\r\n".encode()


def md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass
class MsrpClient:
    """One connection; `path` is this client's own URI (its SDP a=path)."""

    path: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    auto_answer: bool = True
    messages: asyncio.Queue[Msg] = field(default_factory=asyncio.Queue)  # SEND requests
    reports: asyncio.Queue[Msg] = field(default_factory=asyncio.Queue)
    responses: asyncio.Queue[Msg] = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _buf: bytes = b""

    async def connect(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port, ssl=tls)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def attach(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._task = asyncio.get_running_loop().create_task(self._run())

    def peer_certificate(self) -> bytes | None:
        assert self.writer is not None
        obj = self.writer.get_extra_info("ssl_object")
        return None if obj is None else obj.getpeercert(binary_form=True)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()

    def raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def send(self, to_path: str, body: bytes | None, content_type: str = "text/plain",
             *, message_id: str | None = None, byte_range: str | None = None,
             flag: str = "$", success_report: bool = True, tid: str | None = None,
             from_path: str | None = None) -> tuple[str, str]:  # fmt: skip
        """Write one SEND chunk; returns (transaction id, Message-ID)."""
        tid = tid or new_id()
        mid = message_id or new_id()
        headers = [("To-Path", to_path), ("From-Path", from_path or self.path),
                   ("Message-ID", mid)]  # fmt: skip
        if body is not None:
            size = len(body)
            headers.append(("Byte-Range", byte_range or f"1-{size}/{size}"))
        if success_report:
            headers.append(("Success-Report", "yes"))
        self.raw(build(tid, "SEND", headers, body, content_type if body is not None else None,
                       flag))  # fmt: skip
        return tid, mid

    def report(self, send: Msg, code: int = 200) -> None:
        """A REPORT for a received SEND (RFC 4975 §7.1.2)."""
        body = send.body or b""
        headers = [("To-Path", send.get("From-Path") or ""), ("From-Path", self.path),
                   ("Message-ID", send.get("Message-ID") or ""),
                   ("Byte-Range", f"1-{len(body)}/{len(body)}"),
                   ("Status", f"000 {code} {'OK' if code == 200 else 'Failed'}")]  # fmt: skip
        self.raw(build(new_id(), "REPORT", headers))

    async def auth(self, relay: str, username: str, password: str) -> tuple[str, int | None]:
        """RFC 4976 §5.1: AUTH, 401, AUTH with Authorization; returns (Use-Path, Expires)."""
        tid = new_id()
        self.raw(build(tid, "AUTH", [("To-Path", relay), ("From-Path", self.path)]))
        first = await self.response(tid)
        if first.code == 200:
            return first.get("Use-Path") or "", _int(first.get("Expires"))
        assert first.code == 401, (first.code, first.comment)
        challenge = first.get("WWW-Authenticate") or ""
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge))
        cnonce, nc = new_id(8), "00000001"
        ha1 = md5(f"{username}:{params['realm']}:{password}")
        ha2 = md5(f"AUTH:{relay}")
        resp = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        value = (f'Digest username="{username}", realm="{params["realm"]}", '
                 f'nonce="{params["nonce"]}", uri="{relay}", qop=auth, nc={nc}, '
                 f'cnonce="{cnonce}", response="{resp}"')  # fmt: skip
        tid = new_id()
        self.raw(build(tid, "AUTH", [("To-Path", relay), ("From-Path", self.path),
                                     ("Authorization", value)]))  # fmt: skip
        second = await self.response(tid)
        assert second.code == 200, (second.code, second.comment)
        return second.get("Use-Path") or "", _int(second.get("Expires"))

    async def response(self, tid: str, timeout: float = 10.0) -> Msg:
        """The response to transaction `tid` (others are dropped)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.responses.get()
                if msg.tid == tid:
                    return msg

    async def message(self, timeout: float = 10.0) -> Msg:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_report(self, timeout: float = 10.0) -> Msg:
        return await asyncio.wait_for(self.reports.get(), timeout)

    async def _run(self) -> None:
        assert self.reader is not None
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self._buf += data
                while (frame := self._cut()) is not None:
                    self._dispatch(parse(frame))
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.closed.set()

    def _cut(self) -> bytes | None:
        nl = self._buf.find(b"\r\n")
        if nl < 0:
            return None
        tid = self._buf[:nl].split(b" ")[1]
        m = re.search(rb"\r\n-------" + re.escape(tid) + rb"[$+#]\r\n", self._buf)
        if m is None:
            return None
        frame, self._buf = self._buf[: m.end()], self._buf[m.end() :]
        return frame

    def _dispatch(self, msg: Msg) -> None:
        if msg.method is None:
            self.responses.put_nowait(msg)
        elif msg.method == "REPORT":
            self.reports.put_nowait(msg)
        elif msg.method == "SEND":
            if self.auto_answer and msg.get("Failure-Report") != "no":
                to = (msg.get("From-Path") or "").split(" ")[0]
                self.raw(build(msg.tid, "200 OK", [("To-Path", to), ("From-Path", self.path)]))
            self.messages.put_nowait(msg)


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


async def listen(host: str, path_host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
                 ) -> tuple[asyncio.Server, asyncio.Queue[MsrpClient], int]:  # fmt: skip
    """A passive client: each accepted connection becomes an MsrpClient on the queue."""
    accepted: asyncio.Queue[MsrpClient] = asyncio.Queue()
    holder: dict[str, int] = {}

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        scheme = "msrps" if tls else "msrp"
        client = MsrpClient(f"{scheme}://{path_host}:{holder['port']}/passive1;tcp")
        client.attach(reader, writer)
        await accepted.put(client)

    server = await asyncio.start_server(on_conn, host, 0, ssl=tls)
    holder["port"] = server.sockets[0].getsockname()[1]
    return server, accepted, holder["port"]

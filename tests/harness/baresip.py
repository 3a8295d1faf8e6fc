"""A headless baresip (Debian 1.0) driven from asyncio, for registrar and messaging tests.

The config directory is a temporary one: no audio or video modules, `account` and
`contact` for accounts and the messaging target, `menu` for the commands, `ctrl_tcp`
for commands and events (netstring JSON: `{"command", "params", "token"}` in,
`{"response": true, "ok", "data", "token"}` and `{"event": true, "type", ...}` out) and
`cons` (TCP console) because baresip 1.0 shows received MESSAGEs only through the UI
output (`<peer>: "<text>"`), not as a ctrl_tcp event.

- The account is created with `uanew` after the ctrl connection is up, so the
  REGISTER_OK / REGISTER_FAIL events cannot be missed.
- `send_message(uri, text)`: baresip 1.0 messages only its "current contact", so the
  targets are listed in its contacts file and selected with `contact_next`.
- SIP binds to 127.0.0.1 (TLS on the SIP port + 1); DNS points at a closed loopback
  port, so nothing leaves the machine. Accounts use an `outbound` proxy (the gateway's
  address) so the AOR domain is never resolved. `sip_cafile` makes TLS verify.
- The process runs in its own session and is stopped with its whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness import LOOPBACK, log_tail, require_binary, stop_group
from tests.harness.ports import free_port, free_port_block

START_TIMEOUT = 30.0
_MESSAGE_RE = re.compile(r'^\r?(sips?:\S+): "(.*)"$')


class BaresipError(RuntimeError):
    """baresip did not start, refused a command, or an expected event did not come."""


@dataclass(frozen=True)
class ReceivedMessage:
    peer: str  # the sender's URI as baresip shows it
    text: str


def account_line(
    aor: str,
    password: str | None,
    proxy: tuple[str, int],
    *,
    transport: str = "udp",
    regint: int = 600,
    auth_user: str | None = None,
) -> str:
    """A baresip account: `<aor;transport=..>;auth_pass=..;outbound="sip:proxy";regint=..`."""
    host, port = proxy
    tparam = "" if transport == "udp" else f";transport={transport}"
    line = f'<{aor}{tparam}>;outbound="sip:{host}:{port}{tparam}";regint={regint}'
    if password is not None:
        line += f";auth_pass={password}"
    if auth_user is not None:
        line += f";auth_user={auth_user}"
    return line


class Baresip:
    """One baresip process. `await start()`, then `register`, `send_message`,
    `wait_message`; `await stop()` (also a no-op when it never started)."""

    def __init__(
        self,
        workdir: Path,
        *,
        contacts: Sequence[str] = (),
        ca_file: Path | None = None,
        certificate: Path | None = None,
        sip_trace: bool = True,
    ) -> None:
        self.workdir = workdir
        self.contacts = list(contacts)
        self.ca_file = ca_file
        self.certificate = certificate
        self.sip_trace = sip_trace
        self.sip_port = 0
        self.log_path = workdir / "baresip.log"
        self.messages: list[ReceivedMessage] = []
        self.events: list[dict[str, Any]] = []
        self.console = ""
        self._parsed = 0  # console text up to here has been parsed
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._cons: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Event()
        self._tokens = 0

    # ------------------------------------------------------------------ lifecycle

    def _write_config(self, ctrl_port: int, cons_port: int) -> Path:
        conf = self.workdir / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port_block((0, 1))  # TLS listens on sip_listen + 1
        lines = [
            f"sip_listen\t{LOOPBACK}:{self.sip_port}",
            f"net_interface\t{LOOPBACK}",
            f"dns_server\t{LOOPBACK}:{free_port()}",  # closed: nothing is resolved
            "module_path\t/usr/lib/baresip/modules",
            "module\tcons.so",
            f"cons_listen\t{LOOPBACK}:{cons_port}",
            "module_app\taccount.so",
            "module_app\tcontact.so",
            "module_app\tmenu.so",
            "module_app\tctrl_tcp.so",
            f"ctrl_tcp_listen\t{LOOPBACK}:{ctrl_port}",
        ]
        if self.ca_file is not None:
            lines.append(f"sip_cafile\t{self.ca_file}")
        if self.certificate is not None:
            lines.append(f"sip_certificate\t{self.certificate}")
        (conf / "config").write_text("\n".join(lines) + "\n")
        (conf / "accounts").write_text("")
        (conf / "contacts").write_text("".join(f"<{c}>\n" for c in self.contacts))
        return conf

    async def start(self) -> Baresip:
        binary = require_binary("baresip")
        self.workdir.mkdir(parents=True, exist_ok=True)
        ctrl_port, cons_port = free_port(), free_port()
        conf = self._write_config(ctrl_port, cons_port)
        args = [binary, "-f", str(conf)] + (["-s"] if self.sip_trace else [])
        with self.log_path.open("ab") as out:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        self._ctrl = await self._connect(ctrl_port, deadline)
        self._cons = await self._connect(cons_port, deadline)
        self._tasks = [
            asyncio.create_task(self._read_ctrl(self._ctrl[0])),
            asyncio.create_task(self._read_cons(self._cons[0])),
        ]
        return self

    async def _connect(
        self, port: int, deadline: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise BaresipError(f"baresip exited early\n{self.tail()}")
            try:
                return await asyncio.open_connection(LOOPBACK, port)
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"baresip not listening on {port}\n{self.tail()}") from None
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for conn in (self._ctrl, self._cons):
            if conn is not None:
                conn[1].close()
        self._ctrl = self._cons = None
        if self._proc is not None:
            await asyncio.to_thread(stop_group, self._proc)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        log = log_tail(self.log_path, lines)
        return f"--- {self.log_path}\n{log}\n--- console\n{self.console[-2000:]}"

    # ------------------------------------------------------------------ readers

    async def _read_ctrl(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                size = int((await reader.readuntil(b":"))[:-1])
                payload = await reader.readexactly(size + 1)  # the JSON and its ","
                item = json.loads(payload[:-1])
                if item.get("event"):
                    self.events.append(item)
                    self._poke()
                elif item.get("response"):
                    fut = self._pending.pop(str(item.get("token")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(item)

    async def _read_cons(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(4096):
                self.console += data.decode("utf-8", "replace")
                self._parse_console()
                self._poke()

    def _parse_console(self) -> None:
        end = self.console.rfind("\n")
        if end < self._parsed:
            return
        for line in self.console[self._parsed : end].split("\n"):
            m = _MESSAGE_RE.match(line.strip("\r"))
            if m:
                self.messages.append(ReceivedMessage(m.group(1), m.group(2)))
        self._parsed = end + 1

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ commands

    async def command(self, name: str, params: str = "", timeout: float = 10.0) -> str:
        """Run a menu command through ctrl_tcp; its output text (BaresipError if not ok)."""
        if self._ctrl is None:
            raise BaresipError("baresip not started")
        self._tokens += 1
        token = f"t{self._tokens}"
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        body = json.dumps({"command": name, "params": params, "token": token}).encode()
        self._ctrl[1].write(str(len(body)).encode() + b":" + body + b",")
        await self._ctrl[1].drain()
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BaresipError(f"no answer to {name!r} in {timeout}s\n{self.tail()}") from None
        if not reply.get("ok"):
            raise BaresipError(f"{name} {params!r} failed: {reply}")
        return str(reply.get("data", ""))

    async def _until(self, check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise BaresipError(f"no {what} within {timeout}s\n{self.tail()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_event(
        self, types: Sequence[str], *, after: int = 0, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first event of one of `types` at index >= `after` in `events`."""

        def check() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("type") in types), None)

        result: dict[str, Any] = await self._until(check, timeout, f"event {'/'.join(types)}")
        return result

    async def register(self, account: str, *, timeout: float = 30.0) -> dict[str, Any]:
        """Create the UA for `account` (see `account_line`) and wait for the outcome:
        the REGISTER_OK or REGISTER_FAIL event (its `param` is the status line)."""
        mark = len(self.events)
        await self.command("uanew", account)
        return await self.wait_event(("REGISTER_OK", "REGISTER_FAIL"), after=mark, timeout=timeout)

    async def send_message(self, uri: str, text: str) -> None:
        """MESSAGE `text` to `uri`, which must be one of `contacts`."""
        if uri not in self.contacts:
            raise BaresipError(f"{uri} is not in the contacts file")
        for _ in range(len(self.contacts) + 1):
            current = await self.command("contact_next")
            if uri in current:
                break
        else:
            raise BaresipError(f"cannot select contact {uri}")
        await self.command("message", text)

    async def wait_message(self, text: str, *, timeout: float = 30.0) -> ReceivedMessage:
        """The first received message whose text is `text`."""

        def check() -> ReceivedMessage | None:
            return next((m for m in self.messages if m.text == text), None)

        result: ReceivedMessage = await self._until(check, timeout, f"message {text!r}")
        return result

"""Linphone (Debian `linphone-cli`, liblinphone 5.1) as a headless SIP user agent.

Two front ends of the same engine, both driven through stdin/stdout:

- `LinphoneDaemon` (`linphone-daemon`): `register-status`, `message`, `unregister`; its
  events `message-received` and `message-state-changed` (Delivered, DeliveredToUser, ...)
  arrive on stdout between answers. It has no friend or presence commands.
- `Linphonec` (`linphonec`): `friend add`, `chat`; it prints "Friend <uri> is <status>"
  when a NOTIFY changes a friend's presence.

Each instance gets its own directory: HOME (liblinphone's message and friend databases
live under it), the linphonerc written by `linphonerc()` and liblinphone's full log
(`-l` / `--log`, SIP messages included). Everything is on 127.0.0.1: UDP only, the
account's `reg_proxy` and `reg_route` are the gateway's listener, so no domain is
resolved; no STUN, ICE or UPnP; no sound card is opened (none is needed for messages
and presence). The process runs in its own session and is stopped with its group.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tests.harness import LOOPBACK, log_tail, require_binary
from tests.harness.ports import free_port

START_TIMEOUT = 20.0
LIMIT = 20.0
PACKAGE = "linphone-cli"

T = TypeVar("T")


class LinphoneError(RuntimeError):
    """Linphone did not start, refused a command, or an expected output did not come."""


@dataclass(frozen=True)
class Account:
    """romeo's account: `identity` and the digest credentials; `proxy` the gateway."""

    identity: str  # sip:user@domain
    proxy: tuple[str, int]
    password: str | None = None
    publish: bool = True  # PUBLISH presence (RFC 3903) while registered
    expires: int = 600

    @property
    def user(self) -> str:
        return self.identity.removeprefix("sip:").partition("@")[0]

    @property
    def domain(self) -> str:
        return self.identity.partition("@")[2]


def linphonerc(
    sip_port: int, account: Account, friends: Sequence[str] = (), rls_uri: str | None = None
) -> str:
    """A linphonerc for a loopback-only engine with one account and `friends` (URIs);
    with `rls_uri`, the friend list is subscribed to as one list there (RFC 4662/5367:
    liblinphone's `[sip] rls_uri`, its friend list's RLS address fallback)."""
    host, port = account.proxy
    route = f"<sip:{host}:{port};transport=udp>"
    sections: list[tuple[str, dict[str, object]]] = [
        (
            "sip",
            {
                "sip_port": sip_port,
                "sip_tcp_port": 0,  # 0: no listener
                "sip_tls_port": 0,
                "bind_address": LOOPBACK,
                "use_ipv6": 0,
                "default_proxy": 0,
                "ping_with_options": 0,
                "register_only_when_network_is_up": 0,
                "register_only_when_upnp_is_ok": 0,
                **({} if rls_uri is None else {"rls_uri": rls_uri}),
            },
        ),
        ("net", {"firewall_policy": 0, "stun_server": "", "upnp": 0}),
        ("video", {"capture": 0, "display": 0}),
        (
            "proxy_0",
            {
                "reg_identity": f"<{account.identity}>",
                "reg_proxy": route,
                "reg_route": route,
                "reg_expires": account.expires,
                "reg_sendregister": 1,
                "publish": int(account.publish),
                "dial_escape_plus": 0,
            },
        ),
    ]
    if account.password is not None:
        sections.append(
            (
                "auth_info_0",
                {
                    "username": account.user,
                    "passwd": account.password,
                    "realm": account.domain,
                    "domain": account.domain,
                },
            )
        )
    for i, uri in enumerate(friends):
        sections.append((f"friend_{i}", {"url": f"<{uri}>", "pol": "accept", "subscribe": 1}))
    return "".join(
        f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in keys.items()) + "\n"
        for name, keys in sections
    )


class Linphone:
    """One engine process fed commands on stdin; its stdout is kept in `output`."""

    program = ""

    def __init__(
        self,
        workdir: Path,
        account: Account,
        *,
        friends: Sequence[str] = (),
        rls_uri: str | None = None,
    ) -> None:
        self.workdir = workdir
        self.account = account
        self.friends = list(friends)
        self.rls_uri = rls_uri
        self.sip_port = 0
        self.home = workdir / "home"
        self.rc_path = workdir / "linphonerc"
        self.log_path = workdir / "liblinphone.log"
        self.output = ""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def _argv(self, binary: str) -> list[str]:
        raise NotImplementedError

    async def start(self) -> Linphone:
        binary = require_binary(self.program, package=PACKAGE)
        (self.home / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port()
        self.rc_path.write_text(linphonerc(self.sip_port, self.account, self.friends, self.rls_uri))
        self._proc = await asyncio.create_subprocess_exec(
            *self._argv(binary),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env={"HOME": str(self.home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        self._reader = asyncio.create_task(self._read(self._proc.stdout))
        return self

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None and proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.write(b"quit\n")  # unregisters and unpublishes before exiting
                await proc.stdin.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5.0)
        if proc.returncode is None:
            await _stop_session(proc)
        if self._reader is not None:
            self._reader.cancel()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def tail(self, lines: int = 80) -> str:
        return (
            f"--- {self.log_path}\n{log_tail(self.log_path, lines)}\n"
            f"--- {self.program} stdout\n{self.output[-3000:]}"
        )

    async def _read(self, stream: asyncio.StreamReader) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")  # chunks split characters
        with contextlib.suppress(ConnectionError):
            while data := await stream.read(4096):
                self.output += decoder.decode(data)
                self._parse()
                self._changed.set()
                self._changed = asyncio.Event()

    def _parse(self) -> None:
        """Subclasses turn new output into events."""

    async def write(self, line: str) -> None:
        if self._proc is None or self._proc.stdin is None or self._proc.returncode is not None:
            raise LinphoneError(f"{self.program} is not running\n{self.tail()}")
        self._proc.stdin.write(line.encode() + b"\n")
        await self._proc.stdin.drain()

    async def until(self, check: Callable[[], T | None], what: str, timeout: float = LIMIT) -> T:
        """Poll `check` on every output change (and every 0.5 s) until it is not None."""
        deadline = time.monotonic() + timeout
        while (found := check()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinphoneError(f"no {what} within {timeout}s\n{self.tail()}")
            if not self.running:
                raise LinphoneError(
                    f"{self.program} exited while waiting for {what}\n{self.tail()}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return found

    def sip_log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


async def _stop_session(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group `proc` leads (its own session), SIGKILL it after 5 s."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
            return


# -- linphone-daemon ---------------------------------------------------------------

_PROMPT = "daemon-linphone>"


@dataclass
class Block:
    """One answer ("Status: Ok|Error") or one event ("Event-type: ...") of the daemon,
    with its "Key: Value" lines in order."""

    kind: str  # "Status" or "Event-type"
    value: str
    fields: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)


class LinphoneDaemon(Linphone):
    """`linphone-daemon --config rc --log file`, commands on stdin.

    Its readline front end echoes every command after the prompt; an answer is the
    block between the echo and the next prompt. Events are printed as they happen,
    after a prompt ("Event-type: ...", a blank line, fields, a blank line) and go to
    `events`."""

    program = "linphone-daemon"

    def __init__(
        self,
        workdir: Path,
        account: Account,
        *,
        friends: Sequence[str] = (),
        rls_uri: str | None = None,
    ) -> None:
        super().__init__(workdir, account, friends=friends, rls_uri=rls_uri)
        self.events: list[Block] = []
        self._answers: list[Block] = []
        self._current: Block | None = None
        self._consumed = 0  # output up to here has been split into lines
        self._pending = ""  # an incomplete last line
        self._lock = asyncio.Lock()

    def _argv(self, binary: str) -> list[str]:
        return [binary, "--config", str(self.rc_path), "--log", str(self.log_path)]

    def _parse(self) -> None:
        text = self._pending + self.output[self._consumed :]
        self._consumed = len(self.output)
        *lines, rest = text.split("\n")
        for line in lines:
            self._line(line)
        if rest.startswith(_PROMPT):
            self._line(rest)  # a bare prompt: the answer before it is complete
            rest = ""  # the echo that may follow it on this line is ignored anyway
        self._pending = rest

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        if line.startswith(_PROMPT):
            self._close()
            return
        block = self._current
        if not line and block is not None and block.kind == "Event-type" and block.fields:
            self._close()  # an event ends with a blank line after its fields; no prompt follows
            return
        key, sep, value = line.partition(": ")
        if sep and key in ("Status", "Event-type"):
            self._close()
            self._current = Block(key, value)
        elif sep and self._current is not None:
            self._current.fields.append((key, value))

    def _close(self) -> None:
        block, self._current = self._current, None
        if block is None:
            return
        (self.events if block.kind == "Event-type" else self._answers).append(block)

    async def command(self, line: str, timeout: float = LIMIT) -> Block:
        """Run one command; its answer (LinphoneError if the status is not Ok)."""
        async with self._lock:
            mark = len(self._answers)
            await self.write(line)
            answer = await self.until(
                lambda: self._answers[mark] if len(self._answers) > mark else None,
                f"answer to {line!r}",
                timeout,
            )
        if answer.value != "Ok":
            raise LinphoneError(f"{line!r}: {answer}\n{self.tail()}")
        return answer

    async def registration_state(self) -> str:
        return (await self.command("register-status 1")).get("State") or ""

    async def wait_registered(self, state: str = "LinphoneRegistrationOk") -> None:
        """Poll `register-status` until the account's state is `state`."""
        deadline = time.monotonic() + LIMIT
        while (now := await self.registration_state()) != state:
            if time.monotonic() > deadline:
                raise LinphoneError(f"registration {now}, not {state}\n{self.tail()}")
            await asyncio.sleep(0.2)

    async def send_message(self, uri: str, text: str) -> str:
        """MESSAGE `text` to `uri`; the message id for `wait_message_state`."""
        answer = await self.command(f"message {uri} {text}")
        return answer.get("Id") or ""

    async def wait_message_state(self, message_id: str, state: str) -> Block:
        """The `message-state-changed` event of `message_id` to `state` (e.g.
        "LinphoneChatMessageStateDeliveredToUser")."""

        def check() -> Block | None:
            return next(
                (
                    e
                    for e in self.events
                    if e.value == "message-state-changed"
                    and e.get("Id") == message_id
                    and e.get("State") == state
                ),
                None,
            )

        return await self.until(check, f"message {message_id} {state}")

    def message_states(self, message_id: str) -> list[str]:
        return [
            e.get("State") or ""
            for e in self.events
            if e.value == "message-state-changed" and e.get("Id") == message_id
        ]

    async def wait_message(self, text: str) -> Block:
        """The `message-received` event whose content is `text` (the daemon quotes it)."""

        def check() -> Block | None:
            return next(
                (
                    e
                    for e in self.events
                    if e.value == "message-received" and e.get("Content") == f'"{text}"'
                ),
                None,
            )

        return await self.until(check, f"message {text!r}")


# -- linphonec -----------------------------------------------------------------------

# linphonec prints `Friend "juliet" <sip:juliet@localhost> is Online` (the display name
# only when the friend has one).
_FRIEND_RE = re.compile(r'Friend (?:"[^"]*" )?<?(sips?:[^>\s]+)>? is (.+?)\r?$', re.MULTILINE)


class Linphonec(Linphone):
    """`linphonec -c rc -l file -d 6`, commands on stdin; `friend_statuses` lists the
    "Friend <uri> is <status>" lines it printed, in order (a NOTIFY that leaves the
    status as it was prints the line again)."""

    program = "linphonec"

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-c", str(self.rc_path), "-l", str(self.log_path), "-d", "6"]

    def friend_statuses(self, uri: str) -> list[str]:
        return [m.group(2) for m in _FRIEND_RE.finditer(self.output) if m.group(1) == uri]

    async def wait_friend_status(self, uri: str, status: str, *, after: int = 0) -> int:
        """Wait for "Friend `uri` is `status`" as status number >= `after`; its index."""

        def check() -> int | None:
            seen = self.friend_statuses(uri)
            return next((i for i in range(after, len(seen)) if seen[i] == status), None)

        return await self.until(check, f"friend {uri} {status}")

"""JsSIP under Node as a SIP-over-WebSocket peer (tests/js/jssip_peer.js, issue 20).

`JsSipPeer` starts the script with its options, reads the JSON lines it prints (events)
and writes JSON commands to its stdin. The npm packages are installed in tests/js by
scripts/install-deps.sh (`npm ci`); `require_jssip` skips locally, fails in CI, when Node
or the packages are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness import in_ci, require_binary

__all__ = ["JS_DIR", "JsSipPeer", "require_jssip"]

JS_DIR = Path(__file__).resolve().parents[1] / "js"

Event = dict[str, Any]


def require_jssip() -> str:
    """The node binary, once Node and tests/js/node_modules/jssip are there."""
    node = require_binary("node", package="nodejs")
    if not (JS_DIR / "node_modules" / "jssip").is_dir():
        reason = "tests/js/node_modules missing (run scripts/install-deps.sh: npm ci)"
        if in_ci():
            pytest.fail(f"CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return node


class JsSipPeer:
    """One JsSIP user agent in a Node process."""

    def __init__(self, node: str, **options: Any) -> None:
        self.node = node
        self.options = options
        self.events: list[Event] = []
        self.stderr: list[str] = []
        self._taken: set[int] = set()
        self._changed = asyncio.Event()
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> JsSipPeer:
        self._proc = await asyncio.create_subprocess_exec(
            self.node,
            str(JS_DIR / "jssip_peer.js"),
            json.dumps(self.options),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.ensure_future(self._read(self._proc.stdout, self._on_line)),
            asyncio.ensure_future(self._read(self._proc.stderr, self.stderr.append)),
        ]
        return self

    async def _read(self, stream: asyncio.StreamReader, sink: Callable[[str], None]) -> None:
        while line := await stream.readline():
            sink(line.decode("utf-8", "replace").rstrip("\n"))
        self._changed.set()

    def _on_line(self, line: str) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            event = {"event": "stdout", "line": line}
        self.events.append(event)
        self._changed.set()

    def command(self, cmd: str, **fields: Any) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())

    async def wait(
        self, name: str, predicate: Callable[[Event], bool] | None = None, timeout: float = 20.0
    ) -> Event:
        """The first event `name` (matching `predicate`) not returned before."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for i, ev in enumerate(self.events):
                        if i in self._taken or ev.get("event") != name:
                            continue
                        if predicate is None or predicate(ev):
                            self._taken.add(i)
                            return ev
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {name!r} event from JsSIP in {timeout} s; events: {self.events[-10:]}; "
                f"stderr: {self.stderr[-10:]}"
            ) from None

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.write(b'{"cmd": "quit"}\n')
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        for task in self._readers:
            task.cancel()

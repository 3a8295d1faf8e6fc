"""A console program driven through tmux: start it in a detached session of a private tmux
server (its own socket, `tmux -L`), type into it, read the screen.

`wait_for(pattern)` polls `capture-pane -p` until the screen matches or the deadline
passes; on failure the error carries the whole screen, so a test log shows what the
program displayed. `close()` kills only this tmux server (by its socket name).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from itertools import count
from types import TracebackType

_serial = count(1)


class TmuxError(RuntimeError):
    """tmux failed, or the screen never showed what was awaited."""


class TmuxSession:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str,
        width: int = 240,
        height: int = 60,
    ) -> None:
        self.socket = f"cpimtest{os.getpid()}n{next(_serial)}"
        self.name = "main"
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.width, self.height = width, height

    def _tmux(self, *args: str, timeout: float = 10.0) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            timeout=timeout,
            env=self.env,
            cwd=self.cwd,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise TmuxError(f"tmux {args[0]} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")

    def start(self) -> TmuxSession:
        # -f /dev/null: no user tmux.conf; the program gets the environment given here
        self._tmux(
            "-f", "/dev/null", "new-session", "-d", "-s", self.name,
            "-x", str(self.width), "-y", str(self.height), *self.argv,
        )  # fmt: skip
        self._tmux("set-option", "-t", self.name, "remain-on-exit", "on")
        return self

    def type(self, text: str, *, enter: bool = True, settle: float = 0.3) -> None:
        """Type `text` literally (no key-name lookup), then Enter. The first key goes
        alone and the rest `settle` seconds later: a key that opens an input line (poezio's
        "/") drops the keys read in the same batch."""
        self._tmux("send-keys", "-t", self.name, "-l", text[:1])
        if text[1:]:
            time.sleep(settle)
            self._tmux("send-keys", "-t", self.name, "-l", text[1:])
        time.sleep(settle)
        if enter:
            self._tmux("send-keys", "-t", self.name, "Enter")

    def keys(self, *names: str) -> None:
        """Send tmux key names (e.g. "M-Right", "C-c")."""
        self._tmux("send-keys", "-t", self.name, *names)

    def screen(self) -> str:
        """The visible pane as text (joined wrapped lines: -J)."""
        return self._tmux("capture-pane", "-p", "-J", "-t", self.name)

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            m = rx.search(screen)
            if m:
                return m
            time.sleep(0.2)
        raise TmuxError(f"{pattern!r} not on screen after {timeout}s; screen:\n{screen}")

    def close(self) -> None:
        with contextlib.suppress(TmuxError, subprocess.TimeoutExpired):
            self._tmux("kill-server")

    def __enter__(self) -> TmuxSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

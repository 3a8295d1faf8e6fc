"""The embedded demo (`make run` = scripts/run-demo.sh) works with no other set-up
(issue 2): a real SIP client registered as romeo (baresip) and a real XMPP client
logged in as juliet exchange messages through it, on the documented fixed endpoints;
the browser demo page, its JsSIP bundle and the SIP WebSocket listener are up;
Ctrl-C (SIGINT to the process group) stops Prosody and the gateway cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import require_binary
from tests.harness.baresip import Baresip, account_line
from tests.harness.ports import tcp_accepting
from tests.harness.xmpp_client import XmppTestClient

ROOT = Path(__file__).resolve().parents[2]
FIXED_PORTS = (5222, 5347, 5060, 5061, 5066, 8080)


class Demo:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.text()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} in the demo output:\n{self.text()[-3000:]}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    require_binary("prosody")
    busy = [p for p in FIXED_PORTS if tcp_accepting(p)]
    assert not busy, f"the demo's fixed ports are in use: {busy} (is `make run` running?)"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(ROOT / "scripts" / "run-demo.sh")],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    d = Demo(proc, log)
    try:
        yield d
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def test_romeo_on_sip_and_juliet_on_xmpp_chat_through_the_demo(
    demo: Demo, tmp_path: Path
) -> None:
    demo.wait_for(r"gateway ready")
    demo.wait_for(r"xmpp link sip\.localhost up")
    juliet = XmppTestClient("juliet@localhost", "juliet", port=5222)
    await juliet.connect()
    romeo = Baresip(tmp_path / "baresip", contacts=["sip:juliet@localhost"])
    await romeo.start()
    try:
        await romeo.register(account_line("sip:romeo@sip.localhost", "romeo", ("127.0.0.1", 5060)))

        await romeo.send_message("sip:juliet@localhost", "But soft, what light")
        got = await juliet.wait_message(lambda m: m["body"] == "But soft, what light", 20)
        assert got["from"].bare == "romeo@sip.localhost"

        juliet.send_message("romeo@sip.localhost", "Wherefore art thou")
        heard = await romeo.wait_message("Wherefore art thou", timeout=20)
        assert "juliet@localhost" in heard.peer
    finally:
        await romeo.stop()
        await juliet.disconnect()

    # The browser demo: the page and its JsSIP bundle on the admin listener, and the SIP
    # WebSocket listener the page talks to (tests/integration/test_browser.py drives it).
    with urllib.request.urlopen("http://127.0.0.1:8080/web/", timeout=10) as resp:
        assert "browser demo" in resp.read().decode()
    with urllib.request.urlopen("http://127.0.0.1:8080/web/vendor/jssip.min.js", timeout=10) as r:
        assert len(r.read()) > 100_000
    assert tcp_accepting(5066)
    assert "Browser demo: http://127.0.0.1:8080/web/" in demo.text()

    os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
    assert demo.proc.wait(30) == 0 or "demo stopped." in demo.text()
    demo.wait_for(r"demo stopped\.", timeout=5)
    assert not any(tcp_accepting(p) for p in FIXED_PORTS), "something still listens"
    assert "Traceback" not in demo.text()

"""`cpim-gateway user ...` as a real process, against a running gateway PROCESS.

A user added with the command can register (Digest, sipp answering the challenge) after a
SIGHUP, without a restart; a new password replaces the old one; a removed user is refused.
Also: the command reads the password from a pipe only when told to, the deprecated module
still works, and `check-config` on a fresh checkout's demo says what makes the demo
certificate and passes once it is made. In-process tests: tests/unit/test_usercmd.py.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.registrar.users import format_user, hash_password
from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port
from tests.harness.sipp import Sipp, SippResult

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "sip.localhost"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

REGISTER = """<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="REGISTER with Digest, final answer {final}">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[field0] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field1]@[field0]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[field0]>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field1]@[local_ip]:[local_port]>
      Expires: 300
      Content-Length: 0

    ]]>
  </send>
  <recv response="401" auth="true" />
  <send retrans="500">
    <![CDATA[

      REGISTER sip:[field0] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      Max-Forwards: 70
      From: <sip:[field1]@[field0]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field1]@[field0]>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field1]@[local_ip]:[local_port]>
      Expires: 300
      [authentication]
      Content-Length: 0

    ]]>
  </send>
  <recv response="{final}" />
</scenario>
"""


def user_cli(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m gateway user ...`, the password (if any) piped on stdin."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "user", *args],
        input=password,
        stdin=subprocess.DEVNULL if password is None else None,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )


def register(sipp: Sipp, port: int, user: str, password: str, final: int) -> SippResult:
    """One REGISTER answered with Digest (MD5, as sipp 3.6 knows); `final` is expected."""
    scenario = sipp.workdir / f"register-{final}.xml"
    scenario.parent.mkdir(parents=True, exist_ok=True)
    scenario.write_text(REGISTER.format(final=final), encoding="utf-8")
    csv = sipp.workdir / f"{user}.csv"
    csv.write_text(f"SEQUENTIAL\n{DOMAIN};{user}\n", encoding="utf-8")
    return sipp.run(
        scenario,
        remote=f"{LOOPBACK}:{port}",
        extra_args=["-inf", str(csv), "-au", user, "-ap", password],
        timeout=20,
    )


async def reloaded(gw: GatewayProcess, count: int, users: int) -> None:
    """Wait for the `count`-th `configuration reloaded` line, which must say `users`."""
    pattern = r"(?s)" + r"configuration reloaded .*?" * count
    await asyncio.to_thread(gw.wait_for_log, pattern, 20)
    line = gw.log_text().split("configuration reloaded")[count].splitlines()[0]
    assert f"users={users}" in line, line


async def test_added_user_registers_after_sighup_and_removed_one_is_refused(
    gateway: Callable[..., GatewayProcess], sipp: Sipp, tmp_path: Path
) -> None:
    users = tmp_path / "users.toml"
    romeo = hash_password(f"romeo@{DOMAIN}", None, "romeo", algorithms=["MD5"])
    users.write_text("# managed with cpim-gateway user\n" + format_user(romeo), encoding="utf-8")
    users.chmod(0o600)
    port = free_port()
    gw = gateway(
        sip={"listeners": [{"transport": "udp", "address": LOOPBACK, "port": port}]},
        registrar={"users_file": str(users)},
        admin={"enabled": False},
    )
    await asyncio.to_thread(gw.wait_for_log, rf"xmpp link {DOMAIN} up", 30)

    # Not in the file yet: the Digest answer is refused.
    result = await asyncio.to_thread(register, sipp, port, "tybalt", "cats", 401)
    assert result.ok, result.describe()

    added = user_cli("add", "--config", str(gw.config_path), f"tybalt@{DOMAIN}",
                     "--password-stdin", password="cats\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added tybalt@sip.localhost (MD5)" in added.stdout  # like romeo: MD5 only
    gw.send_signal(signal.SIGHUP)
    await reloaded(gw, 1, users=2)
    result = await asyncio.to_thread(register, sipp, port, "tybalt", "cats", 200)
    assert result.ok, f"{result.describe()}\n{gw.tail()}"

    changed = user_cli("passwd", "-f", str(users), f"tybalt@{DOMAIN}", "--password-stdin",
                       password="prince of cats\n")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    gw.send_signal(signal.SIGHUP)
    await reloaded(gw, 2, users=2)
    result = await asyncio.to_thread(register, sipp, port, "tybalt", "cats", 401)
    assert result.ok, result.describe()
    result = await asyncio.to_thread(register, sipp, port, "tybalt", "prince of cats", 200)
    assert result.ok, result.describe()

    removed = user_cli("remove", "-c", str(gw.config_path), f"tybalt@{DOMAIN}")
    assert removed.returncode == 0, removed.stderr
    gw.send_signal(signal.SIGHUP)
    await reloaded(gw, 3, users=1)
    result = await asyncio.to_thread(register, sipp, port, "tybalt", "prince of cats", 401)
    assert result.ok, result.describe()
    assert gw.running  # never restarted
    assert users.read_text().startswith("# managed with cpim-gateway user\n")
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in users.parent.iterdir() if p.name.startswith(".")) == []

    # A file broken by hand: the reload keeps the users in use and says so in one line.
    users.write_text('[users."tybalt@sip.localhost"]\npassword = "cats"\n', encoding="utf-8")
    gw.send_signal(signal.SIGHUP)
    await asyncio.to_thread(gw.wait_for_log, r"user file reload failed, keeping the old one", 20)
    result = await asyncio.to_thread(register, sipp, port, "romeo", "romeo", 200)
    assert result.ok, result.describe()
    listed = user_cli("list", "-f", str(users))
    assert listed.returncode == 2 and listed.stdout == ""
    assert "plain-text passwords are not accepted" in listed.stderr
    assert gw.terminate(timeout=30) == 0


def test_password_comes_from_a_pipe_only_when_asked(tmp_path: Path) -> None:
    users = tmp_path / "users.toml"
    refused = user_cli("add", "-f", str(users), f"romeo@{DOMAIN}")  # stdin: /dev/null
    assert refused.returncode == 2
    assert refused.stderr == (
        "cpim-gateway: no terminal to ask for the password on: give it on stdin with "
        "--password-stdin\n"
    )
    assert not users.exists()
    done = user_cli("add", "-f", str(users), f"romeo@{DOMAIN}", "--password-stdin",
                    password="romeo\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "romeo" not in users.read_text().replace(f'"romeo@{DOMAIN}"', "")
    listed = user_cli("list", "-f", str(users))
    assert listed.stdout.split() == [
        f"romeo@{DOMAIN}",
        "username=romeo",
        f"realm={DOMAIN}",
        "hashes=SHA-256,MD5",
    ]


def test_deprecated_module_prints_an_entry_and_a_note() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.registrar.users", f"romeo@{DOMAIN}"],
        input="romeo\n",
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0
    assert out.stdout.startswith(f'[users."romeo@{DOMAIN}"]\nha1_md5 = ')
    assert "deprecated" in out.stderr and "cpim-gateway user add" in out.stderr


def test_check_config_on_a_fresh_checkout(tmp_path: Path) -> None:
    """A clone has no .state/: the error names the script that makes the demo certificate;
    after running it the demo configuration is valid."""
    require_binary("openssl")
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    clone = tmp_path / "fresh"
    files = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "deploy/demo", "scripts/demo-certs.sh", "web/demo"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert "deploy/demo/gateway.toml" in files and "scripts/demo-certs.sh" in files
    for name in files:
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, clone / name)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "check-config", "deploy/demo/gateway.toml"],
            cwd=clone,
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
            check=False,
        )

    first = check()
    assert first.returncode == 2 and first.stdout == ""
    assert first.stderr.count("\n") == 1
    assert first.stderr.rstrip().endswith(
        "run `bash scripts/demo-certs.sh` (or `make run`) to create the demo TLS certificate"
    )
    subprocess.run(["bash", "scripts/demo-certs.sh"], cwd=clone, check=True, timeout=120)
    second = check()
    assert second.returncode == 0, second.stderr
    assert "is valid" in second.stdout and "listener   sip tls 127.0.0.1:5061" in second.stdout

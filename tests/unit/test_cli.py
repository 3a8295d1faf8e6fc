"""The `cpim-gateway` command line, run as a real process (no network needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_TOMLS = sorted((ROOT / "deploy").rglob("*.toml"))


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def demo_certs() -> None:
    """deploy/demo/gateway.toml names the demo certificate that `make run` creates."""
    subprocess.run(["bash", str(ROOT / "scripts" / "demo-certs.sh")], check=True, timeout=60)


def test_deploy_has_configs() -> None:
    assert DEPLOY_TOMLS, "deploy/ must hold example configurations"


@pytest.mark.parametrize("path", DEPLOY_TOMLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_check_config_accepts_every_deploy_toml(path: Path) -> None:
    out = cli("check-config", str(path))
    assert out.returncode == 0, out.stderr
    assert "is valid" in out.stdout
    assert "component" in out.stdout


def test_check_config_summary_lists_domains_listeners_routes(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[[xmpp.components]]\ndomain = "gw.example.org"\nsecret = "s"\naddressing = "escaped"\n'
        "port = 5348\n"
        '[[xmpp.components]]\ndomain = "sip.example.org"\nsecret = "t"\n'
        '[[sip.listeners]]\ntransport = "tcp"\nport = 5070\n'
        '[[sip.routes]]\ndomain = "example.com"\ntarget = "sip:127.0.0.1:5080"\n'
    )
    out = cli("check-config", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "gw.example.org (escaped) via 127.0.0.1:5348" in out.stdout  # its own port
    assert "sip.example.org (mirrored) via 127.0.0.1:5347" in out.stdout  # [xmpp] port
    assert "sip tcp 127.0.0.1:5070" in out.stdout
    assert "example.com -> sip:127.0.0.1:5080" in out.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[xmpp\n", "invalid TOML"),
        (
            '[[xmpp.components]]\ndomain = "a.b"\nsecret = "s"\ncolour = 1\n',
            "xmpp.components[0].colour: unknown key",
        ),
        ('[[xmpp.components]]\ndomain = "a.b"\n', "xmpp.components[0].secret: missing"),
        (
            '[[xmpp.components]]\ndomain = "a.b"\nsecret = "s"\n'
            '[[sip.listeners]]\naddress = "nowhere"\n',
            "sip.listeners[0].address: not an IP address",
        ),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text(content)
    for args in (("check-config", str(cfg)), ("run", "--config", str(cfg))):
        out = cli(*args)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert expected in lines[0]
        assert "Traceback" not in out.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    out = cli("check-config", str(tmp_path / "absent.toml"))
    assert out.returncode == 2
    assert "cannot read" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_unusable_state_dir_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        f'[gateway]\nstate_dir = "{blocker}/state"\n'
        '[[xmpp.components]]\ndomain = "a.b"\nsecret = "s"\n[admin]\nenabled = false\n'
    )
    out = cli("run", "--config", str(cfg))
    assert out.returncode == 1
    assert "state directory" in out.stderr and "not usable" in out.stderr

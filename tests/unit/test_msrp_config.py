"""[msrp] in gateway/config.py (issue 18): defaults, TLS and relay keys, errors by key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import ConfigError, MsrpConfig, load_config

MINIMAL = """
[[xmpp.components]]
domain = "sip.example.org"
secret = "s"
"""


def _load(extra: str, tmp_path: Path, env: dict[str, str] | None = None) -> MsrpConfig:
    data = tomllib.loads(MINIMAL + extra)
    return load_config(data, base_dir=tmp_path, env=env or {}).msrp


def test_defaults(tmp_path: Path) -> None:
    cfg = _load("", tmp_path)
    assert cfg == MsrpConfig()
    assert (cfg.enabled, cfg.address, cfg.port, cfg.tls_port, cfg.relay) == (
        False, "127.0.0.1", 2855, None, None,
    )  # fmt: skip
    assert (cfg.max_message_size, cfg.chunk_size, cfg.idle_timeout) == (1_048_576, 2048, 600.0)


def test_tls_and_relay(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    cfg = _load(
        """
[msrp]
enabled = true
address = "192.0.2.1"
host = "msrp.example.org"
port = 0
tls_port = 2856
certificate = "c.pem"
private_key = "k.pem"
relay = "msrps://relay.example.org:2855;tcp"
relay_username = "gw"
relay_password_env = "RELAY_PW"
idle_timeout = 30
""",
        tmp_path,
        {"RELAY_PW": "pw"},
    )
    assert (cfg.address, cfg.host, cfg.port, cfg.tls_port) == (
        "192.0.2.1",
        "msrp.example.org",
        0,
        2856,
    )
    assert cfg.certificate == tmp_path / "c.pem" and cfg.relay_password == "pw"
    assert "pw" not in repr(cfg) and cfg.idle_timeout == 30.0


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[msrp]\ntls_port = 2856\n", "msrp.certificate"),
        ('[msrp]\nrelay = "http://x;tcp"\n', "msrp.relay"),
        ('[msrp]\nrelay = "msrp://r:1;tcp"\nrelay_username = "u"\n', "msrp.relay_username"),
        ("[msrp]\nidle_timeout = 0\n", "msrp.idle_timeout"),
        ("[msrp]\nchunk_size = 0\n", "msrp.chunk_size"),
        ("[msrp]\nmax_sessions = 0\n", "msrp.max_sessions"),
        ('[msrp]\nrelay_ca = "missing.pem"\n', "msrp.relay_ca"),
        ("[msrp]\nbogus = 1\n", "msrp.bogus"),
    ],
)
def test_errors_name_the_key(extra: str, key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(extra, tmp_path)
    assert info.value.path == key

"""gateway.config: TOML -> frozen dataclasses; every error names its key path."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.config import Addressing, ConfigError, Transport, load_config, read_config

MINIMAL = """
[[xmpp.components]]
domain = "sip.example.org"
secret = "s"
"""


def load(text: str, tmp_path: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return load_config(tomllib.loads(text), base_dir=tmp_path, env=env or {})


def error_of(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path, env)
    return info.value


def test_minimal_config_has_documented_defaults(tmp_path: Path) -> None:
    cfg = load(MINIMAL, tmp_path)
    comp = cfg.xmpp.components[0]
    assert (comp.domain, comp.secret, comp.addressing) == (
        "sip.example.org",
        "s",
        Addressing.MIRRORED,
    )
    assert (cfg.xmpp.server, cfg.xmpp.port) == ("127.0.0.1", 5347)
    assert cfg.gateway.state_dir == tmp_path / "state"
    assert (cfg.admin.address, cfg.admin.port) == ("127.0.0.1", 8080)
    assert cfg.sip.timers.t1 == 0.5 and cfg.sip.message_success_status == 200
    assert cfg.dns.servers == ()
    assert cfg.gateway.heap_trim_interval == 60.0


def test_component_port_defaults_to_the_xmpp_port_and_may_be_its_own(tmp_path: Path) -> None:
    cfg = load(
        """
[xmpp]
port = 5275
[[xmpp.components]]
domain = "sip.example.org"
secret = "s"
[[xmpp.components]]
domain = "gw.example.org"
secret = "t"
port = 5348
""",
        tmp_path,
    )
    sip, gw = cfg.xmpp.components
    assert (sip.port, gw.port) == (None, 5348)
    assert (cfg.xmpp.port_of(sip), cfg.xmpp.port_of(gw)) == (5275, 5348)
    minimal = load(MINIMAL, tmp_path).xmpp
    assert minimal.port_of(minimal.components[0]) == 5347


def test_secret_is_not_in_repr(tmp_path: Path) -> None:
    cfg = load(MINIMAL.replace('"s"', '"hunter2-secret"'), tmp_path)
    assert "hunter2-secret" not in repr(cfg)


def test_full_config(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    (tmp_path / "secret").write_text("from-file\n")
    cfg = load(
        """
[gateway]
state_dir = "/var/lib/x"
log_level = "debug"
log_format = "json"
[xmpp]
server = "::1"
port = 5275
[[xmpp.components]]
domain = "SIP.Example.org"
secret_file = "secret"
[[xmpp.components]]
domain = "gw.example.org"
secret_env = "GW_SECRET"
addressing = "escaped"
[sip]
hosted_domains = ["sip.example.org"]
served_xmpp_domains = ["example.org"]
outbound_proxy = "sip:proxy.example.org;lr"
trusted_peers = ["192.0.2.0/24", "::1"]
message_success_status = 202
[[sip.listeners]]
transport = "tls"
address = "0.0.0.0"
certificate = "c.pem"
private_key = "k.pem"
[[sip.listeners]]
transport = "udp"
address = "::"
port = 5062
[[sip.routes]]
domain = "example.com"
target = "sip:127.0.0.1:5080;transport=tcp"
[sip.timers]
t1 = 0.1
[dns]
servers = ["127.0.0.1:5353", "[::1]:53", "10.0.0.1"]
[admin]
listen = "[::1]:9000"
token = "t"
""",
        tmp_path,
        env={"GW_SECRET": "from-env"},
    )
    assert [c.domain for c in cfg.xmpp.components] == ["sip.example.org", "gw.example.org"]
    assert [c.secret for c in cfg.xmpp.components] == ["from-file", "from-env"]
    assert cfg.sip.listeners[0].transport is Transport.TLS and cfg.sip.listeners[0].port == 5061
    assert cfg.sip.listeners[0].certificate == tmp_path / "c.pem"
    assert cfg.sip.listeners[1].port == 5062
    assert cfg.dns.servers == (("127.0.0.1", 5353), ("::1", 53), ("10.0.0.1", 53))
    assert (cfg.admin.address, cfg.admin.port, cfg.admin.token) == ("::1", 9000, "t")
    assert cfg.sip.timers.t1 == 0.1 and cfg.sip.timers.t2 == 4.0
    assert cfg.gateway.state_dir == Path("/var/lib/x")
    assert cfg.component("GW.example.org") is cfg.xmpp.components[1]


@pytest.mark.parametrize(
    ("text", "path", "problem"),
    [
        ("", "xmpp.components", "at least one"),
        ("[[xmpp.components]]\nsecret = 's'", "xmpp.components[0].domain", "missing"),
        ("[[xmpp.components]]\ndomain = 'a.b'", "xmpp.components[0].secret", "missing"),
        (MINIMAL + "bogus = 1", "xmpp.components[0].bogus", "unknown key"),
        (MINIMAL + "[sip]\nlisteners = 3", "sip.listeners", "array of tables"),
        (MINIMAL + "[xmpp]\nport = '5347'", "xmpp.port", "must be an integer"),
        (MINIMAL + "[xmpp]\nport = 70000", "xmpp.port", "1..65535"),
        (MINIMAL + "[xmpp]\nserver = 'localhost'", "xmpp.server", "not an IP address"),
        (MINIMAL + "[xmpp]\nport = true", "xmpp.port", "must be an integer"),
        (
            MINIMAL + "[[xmpp.components]]\ndomain = 'SIP.example.org'\nsecret='x'",
            "xmpp.components[1].domain",
            "duplicate",
        ),
        (MINIMAL + "addressing = 'sideways'", "xmpp.components[0].addressing", "one of"),
        (MINIMAL + "port = 0", "xmpp.components[0].port", "1..65535"),
        (MINIMAL + "port = 65536", "xmpp.components[0].port", "1..65535"),
        (MINIMAL + "port = '5348'", "xmpp.components[0].port", "must be an integer"),
        (MINIMAL + "port = true", "xmpp.components[0].port", "must be an integer"),
        (MINIMAL + "port = 5348.0", "xmpp.components[0].port", "must be an integer"),
        (
            MINIMAL + "[[sip.listeners]]\ntransport='tls'",
            "sip.listeners[0].certificate",
            "required",
        ),
        (
            MINIMAL + "[[sip.listeners]]\ntransport='tls'\ncertificate='nope.pem'\nprivate_key='k'",
            "sip.listeners[0].certificate",
            "cannot read",
        ),
        (
            MINIMAL + "[[sip.listeners]]\naddress='300.1.1.1'",
            "sip.listeners[0].address",
            "not an IP",
        ),
        (
            MINIMAL + "[[sip.listeners]]\nport=5060\n[[sip.listeners]]\nport=5060",
            "sip.listeners[1]",
            "used twice",
        ),
        (MINIMAL + "[sip]\nhosted_domains = ['a..b']", "sip.hosted_domains[0]", "not a domain"),
        (MINIMAL + "[sip]\nhosted_domains = ['other.org']", "sip.hosted_domains[0]", "neither"),
        (
            MINIMAL + "[sip]\nserved_xmpp_domains = ['sip.example.org']",
            "xmpp.components[0].domain",
            "own domain",
        ),
        (MINIMAL + "[sip]\noutbound_proxy = 'http://x'", "sip.outbound_proxy", "sip: or sips:"),
        (
            MINIMAL + "[sip]\nmessage_success_status = 201",
            "sip.message_success_status",
            "200 or 202",
        ),
        (MINIMAL + "[sip]\ntrusted_peers = ['proxy']", "sip.trusted_peers[0]", "not an address"),
        (MINIMAL + "[dns]\nservers = ['1.2.3.4:x']", "dns.servers[0]", "bad port"),
        (MINIMAL + "[admin]\nlisten = 'example.com:80'", "admin.listen", "not an IP"),
        (
            MINIMAL + "[registrar]\nusers_file = 'missing.toml'",
            "registrar.users_file",
            "cannot read",
        ),
        (MINIMAL + "[registrar]\nmin_expires = 9000", "registrar.default_expires", "min_expires"),
        (MINIMAL + "[gateway]\nlog_level = 'loud'", "gateway.log_level", "one of"),
        (MINIMAL + "[gateway]\nheap_trim_interval = -1", "gateway.heap_trim_interval", "0 (off)"),
        (MINIMAL + "[gateway]\nheap_trim_interval = nan", "gateway.heap_trim_interval", "0 (off)"),
        (MINIMAL + "[gateway]\nheap_trim_interval = 'x'", "gateway.heap_trim_interval", "must be"),
        (
            MINIMAL.replace('secret = "s"', 'secret = "s"\nsecret_env = "E"'),
            "xmpp.components[0].secret_env",
            "only one",
        ),
        (
            MINIMAL.replace('secret = "s"', 'secret_env = "NOPE"'),
            "xmpp.components[0].secret_env",
            "not set",
        ),
        (MINIMAL + "[unknown]\n", "unknown", "unknown key"),
    ],
)
def test_errors_name_the_key_path(text: str, path: str, problem: str, tmp_path: Path) -> None:
    err = error_of(text, tmp_path)
    assert err.path == path, str(err)
    assert problem in err.problem
    assert "\n" not in str(err)


def test_read_config_reports_bad_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[xmpp\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        read_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        read_config(tmp_path / "absent.toml")


def test_registrar_rate_limit_and_federation_keys(tmp_path: Path) -> None:
    cfg = load(
        MINIMAL
        + """
[sip]
federation = true
trusted_tls_names = ["Proxy.Example.org"]
[registrar]
max_bindings = 3
available_without_publish = false
flow_timer = 25
[rate_limits]
max_keys = 500
[rate_limits.per_source]
message = { burst = 5, rate = 1 }
""",
        tmp_path,
    )
    assert cfg.sip.federation is True
    assert cfg.sip.trusted_tls_names == ("proxy.example.org",)
    assert (cfg.registrar.max_bindings, cfg.registrar.flow_timer) == (3, 25)
    assert cfg.registrar.available_without_publish is False
    limits = dict(cfg.rate_limits.per_source)
    assert (limits["message"].burst, limits["message"].rate) == (5, 1)
    assert limits["subscribe"].burst == 50  # untouched kinds keep their defaults
    assert cfg.rate_limits.max_keys == 500


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (
            "[rate_limits.per_source]\nflood = { burst = 1, rate = 1 }",
            "rate_limits.per_source.flood",
        ),
        ("[rate_limits.per_user]\nmessage = { burst = 1 }", "rate_limits.per_user.message.rate"),
        (
            "[rate_limits.per_user]\nmessage = { burst = 1, rate = 0 }",
            "rate_limits.per_user.message.rate",
        ),
        ("[registrar]\nmax_bindings = 0", "registrar.max_bindings"),
        ("[registrar]\npublish_min_expires = 9999", "registrar.publish_default_expires"),
    ],
)
def test_rate_limit_and_registrar_errors(text: str, path: str, tmp_path: Path) -> None:
    assert error_of(MINIMAL + text, tmp_path).path == path


def test_presence_section(tmp_path: Path) -> None:
    cfg = load(
        MINIMAL + '[presence]\nexpires = 600\nnotify_interval = 1\ncontact = "sip:gw@192.0.2.1"\n',
        tmp_path,
    )
    assert (cfg.presence.expires, cfg.presence.notify_interval) == (600, 1.0)
    assert cfg.presence.contact == "sip:gw@192.0.2.1"
    assert cfg.presence.default_expires == 3600
    assert error_of(MINIMAL + "[presence]\nmin_expires = 0", tmp_path).path == (
        "presence.default_expires"
    )
    assert error_of(MINIMAL + '[presence]\ncontact = "mailto:x"', tmp_path).path == (
        "presence.contact"
    )


def test_presence_auto_approve_hosted(tmp_path: Path) -> None:
    assert load(MINIMAL, tmp_path).presence.auto_approve_hosted is False
    cfg = load(MINIMAL + "[presence]\nauto_approve_hosted = true\n", tmp_path)
    assert cfg.presence.auto_approve_hosted is True


def test_offline_section(tmp_path: Path) -> None:
    default = load(MINIMAL, tmp_path).offline
    assert (default.enabled, default.max_messages, default.max_bytes) == (True, 100, 1_048_576)
    assert (default.max_age, default.retry_min, default.retry_max) == (604_800.0, 5.0, 300.0)
    cfg = load(MINIMAL + "[offline]\nmax_messages = 5\nmax_age = 60\nnotice = false\n", tmp_path)
    assert (cfg.offline.max_messages, cfg.offline.max_age, cfg.offline.notice) == (5, 60.0, False)
    for text, path in [
        ("max_messages = 0", "offline.max_messages"),
        ("max_bytes = -1", "offline.max_bytes"),
        ("max_age = 0", "offline.max_age"),
        ("retry_min = 10\nretry_max = 5", "offline.retry_min"),
        ("enabled = 1", "offline.enabled"),
        ("quota = 3", "offline.quota"),
    ]:
        assert error_of(MINIMAL + "[offline]\n" + text, tmp_path).path == path


def test_sessions_section(tmp_path: Path) -> None:
    default = load(MINIMAL, tmp_path).sessions
    assert (default.max_sessions, default.retry_after, default.contact) == (1000, 30, None)
    text = "[sessions]\nmax_sessions = 0\nretry_after = 5\ncontact = 'sip:s@gw.example'\n"
    cfg = load(MINIMAL + text, tmp_path).sessions
    assert (cfg.max_sessions, cfg.retry_after, cfg.contact) == (0, 5, "sip:s@gw.example")
    for bad, path in [
        ("max_sessions = -1", "sessions.max_sessions"),
        ("retry_after = 0", "sessions.retry_after"),
        ("contact = 'mailto:x@y'", "sessions.contact"),
        ("limit = 3", "sessions.limit"),
        ("receipt_wait = -1", "sessions.receipt_wait"),
        ("preference = 'always'", "sessions.preference"),
    ]:
        assert error_of(MINIMAL + "[sessions]\n" + bad, tmp_path).path == path
    assert (default.receipt_wait, default.preference) == (10.0, "pager")
    rfc7573 = load(MINIMAL + "[sessions]\nreceipt_wait = 0\npreference = 'session'\n", tmp_path)
    assert (rfc7573.sessions.receipt_wait, rfc7573.sessions.preference) == (0.0, "session")


def test_tls_listener_client_ca(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    tls = "[[sip.listeners]]\ntransport='tls'\ncertificate='c.pem'\nprivate_key='k.pem'\n"
    assert load(MINIMAL + tls, tmp_path).sip.listeners[0].client_ca is None
    cfg = load(MINIMAL + tls + "client_ca='ca.pem'\n", tmp_path)
    assert cfg.sip.listeners[0].client_ca == tmp_path / "ca.pem"
    err = error_of(MINIMAL + tls + "client_ca='missing.pem'\n", tmp_path)
    assert (err.path, "cannot read" in str(err)) == ("sip.listeners[0].client_ca", True)
    err = error_of(MINIMAL + "[[sip.listeners]]\ntransport='tcp'\nclient_ca='ca.pem'\n", tmp_path)
    assert (err.path, "only meaningful for tls" in str(err)) == ("sip.listeners[0].client_ca", True)


def test_websocket_listeners(tmp_path: Path) -> None:
    """Issue 20: ws/wss listeners (RFC 7118) and their keys."""
    ws = load(MINIMAL + "[[sip.listeners]]\ntransport='ws'\n", tmp_path).sip.listeners[0]
    assert (ws.transport, ws.port, ws.path, ws.origins) == (Transport.WS, 80, "/", ())
    assert (ws.handshake_timeout, ws.heartbeat) == (10.0, 30.0)
    text = (
        "[[sip.listeners]]\ntransport='ws'\nport=8080\npath='/sip'\n"
        "origins=['https://App.example.com/', 'http://localhost:8000']\n"
        "handshake_timeout=2\nheartbeat=15.5\n"
    )
    ws = load(MINIMAL + text, tmp_path).sip.listeners[0]
    assert (ws.port, ws.path) == (8080, "/sip")
    assert ws.origins == ("https://app.example.com", "http://localhost:8000")
    assert (ws.handshake_timeout, ws.heartbeat) == (2.0, 15.5)
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    wss = "[[sip.listeners]]\ntransport='wss'\ncertificate='c.pem'\nprivate_key='k.pem'\n"
    cfg = load(MINIMAL + wss, tmp_path).sip.listeners[0]
    assert (cfg.transport, cfg.port, cfg.certificate) == (Transport.WSS, 443, tmp_path / "c.pem")
    err = error_of(MINIMAL + "[[sip.listeners]]\ntransport='wss'\n", tmp_path)
    assert (err.path, "required for a wss listener" in str(err)) == (
        "sip.listeners[0].certificate",
        True,
    )


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("path='sip'", "path"),
        ("origins=['app.example.com']", "origins"),
        ("heartbeat=0", "heartbeat"),
        ("handshake_timeout=-1", "handshake_timeout"),
    ],
)
def test_websocket_listener_errors(extra: str, key: str, tmp_path: Path) -> None:
    err = error_of(MINIMAL + f"[[sip.listeners]]\ntransport='ws'\n{extra}\n", tmp_path)
    assert err.path == f"sip.listeners[0].{key}"


def test_websocket_keys_only_on_websocket_listeners(tmp_path: Path) -> None:
    err = error_of(MINIMAL + "[[sip.listeners]]\ntransport='tcp'\npath='/'\n", tmp_path)
    assert err.path == "sip.listeners[0].path"


def test_overload_and_runtime_defaults_and_keys(tmp_path: Path) -> None:
    cfg = load(MINIMAL, tmp_path)
    assert cfg.overload.enabled and cfg.overload.retry_after == 5
    assert cfg.overload.pending_low < cfg.overload.pending_high
    assert cfg.runtime.event_loop == "asyncio"
    text = (
        MINIMAL
        + "[overload]\nenabled = false\nlag_high = 1\nlag_low = 0.2\npending_high = 10\n"
        + "pending_low = 2\nxmpp_backlog_high = 2048\nxmpp_backlog_low = 0\n"
        + "udp_backlog_high = 0.2\nudp_backlog_low = 0.05\nhold = 0\nretry_after = 60\n"
        + "stream_backlog_high = 4096\nstream_backlog_low = 1024\n"
        + "clients_high = 900\nclients_low = 100\n"
        + 'interval = 0.5\n[runtime]\nevent_loop = "uvloop"\n'
    )
    cfg = load(text, tmp_path)
    o = cfg.overload
    assert (o.enabled, o.lag_high, o.lag_low, o.pending_high, o.pending_low) == (
        False, 1.0, 0.2, 10, 2,
    )  # fmt: skip
    assert (o.xmpp_backlog_high, o.xmpp_backlog_low, o.udp_backlog_high) == (2048, 0, 0.2)
    assert (o.udp_backlog_low, o.hold, o.retry_after, o.interval) == (0.05, 0.0, 60, 0.5)
    assert (o.stream_backlog_high, o.stream_backlog_low) == (4096, 1024)
    assert (o.clients_high, o.clients_low) == (900, 100)
    assert cfg.runtime.event_loop == "uvloop"


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[overload]\npending_low = 50\npending_high = 10", "overload.pending_low"),
        ("[overload]\nlag_low = 2.0", "overload.lag_low"),
        ("[overload]\nclients_low = 30000", "overload.clients_low"),
        ("[overload]\nstream_backlog_low = 300000", "overload.stream_backlog_low"),
        ("[overload]\nudp_backlog_high = 1.5", "overload.udp_backlog_high"),
        ("[overload]\nretry_after = 0", "overload.retry_after"),
        ("[overload]\nhold = -1", "overload.hold"),
        ("[overload]\ninterval = 0", "overload.interval"),
        ("[overload]\nthreshold = 3", "overload.threshold"),
        ('[runtime]\nevent_loop = "trio"', "runtime.event_loop"),
    ],
)
def test_overload_and_runtime_errors_name_the_key(table: str, key: str, tmp_path: Path) -> None:
    assert error_of(MINIMAL + table + "\n", tmp_path).path == key

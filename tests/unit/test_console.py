"""The operator console's routes through aiohttp's test client (issue 26).

The page and its static files are public and carry a CSP; the data, the fates and the
live stream need the token (401 without); bad fate filters get 400; past
`console_streams` a live stream gets 503 and the snapshot is built once per tick for
every stream; actions are refused (403) unless `console_actions`, and each one is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin import console
from gateway.admin.server import AdminSources, Readiness, create_app
from gateway.admin.sources import PendingAuthorization
from gateway.config import AdminConfig, ConfigError, load_config
from gateway.fates import FateRing
from gateway.logs import WireTrace
from gateway.store.api import Binding, Flow, SubscriptionRecord

pytestmark = pytest.mark.unit

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Make = Callable[..., Awaitable[TestClient[Any, Any]]]


class Hosted:
    """What the console calls for hosted-user authorizations (Hosted.pending / decide)."""

    def __init__(self) -> None:
        self.waiting = [PendingAuthorization("sip:romeo@sip.x", "juliet@x", "sip:juliet@x")]
        self.decided: list[tuple[str, str, str]] = []

    def pending(self) -> list[PendingAuthorization]:
        return list(self.waiting)

    def decide(self, aor: str, sip_uri: str, verdict: str) -> bool:
        self.decided.append((aor, sip_uri, verdict))
        self.waiting.clear()
        return True


def sources(ring: FateRing | None = None, **over: Any) -> AdminSources:
    binding = Binding("sip:romeo@sip.x", "sip:romeo@127.0.0.1:5070;transport=tcp", 2e9, "cid", 1)
    ws = Binding(
        "sip:mercutio@sip.x",
        "sip:m@df7jal23ls0d.invalid;transport=ws",
        2e9,
        "cid2",
        1,
        flow=Flow("ws", "127.0.0.1:8443", "127.0.0.1:50000", "c1"),
    )
    sub = SubscriptionRecord(
        "s2x",
        "sip:romeo@sip.x",
        "juliet@x",
        "call",
        "tag",
        state="active",
        last_document=b"<presence/>",
    )
    hosted = Hosted()
    base: dict[str, Any] = {
        "listings": {
            "links": lambda: [{"domain": "sip.x", "state": "up"}],
            "listeners": lambda: [{"name": "udp:127.0.0.1:5060", "transport": "udp"}],
            "registrations": lambda: [binding, ws],
            "subscriptions": lambda: [sub],
        },
        "trace": WireTrace(),
        "fates": ring if ring is not None else FateRing(10),
        "pending": hosted.pending,
        "decide": hosted.decide,
    }
    return AdminSources(**(base | over))


@pytest.fixture
async def make_client() -> AsyncIterator[Make]:
    clients: list[TestClient[Any, Any]] = []

    async def make(src: AdminSources | None = None, **cfg: Any) -> TestClient[Any, Any]:
        config = AdminConfig(**({"token": TOKEN} | cfg))
        app = create_app(config, lambda: Readiness(True, {}), src or sources())
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def filled_ring() -> FateRing:
    ring = FateRing(10, wall=lambda: 7.0)
    ring.add(
        "sip_to_xmpp",
        "delivered",
        0.004,
        {
            "status": 200,
            "sender": "romeo@sip.x",
            "recipient": "juliet@x",
            "call_id": "c1",
            "stanza_id": "s1",
        },
    )
    ring.add(
        "xmpp_to_sip",
        "rejected",
        0.002,
        {
            "status": 404,
            "sender": "juliet@x/r",
            "recipient": "tybalt@sip.x",
            "condition": "item-not-found",
        },
    )
    return ring


# -- the page ------------------------------------------------------------------------------


async def test_page_is_public_static_and_locked_down(make_client: Make) -> None:
    client = await make_client()
    r = await client.get("/console", allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (308, "/console/")
    r = await client.get("/console/")
    assert r.status == 200
    assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    page = await r.text()
    assert '<script src="/console/static/console.js"' in page
    assert "http://" not in page and "https://" not in page  # nothing from elsewhere
    for name, ctype in (("console.js", "text/javascript"), ("console.css", "text/css")):
        r = await client.get(f"/console/static/{name}")
        assert r.status == 200 and r.content_type == ctype
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "https://" not in await r.text()
    assert (await client.get("/console/static/index.html.bak")).status == 404
    # normalised to /console/sources.py: outside the public files, so the token guards it
    assert (await client.get("/console/static/../sources.py")).status == 401


async def test_data_and_stream_need_the_token(make_client: Make) -> None:
    client = await make_client()
    for path in ("/console/api/state", "/console/api/fates", "/console/events"):
        r = await client.get(path)
        assert r.status == 401, path
        assert r.headers["WWW-Authenticate"] == "Bearer"
        r = await client.get(path, headers={"Authorization": "Bearer wrong"})
        assert r.status == 401, path
    r = await client.post("/console/api/actions/trace", json={"sip": True})
    assert r.status == 401


# -- data ------------------------------------------------------------------------------------


async def test_state_snapshot(make_client: Make) -> None:
    ring = FateRing(10)  # empty when the app is made: the console must still use it
    client = await make_client(sources(ring))
    r = await client.get("/console/api/state", headers=AUTH)
    assert r.status == 200
    snap = await r.json()
    assert snap["links"] == [{"domain": "sip.x", "state": "up"}]
    assert snap["listeners"] == [{"name": "udp:127.0.0.1:5060", "transport": "udp"}]
    regs = snap["registrations"]
    assert (regs["count"], regs["truncated"]) == (2, False)
    assert [(g["aor"], g["transport"]) for g in regs["rows"]] == [
        ("sip:romeo@sip.x", "tcp"),  # from the Contact's transport parameter
        ("sip:mercutio@sip.x", "ws"),  # from the flow it registered on
    ]
    assert regs["rows"][0]["expires_at"] == 2e9
    subs = snap["subscriptions"]["rows"]
    assert subs == [
        {
            "direction": "s2x",
            "watcher": "sip:romeo@sip.x",
            "target": "juliet@x",
            "event": "presence",
            "state": "active",
            "expires_at": 0.0,
            "authorization": "none",
        }
    ]  # no last_document: the console shows state, not bodies
    assert snap["pending"] == [{"aor": "sip:romeo@sip.x", "watcher": "juliet@x"}]
    assert snap["trace"] == {"sip": False, "xmpp": False}
    assert snap["actions"] == {
        "enabled": False,
        "trace": True,
        "authorization": True,
        "drain": False,
    }
    assert snap["fates"] == {"seq": 0, "kept": 0}
    assert snap["chart"] == []
    ring.add("sip_to_xmpp", "delivered", 0.001, {"status": 200})
    snap = await (await client.get("/console/api/state", headers=AUTH)).json()
    assert snap["fates"] == {"seq": 1, "kept": 1}
    body = await (await client.get("/console/api/fates", headers=AUTH)).json()
    assert (body["limit"], len(body["fates"])) == (10, 1)


async def test_state_without_sources(make_client: Make) -> None:
    client = await make_client(AdminSources())
    snap = await (await client.get("/console/api/state", headers=AUTH)).json()
    assert snap["links"] == [] and snap["registrations"]["count"] == 0
    assert snap["pending"] == [] and snap["trace"] is None


async def test_fates_filtered(make_client: Make) -> None:
    client = await make_client(sources(filled_ring()))

    async def fates(query: str) -> list[tuple[int, str]]:
        r = await client.get(f"/console/api/fates?{query}", headers=AUTH)
        assert r.status == 200, await r.text()
        body = await r.json()
        assert (body["seq"], body["limit"]) == (2, 10)
        return [(f["seq"], f["fate"]) for f in body["fates"]]

    assert await fates("") == [(2, "rejected"), (1, "delivered")]
    assert await fates("direction=sip_to_xmpp") == [(1, "delivered")]
    assert await fates("fate=rejected") == [(2, "rejected")]
    assert await fates("q=JULIET&limit=1") == [(2, "rejected")]
    assert await fates("q=tybalt") == [(2, "rejected")]
    assert await fates("direction=&fate=&q=") == [(2, "rejected"), (1, "delivered")]
    r = await client.get("/console/api/fates?fate=delivered", headers=AUTH)
    row = (await r.json())["fates"][0]
    assert row == {
        "seq": 1,
        "at": 7.0,
        "direction": "sip_to_xmpp",
        "fate": "delivered",
        "status": 200,
        "sender": "romeo@sip.x",
        "recipient": "juliet@x",
        "call_id": "c1",
        "stanza_id": "s1",
        "seconds": 0.004,
        "detail": None,
    }


@pytest.mark.parametrize(
    "query",
    [
        "direction=sideways",
        "fate=lost",
        "q=" + "a" * 129,  # oversized
        "q=%00x",  # a control character
        "q=a%0Ab",
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=ten",
        "limit=" + "9" * 40,
        "sort=seq",  # unknown parameter
        "fate=held&fate=failed",  # repeated
        "direction=" + "x" * 5000,
    ],
)
async def test_bad_filters_get_400(make_client: Make, query: str) -> None:
    client = await make_client(sources(filled_ring()))
    r = await client.get(f"/console/api/fates?{query}", headers=AUTH)
    assert r.status == 400, query
    assert "error" in await r.json()


# -- the live stream ------------------------------------------------------------------------


async def _first_event(resp: Any) -> dict[str, Any]:
    block = b""
    while b"\n\n" not in block:
        block += await asyncio.wait_for(resp.content.readany(), 5)
    text = block.split(b"\n\n")[0].decode()
    assert text.startswith("event: snapshot\ndata: ")
    return dict(json.loads(text.split("data: ", 1)[1]))


async def test_stream_pushes_snapshots_and_charts(
    make_client: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "TICK", 0.05)
    ring = filled_ring()
    client = await make_client(sources(ring))
    async with client.get("/console/events", headers=AUTH) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        first = await _first_event(resp)
        assert first["links"] == [{"domain": "sip.x", "state": "up"}]
        ring.add("sip_to_xmpp", "failed", 0.5, {"status": 503})
        for _ in range(50):
            snap = await _first_event(resp)
            if snap["fates"]["seq"] == 3:
                break
        assert snap["fates"] == {"seq": 3, "kept": 3}
        points = [p for p in snap["chart"] if p["errors"] > 0]
        assert points and points[-1]["latency_ms"] == pytest.approx(500.0)


async def test_stream_limit_and_one_snapshot_per_tick(
    make_client: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(console, "TICK", 0.05)
    built = 0
    original = console.Hub.snapshot

    async def counting(self: console.Hub) -> dict[str, Any]:
        nonlocal built
        built += 1
        return await original(self)

    monkeypatch.setattr(console.Hub, "snapshot", counting)
    client = await make_client(console_streams=3)
    opened = [await client.get("/console/events", headers=AUTH) for _ in range(3)]
    try:
        assert [r.status for r in opened] == [200, 200, 200]
        for r in opened:
            await _first_event(r)
        refused = await client.get("/console/events", headers=AUTH)
        assert refused.status == 503 and refused.headers["Retry-After"] == "5"
        built = 0
        hub = client.app[console.HUB]  # type: ignore[index]
        ticks = hub.ticks
        await asyncio.sleep(0.5)
        ticks = hub.ticks - ticks
        assert ticks >= 3
        assert built <= ticks + 1  # shared by the three streams, not one per stream
        assert hub.streams == 3
    finally:
        for r in opened:
            r.close()
    for _ in range(100):  # the slots come back when the viewers leave
        if hub.streams == 0:
            break
        await asyncio.sleep(0.05)
    assert hub.streams == 0
    again = await client.get("/console/events", headers=AUTH)
    assert again.status == 200
    again.close()


# -- actions ---------------------------------------------------------------------------------


async def test_actions_are_off_by_default(make_client: Make) -> None:
    client = await make_client()
    for action, body in (
        ("trace", {"sip": True}),
        ("authorization", {"aor": "sip:romeo@sip.x", "watcher": "juliet@x", "verdict": "allow"}),
        ("drain", {"confirm": True}),
    ):
        r = await client.post(f"/console/api/actions/{action}", json=body, headers=AUTH)
        assert r.status == 403, action
    snap = await (await client.get("/console/api/state", headers=AUTH)).json()
    assert snap["trace"] == {"sip": False, "xmpp": False}
    assert snap["pending"] != []


async def test_trace_action_switches_and_is_logged(
    make_client: Make, caplog: pytest.LogCaptureFixture
) -> None:
    src = sources()
    client = await make_client(src, console_actions=True)
    caplog.set_level(logging.INFO, logger="gateway.admin.console")
    assert src.trace is not None
    try:
        r = await client.post("/console/api/actions/trace", json={"sip": True}, headers=AUTH)
        assert (r.status, await r.json()) == (200, {"sip": True, "xmpp": False})
        assert src.trace.state() == {"sip": True, "xmpp": False}
    finally:
        src.trace.set("sip", False)  # the switch is process-wide (logger filters)
    line = next(rec for rec in caplog.records if rec.getMessage() == "console action")
    fields = line.fields  # type: ignore[attr-defined]
    assert fields["action"] == "trace" and fields["sip"] is True
    assert fields["peer"] == "127.0.0.1"
    for bad in ({"sip": "yes"}, {"voice": True}, {}, [1]):
        r = await client.post("/console/api/actions/trace", json=bad, headers=AUTH)
        assert r.status == 400, bad
    r = await client.post("/console/api/actions/trace", data=b"{", headers=AUTH)
    assert r.status == 400
    assert (await client.post("/console/api/actions/nope", json={}, headers=AUTH)).status == 404


async def test_authorization_action_calls_decide(make_client: Make) -> None:
    hosted = Hosted()
    client = await make_client(
        sources(pending=hosted.pending, decide=hosted.decide), console_actions=True
    )
    url = "/console/api/actions/authorization"
    wrong = {"aor": "sip:romeo@sip.x", "watcher": "paris@x", "verdict": "allow"}
    assert (await client.post(url, json=wrong, headers=AUTH)).status == 404
    bad = {"aor": "sip:romeo@sip.x", "watcher": "juliet@x", "verdict": "maybe"}
    assert (await client.post(url, json=bad, headers=AUTH)).status == 400
    good = {"aor": "sip:romeo@sip.x", "watcher": "juliet@x", "verdict": "deny"}
    r = await client.post(url, json=good, headers=AUTH)
    assert (r.status, await r.json()) == (200, good)
    assert hosted.decided == [("sip:romeo@sip.x", "sip:juliet@x", "deny")]
    assert (await client.post(url, json=good, headers=AUTH)).status == 404  # settled


async def test_drain_action_needs_confirmation(make_client: Make) -> None:
    calls: list[bool] = []
    client = await make_client(sources(drain=lambda: calls.append(True)), console_actions=True)
    url = "/console/api/actions/drain"
    assert (await client.post(url, json={}, headers=AUTH)).status == 400
    assert calls == []
    r = await client.post(url, json={"confirm": True}, headers=AUTH)
    assert (r.status, await r.json()) == (200, {"draining": True})
    assert calls == [True]


# -- configuration ---------------------------------------------------------------------------

MINIMAL = """
[[xmpp.components]]
domain = "sip.example.org"
secret = "s"
"""


def _admin(text: str) -> AdminConfig:
    return load_config(tomllib.loads(MINIMAL + text), base_dir=Path("/tmp"), env={}).admin


def test_console_keys() -> None:
    cfg = _admin("")
    assert (cfg.console_fates, cfg.console_streams, cfg.console_actions) == (1000, 8, False)
    cfg = _admin("[admin]\nconsole_fates = 0\nconsole_streams = 2\nconsole_actions = true")
    assert (cfg.console_fates, cfg.console_streams, cfg.console_actions) == (0, 2, True)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("console_fates = -1", "admin.console_fates"),
        ("console_fates = 100001", "admin.console_fates"),
        ("console_streams = 1001", "admin.console_streams"),
        ("console_actions = 'yes'", "admin.console_actions"),
    ],
)
def test_console_key_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _admin(f"[admin]\n{text}")
    assert info.value.path == key


def test_static_files_ship_with_the_package() -> None:
    """pyproject's package-data takes every file the console serves into the wheel."""
    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["gateway"]
    package = root / "gateway"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    for name in ("index.html", *console.STATIC):
        assert console.STATIC_DIR / name in shipped, name


async def test_stopping_the_server_ends_open_streams_at_once() -> None:
    """A graceful stop must not wait for viewers (aiohttp's shutdown timeout is 60 s)."""
    import aiohttp

    from gateway.admin.server import AdminServer
    from tests.harness.ports import free_port

    port = free_port()
    server = AdminServer(
        AdminConfig(port=port, token=TOKEN), lambda: Readiness(True, {}), sources()
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            resp = await session.get(f"http://127.0.0.1:{port}/console/events", headers=AUTH)
            assert resp.status == 200
            await _first_event(resp)
            loop = asyncio.get_running_loop()
            began = loop.time()
            await asyncio.wait_for(server.stop(), 5)
            assert loop.time() - began < 2.0
            resp.close()
    finally:
        await server.stop()

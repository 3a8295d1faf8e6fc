"""Operators' access to users' XCAP documents: the admin API's /documents routes
(token only) and `cpim-gateway lists`; the `[xcap]` configuration section."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin.server import AdminSources, Readiness, create_app
from gateway.config import AdminConfig, ConfigError, XcapConfig, load_config
from gateway.store.memory import MemoryStore
from gateway.xcap.service import XcapDocuments

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ALICE = "sip:alice@sip.localhost"
LISTS = (
    b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">'
    b'<list name="f"><entry uri="sip:bob@example.com"/></list></resource-lists>'
)
Make = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def make_client() -> AsyncIterator[Make]:
    clients: list[TestClient[Any, Any]] = []

    async def make(docs: XcapDocuments | None, token: str | None = TOKEN) -> TestClient[Any, Any]:
        app = create_app(
            AdminConfig(token=token), lambda: Readiness(True, {}), AdminSources(documents=docs)
        )
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def test_admin_documents_round_trip(make_client: Make) -> None:
    docs = XcapDocuments(MemoryStore(), max_bytes=65536)
    changed: list[str] = []
    docs.on_change(lambda auid, aor, name: changed.append(auid))
    client = await make_client(docs)
    url = f"/documents/{ALICE}/resource-lists"
    assert (await client.get(url)).status == 401  # the token
    assert (await client.put(url, data=LISTS)).status == 401
    assert (await client.get(url, headers=AUTH)).status == 404
    put = await client.put(url, data=LISTS, headers=AUTH)
    assert put.status == 200
    answer = await put.json()
    assert answer["status"] == 201 and answer["etag"].startswith('"')
    assert changed == ["resource-lists"]  # the same announcements as XCAP writes
    got = await client.get(url, headers=AUTH)
    assert (got.status, await got.read(), got.headers["ETag"]) == (200, LISTS, answer["etag"])
    assert got.headers["Content-Type"] == "application/resource-lists+xml"
    listing = await (await client.get(f"/documents/{ALICE}", headers=AUTH)).json()
    assert [(d["auid"], d["size"]) for d in listing["documents"]] == [
        ("resource-lists", len(LISTS))
    ]
    bad = await client.put(url, data=b"<resource-lists", headers=AUTH)
    assert bad.status == 409 and b"not-well-formed" in await bad.read()
    assert (await client.put(f"/documents/{ALICE}/nope", data=LISTS, headers=AUTH)).status == 404
    assert (await client.get("/documents/not-an-aor/resource-lists", headers=AUTH)).status == 404
    assert (await client.delete(url, headers=AUTH)).status == 200
    assert (await client.delete(url, headers=AUTH)).status == 404
    assert changed == ["resource-lists"] * 2


async def test_admin_documents_need_a_configured_token(make_client: Make) -> None:
    docs = XcapDocuments(MemoryStore(), max_bytes=65536)
    client = await make_client(docs, token=None)
    assert (await client.get(f"/documents/{ALICE}/resource-lists")).status == 403
    assert (await client.put(f"/documents/{ALICE}/resource-lists", data=LISTS)).status == 403
    assert docs.store.xcap_documents() == ()


def test_xcap_config_section(tmp_path: Path) -> None:
    base = {"xmpp": {"components": [{"domain": "sip.example.org", "secret": "s"}]}}
    assert load_config(base, base_dir=tmp_path).xcap == XcapConfig()
    cfg = load_config(
        base | {"xcap": {"enabled": True, "host": "::1", "port": 8443, "root": "/x/root"}},
        base_dir=tmp_path,
    )
    assert (cfg.xcap.enabled, cfg.xcap.host, cfg.xcap.port, cfg.xcap.root) == (
        True,
        "::1",
        8443,
        "/x/root",
    )
    for bad, key in (
        ({"root": "xcap"}, "xcap.root"),
        ({"root": "/a b"}, "xcap.root"),
        ({"port": 0}, "xcap.port"),
        ({"host": "localhost"}, "xcap.host"),
        ({"max_document_size": 10}, "xcap.max_document_size"),
        ({"certificate": "c.pem"}, "xcap.certificate"),
        ({"bogus": 1}, "xcap.bogus"),
    ):
        with pytest.raises(ConfigError) as info:
            load_config(base | {"xcap": bad}, base_dir=tmp_path)
        assert info.value.path == key, (bad, info.value)


def test_lists_command(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        f'[gateway]\nstate_dir = "{tmp_path / "state"}"\n'
        '[[xmpp.components]]\ndomain = "sip.localhost"\nsecret = "s"\n'
    )
    doc = tmp_path / "lists.xml"
    doc.write_bytes(LISTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def lists(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "lists", *args, "-c", str(cfg)],
            env=env, input=data, capture_output=True, timeout=60, check=False,
        )  # fmt: skip

    missing = lists("get", ALICE, "resource-lists")
    assert missing.returncode == 1 and b"has no resource-lists document" in missing.stderr
    put = lists("put", ALICE, "resource-lists", str(doc))
    assert put.returncode == 0, put.stderr
    assert put.stdout.startswith(b'put resource-lists of sip:alice@sip.localhost: 201 "')
    assert lists("get", "alice@sip.localhost", "resource-lists").stdout == LISTS
    bad = lists("put", ALICE, "pres-rules", data=LISTS)  # from stdin, not pres-rules
    assert bad.returncode == 1 and b"409" in bad.stderr
    assert lists("put", ALICE, "nope", str(doc)).returncode == 1
    assert lists("delete", ALICE, "resource-lists").returncode == 0
    assert lists("get", ALICE, "resource-lists").returncode == 1


def test_check_config_names_the_xcap_server(tmp_path: Path) -> None:
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[[xmpp.components]]\ndomain = "sip.localhost"\nsecret = "s"\n'
        '[xcap]\nenabled = true\nport = 8091\nroot = "/buddies"\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(cfg)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "xcap       http://127.0.0.1:8091/buddies" in out.stdout

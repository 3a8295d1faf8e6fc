"""The admin server's static web route (/web/, gateway/admin/webroot.py) and its
config key `[admin] web_root`: off by default, serves one directory with its
index at /web/, no listing, no traversal, no symlinks out, a CSP that keeps the
page's code on this server, and no bearer token for it (a browser has none)."""

from __future__ import annotations

import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.admin.server import Readiness, create_app
from gateway.config import AdminConfig, ConfigError, load_config

MINIMAL = """
[[xmpp.components]]
domain = "sip.example.org"
secret = "s"
"""
Make = Callable[..., Awaitable[TestClient[Any, Any]]]


def _load(text: str, base: Path) -> AdminConfig:
    return load_config(tomllib.loads(MINIMAL + text), base_dir=base, env={}).admin


def test_web_root_is_off_by_default_and_relative_to_the_config(tmp_path: Path) -> None:
    assert _load("", tmp_path).web_root is None
    (tmp_path / "site").mkdir()
    assert _load("[admin]\nweb_root = 'site'", tmp_path).web_root == tmp_path / "site"


@pytest.mark.parametrize(
    ("value", "problem"),
    [("'missing'", "is not a directory"), ("''", "must name a directory"), ("'f'", "not a dir")],
)
def test_web_root_errors_name_the_key(value: str, problem: str, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file")
    with pytest.raises(ConfigError) as info:
        _load(f"[admin]\nweb_root = {value}", tmp_path)
    assert info.value.path == "admin.web_root"
    assert problem in info.value.problem


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "vendor").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>demo</title>")
    (root / "vendor" / "lib.js").write_text("var x = 1;")
    (tmp_path / "secret.txt").write_text("outside the root")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.fixture
async def make_client() -> AsyncIterator[Make]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**cfg: Any) -> TestClient[Any, Any]:
        app = create_app(AdminConfig(**cfg), lambda: Readiness(True, {}))
        client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def test_without_web_root_there_is_no_web_route(make_client: Make) -> None:
    client = await make_client()
    assert (await client.get("/web/")).status == 404
    assert (await client.get("/web/index.html")).status == 404


async def test_serves_index_and_files_with_the_security_headers(
    make_client: Make, site: Path
) -> None:
    client = await make_client(web_root=site)
    resp = await client.get("/web/")
    assert resp.status == 200
    assert "<title>demo</title>" in await resp.text()
    assert resp.content_type == "text/html"
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    js = await client.get("/web/vendor/lib.js")
    assert js.status == 200 and await js.text() == "var x = 1;"
    assert js.headers["Content-Security-Policy"] == csp
    bare = await client.get("/web", allow_redirects=False)
    assert bare.status == 308 and bare.headers["Location"] == "/web/"


async def test_no_listing_no_traversal_no_symlink_out(make_client: Make, site: Path) -> None:
    client = await make_client(web_root=site)
    assert (await client.get("/web/vendor/")).status in (403, 404)
    assert (await client.get("/web/../secret.txt")).status == 404
    assert (await client.get("/web/%2e%2e/secret.txt")).status in (403, 404)
    assert (await client.get("/web/link.txt")).status in (403, 404)
    assert (await client.get("/web/nope.js")).status == 404


async def test_web_is_public_while_the_api_keeps_its_token(make_client: Make, site: Path) -> None:
    client = await make_client(web_root=site, token="t0ken")
    assert (await client.get("/web/")).status == 200
    assert (await client.get("/web/vendor/lib.js")).status == 200
    assert (await client.get("/readyz")).status == 401
    assert (await client.get("/webx")).status == 401
    ok = await client.get("/readyz", headers={"Authorization": "Bearer t0ken"})
    assert ok.status == 200


async def test_without_web_root_web_paths_keep_the_token(make_client: Make) -> None:
    client = await make_client(token="t0ken")
    assert (await client.get("/web/")).status == 401

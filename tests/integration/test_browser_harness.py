"""The browser harness (tests/harness/browser.py) and the demo page without a gateway:
Debian's chromium under Playwright loads pages from the admin server's /web/ route
on loopback, runs their scripts, enforces the route's CSP, and never reaches a
host outside loopback; the demo page loads the pinned JsSIP bundle from the same
server and reads PIDF documents the gateway's own builder (mappings.pidf) makes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from gateway.admin.server import Readiness, create_app
from gateway.config import AdminConfig
from mappings.pidf import Basic, Note, Person, PresenceDocument, Tuple, build_pidf
from tests.harness.browser import Browser, demo_web_root, screenshot


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Path], object]]:
    runners: list[web.AppRunner] = []

    async def start(root: Path) -> str:
        app = create_app(AdminConfig(port=0, web_root=root), lambda: Readiness(True, {}))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}/web/"

    yield start
    for r in runners:
        await r.cleanup()


async def test_trivial_page_runs_its_script_under_csp_and_stays_on_loopback(
    serve: Callable[[Path], object], tmp_path: Path
) -> None:
    (tmp_path / "index.html").write_text(
        "<!doctype html><title>t</title><p id=out>static</p>"
        "<p id=inline>inline not run</p>"
        "<script>document.getElementById('inline').textContent = 'inline ran'</script>"
        "<img src='http://192.0.2.1/x.png'><img src='http://example.org/y.png'>"
        "<script src='app.js'></script>"
    )
    (tmp_path / "app.js").write_text(
        "document.getElementById('out').textContent = 'script ran ' + navigator.userAgent;"
    )
    url = await serve(tmp_path)  # type: ignore[misc]
    async with Browser() as browser:
        assert browser.version.split(".")[0].isdigit()
        page = await browser.page()
        await page.goto(url)
        await page.wait_for_function("document.getElementById('out').textContent !== 'static'")
        text = await page.text_content("#out")
        assert text is not None and text.startswith("script ran ") and "HeadlessChrome" in text
        # The route's CSP allows scripts from the server only: the inline one never ran.
        assert await page.text_content("#inline") == "inline not run"
        shot = await screenshot(page, "browser-harness-trivial")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # The CSP (img-src 'self') stopped the foreign images before any request.
        assert browser.blocked == []
        # A page without that CSP: the harness aborts what is not loopback.
        bare = await browser.page()
        await bare.set_content(
            "<img src='http://192.0.2.1/x.png'><img src='http://example.org/y.png'>"
            f"<img src='{url}nothing.png'>",
            wait_until="load",
        )
    assert sorted(browser.blocked) == ["http://192.0.2.1/x.png", "http://example.org/y.png"]


def _pidf(basic: Basic, show: str | None = None, note: str = "", activity: str = "") -> str:
    doc = PresenceDocument(
        entity="pres:juliet@localhost",
        tuples=(Tuple(id="t1", basic=basic, show=show, notes=(Note(note),) if note else ()),),
        person=Person(id="p1", activities=frozenset({activity})) if activity else None,
    )
    return build_pidf(doc).decode()


async def test_demo_page_loads_the_pinned_jssip_and_reads_the_gateways_pidf(
    serve: Callable[[Path], object],
) -> None:
    url = await serve(demo_web_root())  # type: ignore[misc]
    async with Browser() as browser:
        page = await browser.page()
        await page.goto(url + "?ws=ws://127.0.0.1:9/")
        await page.wait_for_function("window.JsSIP !== undefined && window.cpimDemo")
        version = await page.evaluate("JsSIP.version")
        lock = json.loads((demo_web_root().parent / "package-lock.json").read_text())
        assert version == lock["packages"]["node_modules/jssip"]["version"]
        assert await page.input_value("#ws") == "ws://127.0.0.1:9/"
        cases = [
            (_pidf("open", note="at the balcony"), "available", "at the balcony"),
            (_pidf("open", show="away"), "away", ""),
            (_pidf("open", activity="away", note="brb"), "away", "brb"),
            (_pidf("open", show="dnd"), "busy", ""),
            (_pidf("closed", note="gone"), "offline", "gone"),
        ]
        for xml, status, note in cases:
            got = await page.evaluate("x => window.cpimDemo.parsePidf(x)", xml)
            assert got == {"status": status, "note": note}, xml
        assert await page.evaluate("window.cpimDemo.parsePidf('<not xml')") is None
    assert browser.blocked == [], browser.blocked
    assert not [c for c in browser.console if c.startswith("pageerror")], browser.console_tail()

"""Headless Chromium (Debian's `chromium`) driven through Playwright for Python.

The system browser only: `executable_path` is the installed `chromium`, never a
build that `playwright install` downloads (that command is never run). Flags for
a root/CI container: --no-sandbox, --headless=new, --disable-gpu. Loopback only:
host names resolve to nothing but 127.0.0.1 (`--host-resolver-rules`), and every
request of the page to a host that is not loopback is aborted and recorded in
`Browser.blocked`, so a test can show the page fetched nothing from elsewhere.
WebSocket connections are not routed through Playwright (that would proxy the SIP
traffic under test); the resolver rules keep them to loopback names.

A missing `chromium` or `playwright` skips the test locally and fails it in CI
(`require_binary`, `require_playwright`). Screenshots go to `artifact_dir()`:
$TEST_ARTIFACTS, or tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.harness import in_ci, require_binary

if TYPE_CHECKING:
    from playwright.async_api import Browser as PwBrowser
    from playwright.async_api import Page, Playwright, Route

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
FLAGS = (
    "--no-sandbox",  # root in a container: no user namespaces for the sandbox
    "--headless=new",
    "--disable-gpu",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
)


def require_playwright() -> None:
    """Skip (locally) or fail (in CI) when Playwright for Python is not installed."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        reason = "playwright not installed (pip install -e '.[test]'; scripts/install-deps.sh)"
        if in_ci():
            pytest.fail(f"CI: {reason}", pytrace=False)
        pytest.skip(reason)


def artifact_dir() -> Path:
    """Where tests keep what a person looks at afterwards (screenshots)."""
    path = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return (parts.hostname or "") in LOOPBACK_HOSTS


class Browser:
    """One headless Chromium; `async with Browser() as b: page = await b.page()`."""

    def __init__(self) -> None:
        require_playwright()
        self.executable = require_binary("chromium")
        self.blocked: list[str] = []  # URLs the page asked for outside loopback
        self.console: list[str] = []  # console messages and page errors, for diagnostics
        self._pw: Playwright | None = None
        self._browser: PwBrowser | None = None

    async def __aenter__(self) -> Browser:
        from playwright.async_api import async_playwright

        self._pw = await async_playwright().start()
        self._browser = await self._pw.chromium.launch(
            executable_path=self.executable, headless=True, args=list(FLAGS)
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._pw is not None:
            await self._pw.stop()

    @property
    def version(self) -> str:
        assert self._browser is not None
        return self._browser.version

    async def page(self, viewport: tuple[int, int] = (1000, 700)) -> Page:
        """A page in a fresh context, loopback only, its console kept in `console`."""
        assert self._browser is not None
        context = await self._browser.new_context(
            viewport={"width": viewport[0], "height": viewport[1]}, service_workers="block"
        )
        await context.route("**/*", self._only_loopback)
        page = await context.new_page()
        page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"pageerror: {exc}"))
        return page

    async def _only_loopback(self, route: Route) -> None:
        url = route.request.url
        if is_loopback(url):
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort("addressunreachable")

    def console_tail(self, lines: int = 40) -> str:
        return "\n".join(self.console[-lines:])


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under artifact_dir(); its path is printed for the test log."""
    path = artifact_dir() / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def demo_web_root() -> Path:
    """web/demo with its JsSIP bundle built (scripts/web-build.sh, npm ci, pinned)."""
    require_binary("npm", package="nodejs npm")
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "web-build.sh")],
        check=False,
        capture_output=True,
        text=True,
    )
    if built.returncode != 0:
        pytest.fail(f"scripts/web-build.sh failed:\n{built.stdout}{built.stderr}", pytrace=False)
    root = ROOT / "web" / "demo"
    assert (root / "vendor" / "jssip.min.js").stat().st_size > 100_000
    return root

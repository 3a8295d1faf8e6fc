"""The static web route of the admin HTTP server: /web/ serves one directory.

Used for the browser demo (web/demo: a page with JsSIP that talks SIP over the
gateway's WebSocket listener, docs/operations.md). Off unless `[admin] web_root`
names a directory. The files are public (no bearer token: a browser cannot send
one), never listed, symlinks not followed, and every response carries a
Content-Security-Policy that lets the page load scripts, styles and images only
from this server and connect only to WebSocket URLs: the page never fetches
code from elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PREFIX = "/web/"
INDEX = "index.html"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def is_public(path: str) -> bool:
    """True for the paths the bearer token does not guard."""
    return path == PREFIX.rstrip("/") or path.startswith(PREFIX)


@web.middleware
async def _headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.update(HEADERS)
    return response


def add_web_root(app: web.Application, root: Path) -> None:
    """Serve `root` at /web/ (its index.html at /web/ itself) under `app`."""
    index = root / INDEX

    async def _index(request: web.Request) -> web.StreamResponse:
        if not index.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(index)

    async def _slash(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(PREFIX)

    sub = web.Application(middlewares=[_headers])
    sub.router.add_get("/", _index)
    sub.router.add_static("/", root, follow_symlinks=False, show_index=False)
    app.router.add_get(PREFIX.rstrip("/"), _slash)
    app.add_subapp(PREFIX, sub)

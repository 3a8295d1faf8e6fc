"""Admin HTTP API (aiohttp app factory), embedded in the gateway's loop.

/healthz: the process is alive. /readyz: every component link is up and every
SIP listener is bound. /metrics: the Prometheus registry (text exposition, or
OpenMetrics when asked for). /links, /registrations, /subscriptions: JSON
listings from providers the composition root passes in. GET/POST /trace: the
runtime switch of the SIP and XMPP wire traces. /web/: static files (the
browser demo) when `[admin] web_root` is set (gateway/admin/webroot.py).
/console/: the operator console, its data and its live stream (console.py).
/documents/: users' XCAP documents, with a token only (documents.py).
Everything but /healthz, /web/ and the console's static page needs the bearer token when one is
configured. docs/admin-api.md describes it all.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.exposition import choose_encoder

from gateway.admin import console
from gateway.admin.documents import add_documents
from gateway.admin.sources import AdminSources, json_default, rows, trace_wanted
from gateway.admin.webroot import add_web_root, is_public
from gateway.config import AdminConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports; produced on demand by the composition root."""

    ready: bool
    checks: dict[str, bool]


ReadinessProbe = Callable[[], Readiness]
LISTINGS = ("links", "listeners", "registrations", "subscriptions")
DEFAULT_LIMIT = 1000
MAX_LIMIT = 100_000

__all__ = ["AdminServer", "AdminSources", "Readiness", "create_app"]


PROBE = web.AppKey[ReadinessProbe]("probe")
SOURCES = web.AppKey[AdminSources]("sources")


def _auth_middleware(token: str, web_root: bool) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        path = request.path
        public = path == "/healthz" or (web_root and is_public(path)) or console.is_public(path)
        if not public and not hmac.compare_digest(given, expected):
            log.warning(
                "admin request refused",
                extra={"fields": {"path": request.path, "peer": request.remote}},
            )
            return web.json_response(
                {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return await handler(request)

    return check


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def _readyz(request: web.Request) -> web.Response:
    r = request.app[PROBE]()
    return web.json_response({"ready": r.ready, "checks": r.checks}, status=200 if r.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    registry = request.app[SOURCES].registry
    if registry is None:
        return web.json_response({"error": "no metrics registry"}, status=404)
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(registry), headers={"Content-Type": content_type})


def _limit(request: web.Request) -> int:
    text = request.query.get("limit", str(DEFAULT_LIMIT))
    if not text.isdigit() or not 0 < int(text) <= MAX_LIMIT:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"limit must be 1..{MAX_LIMIT}"}),
            content_type="application/json",
        )
    return int(text)


async def _listing(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    provider = request.app[SOURCES].listings.get(name)
    if provider is None:
        return web.json_response({"error": f"{name} not available in this gateway"}, status=404)
    limit = _limit(request)
    found = await rows(provider)
    body = {"count": len(found), "truncated": len(found) > limit, name: found[:limit]}
    return web.json_response(body, dumps=lambda obj: json.dumps(obj, default=json_default))


async def _trace_get(request: web.Request) -> web.Response:
    trace = request.app[SOURCES].trace
    if trace is None:
        return web.json_response({"error": "no wire trace"}, status=404)
    return web.json_response(trace.state())


async def _trace_post(request: web.Request) -> web.Response:
    trace = request.app[SOURCES].trace
    if trace is None:
        return web.json_response({"error": "no wire trace"}, status=404)
    try:
        wanted = await request.json()
    except ValueError:
        return web.json_response({"error": "body must be JSON"}, status=400)
    wanted = trace_wanted(wanted, trace.state())
    if wanted is None:
        return web.json_response(
            {"error": 'body must be like {"sip": true, "xmpp": false}'}, status=400
        )
    for kind, on in wanted.items():
        trace.set(kind, on)
    log.info(
        "wire trace changed through the admin API",
        extra={"fields": {**trace.state(), "peer": request.remote}},
    )
    return web.json_response(trace.state())


def create_app(
    cfg: AdminConfig, probe: ReadinessProbe, sources: AdminSources | None = None
) -> web.Application:
    middlewares: list[Middleware] = (
        [_auth_middleware(cfg.token, cfg.web_root is not None)] if cfg.token else []
    )
    app = web.Application(middlewares=middlewares)
    app[PROBE] = probe
    app[SOURCES] = sources or AdminSources()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/trace", _trace_get)
    app.router.add_post("/trace", _trace_post)
    app.router.add_get(r"/{name:" + "|".join(LISTINGS) + "}", _listing)
    if cfg.web_root is not None:
        add_web_root(app, cfg.web_root)
    console.add_console(app, cfg, app[SOURCES])
    add_documents(app, cfg, app[SOURCES])  # users' XCAP documents (docs/admin-api.md)
    return app


class AdminServer:
    """Runs the admin app on the configured address inside the current loop."""

    def __init__(
        self, cfg: AdminConfig, probe: ReadinessProbe, sources: AdminSources | None = None
    ) -> None:
        self._cfg = cfg
        self._runner = web.AppRunner(create_app(cfg, probe, sources), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._cfg.address, self._cfg.port, reuse_address=True)
        await site.start()
        log.info(
            "admin API listening",
            extra={"fields": {"url": f"http://{self._cfg.address}:{self._cfg.port}/"}},
        )

    async def stop(self) -> None:
        await self._runner.cleanup()

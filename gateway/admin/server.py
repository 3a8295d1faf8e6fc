"""Admin HTTP API (aiohttp app factory), embedded in the gateway's loop.

/healthz: the process is alive. /readyz: every component link is up and every
SIP listener is bound. Both answer JSON. docs/admin-api.md describes them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.config import AdminConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Readiness:
    """What /readyz reports; produced on demand by the composition root."""

    ready: bool
    checks: dict[str, bool]


ReadinessProbe = Callable[[], Readiness]
PROBE = web.AppKey[ReadinessProbe]("probe")


def _auth_middleware(token: str) -> Middleware:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if request.path != "/healthz" and not hmac.compare_digest(given, expected):
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


def create_app(cfg: AdminConfig, probe: ReadinessProbe) -> web.Application:
    middlewares: list[Middleware] = [_auth_middleware(cfg.token)] if cfg.token else []
    app = web.Application(middlewares=middlewares)
    app[PROBE] = probe
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


class AdminServer:
    """Runs the admin app on the configured address inside the current loop."""

    def __init__(self, cfg: AdminConfig, probe: ReadinessProbe) -> None:
        self._cfg = cfg
        self._runner = web.AppRunner(create_app(cfg, probe), access_log=None)

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

"""The operator console (issue 26): a live page of the gateway's state and message fates.

Routes under the admin HTTP server (docs/admin-api.md "Console"):

* `/console/` and `/console/static/{console.js,console.css}`: the page, static files
  shipped in the package (gateway/admin/console_static). Public like /web/: they carry no
  data. The page asks for the admin token, keeps it in sessionStorage and sends it as
  `Authorization: Bearer` on every fetch, so the token never appears in a URL.
* `/console/api/state`: one snapshot (links, listeners, registrations, subscriptions,
  pending authorizations, wire traces, chart samples). `/console/api/fates`: the last
  message fates, filtered. `/console/events`: the same snapshot every second as
  server-sent events, read by the page with fetch() so that it can send the header.
  All three need the token (the auth middleware in server.py).
* `POST /console/api/actions/{trace,authorization,drain}`: only with
  `[admin] console_actions = true`, each logged with the peer and what it did.

Memory stays flat with many viewers: the snapshot is built once per tick and shared, a
stream holds no buffer of its own (one write at a time, with a timeout), and past
`[admin] console_streams` open streams a new one gets 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from aiohttp import web

from gateway.admin.sources import AdminSources, json_default, rows, trace_wanted
from gateway.config import AdminConfig
from gateway.fates import FateFilter, FateRing, select
from gateway.logs import event

log = logging.getLogger(__name__)

PREFIX = "/console"
STATIC_DIR = Path(__file__).with_name("console_static")
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TICK = 1.0  # seconds between snapshots and chart samples
SAMPLES = 120  # chart history: two minutes
ROWS = 200  # rows per listing in a snapshot (the JSON listings give them all)
WRITE_TIMEOUT = 10.0  # a stream that cannot take one snapshot in this time is closed
DIRECTIONS = frozenset({"sip_to_xmpp", "xmpp_to_sip"})
FATES = frozenset({"delivered", "rejected", "failed", "timeout", "collapsed", "held", "ignored"})
FILTER_KEYS = frozenset({"direction", "fate", "q", "limit"})
MAX_TEXT = 128
DEFAULT_FATE_LIMIT = 100


def is_public(path: str) -> bool:
    """The page and its static files: no data, no token (a browser cannot send one on
    navigation)."""
    return path in (PREFIX, PREFIX + "/") or path.startswith(PREFIX + "/static/")


class Sample(NamedTuple):
    """One chart point: messages per second, errors per second and the mean handling time
    (milliseconds) of the messages that ended during the tick."""

    at: float
    rate: float
    errors: float
    latency_ms: float


class Hub:
    """Per app: the chart samples, the open streams and the snapshot of the current tick."""

    def __init__(
        self,
        cfg: AdminConfig,
        sources: AdminSources,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.sources = sources
        self.fates = sources.fates if sources.fates is not None else FateRing(0)
        self.wall = wall
        self.samples: deque[Sample] = deque(maxlen=SAMPLES)
        self.streams = 0
        self.ticks = 0
        self.closing = False
        self._tick = asyncio.Event()
        self._last = (wall(), self.fates.totals())
        self._frame: tuple[int, bytes] | None = None

    def sample(self) -> None:
        """One tick: a chart point from the ring's running totals; wakes the streams."""
        now, totals = self.wall(), self.fates.totals()
        then, before = self._last
        span = max(now - then, 1e-3)
        count = totals.messages - before.messages
        seconds = totals.seconds - before.seconds
        latency = seconds / count * 1000 if count else 0.0
        self.samples.append(
            Sample(now, count / span, (totals.errors - before.errors) / span, latency)
        )
        self._last = (now, totals)
        self.ticks += 1
        self.wake()

    def wake(self) -> None:
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()

    async def next_tick(self) -> None:
        tick = self._tick
        try:
            await asyncio.wait_for(tick.wait(), TICK * 5)
        except TimeoutError:
            return

    async def snapshot(self) -> dict[str, Any]:
        src = self.sources
        listings = src.listings
        regs = await rows(listings["registrations"]) if "registrations" in listings else []
        subs = await rows(listings["subscriptions"]) if "subscriptions" in listings else []
        pending = src.pending() if src.pending is not None else []
        return {
            "at": self.wall(),
            "links": await rows(listings["links"]) if "links" in listings else [],
            "listeners": await rows(listings["listeners"]) if "listeners" in listings else [],
            "registrations": _capped([_registration(r) for r in regs[:ROWS]], len(regs)),
            "subscriptions": _capped([_subscription(s) for s in subs[:ROWS]], len(subs)),
            "pending": [{"aor": p.aor, "watcher": p.watcher} for p in pending[:ROWS]],
            "trace": src.trace.state() if src.trace is not None else None,
            "actions": {
                "enabled": self.cfg.console_actions,
                "trace": src.trace is not None,
                "authorization": src.decide is not None,
                "drain": src.drain is not None,
            },
            "fates": {"seq": self.fates.last_seq(), "kept": len(self.fates)},
            "chart": [s._asdict() for s in self.samples],
        }

    async def frame(self) -> bytes:
        """This tick's snapshot as one SSE event, built once for every stream."""
        if self._frame is None or self._frame[0] != self.ticks:
            data = json.dumps(await self.snapshot(), default=json_default)
            self._frame = (self.ticks, f"event: snapshot\ndata: {data}\n\n".encode())
        return self._frame[1]


HUB = web.AppKey[Hub]("console_hub")


def _capped(items: list[Any], count: int) -> dict[str, Any]:
    return {"count": count, "truncated": count > len(items), "rows": items}


def _registration(r: Mapping[str, Any]) -> dict[str, Any]:
    flow = r.get("flow") or {}
    contact = str(r.get("contact", ""))
    transport = flow.get("transport") or _uri_transport(contact)
    return {
        "aor": r.get("aor"),
        "contact": contact,
        "transport": transport,
        "expires_at": r.get("expires_at"),
        "received": r.get("received"),
    }


def _uri_transport(uri: str) -> str:
    for param in uri.split(">", maxsplit=1)[0].split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "transport":
            return value.strip().lower()
    return "udp"


def _subscription(s: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("direction", "watcher", "target", "event", "state", "expires_at")
    return {k: s.get(k) for k in keys} | {"authorization": s.get("xmpp_authorization")}


def _bad(message: str, status: int = 400) -> web.Response:
    return web.json_response({"error": message}, status=status)


def parse_filter(query: Mapping[str, str], items: int) -> tuple[FateFilter, int] | str:
    """The fate filter of a query string (`items`: its number of key=value pairs), or
    what is wrong with it (-> 400)."""
    unknown = sorted(set(query) - FILTER_KEYS)
    if unknown:
        return f"unknown parameter {unknown[0][:32]!r}"
    if items != len(set(query)):
        return "a parameter is repeated"
    direction = query.get("direction") or None
    if direction is not None and direction not in DIRECTIONS:
        return f"direction must be one of {', '.join(sorted(DIRECTIONS))}"
    fate = query.get("fate") or None
    if fate is not None and fate not in FATES:
        return f"fate must be one of {', '.join(sorted(FATES))}"
    text = query.get("q") or None
    if text is not None and (len(text) > MAX_TEXT or not text.isprintable()):
        return f"q must be at most {MAX_TEXT} printable characters"
    raw = query.get("limit") or str(DEFAULT_FATE_LIMIT)
    if not raw.isdigit() or len(raw) > 6 or not 0 < int(raw) <= 1000:
        return "limit must be 1..1000"
    return FateFilter(direction, fate, text), int(raw)


# -- handlers ----------------------------------------------------------------------------------


async def _page(request: web.Request) -> web.StreamResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers=HEADERS)


async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(PREFIX + "/")


async def _static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in STATIC:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC_DIR / name, headers={**HEADERS, "Content-Type": STATIC[name]})


async def _state(request: web.Request) -> web.Response:
    body = await request.app[HUB].snapshot()
    return web.json_response(body, dumps=lambda obj: json.dumps(obj, default=json_default))


async def _fates(request: web.Request) -> web.Response:
    parsed = parse_filter(request.query, len(request.query))
    if isinstance(parsed, str):
        return _bad(parsed)
    wanted, limit = parsed
    ring = request.app[HUB].fates
    found = select(ring, wanted, limit)
    return web.json_response(
        {"seq": ring.last_seq(), "limit": ring.limit, "fates": [f._asdict() for f in found]}
    )


async def _events(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    if hub.streams >= hub.cfg.console_streams:
        return web.json_response(
            {"error": "too many live streams"}, status=503, headers={"Retry-After": "5"}
        )
    hub.streams += 1
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    try:
        await response.prepare(request)
        seen = -1
        while not hub.closing:
            if hub.ticks != seen:
                seen = hub.ticks
                await asyncio.wait_for(response.write(await hub.frame()), WRITE_TIMEOUT)
            await hub.next_tick()
    except (ConnectionError, TimeoutError):
        pass  # the viewer went away or stopped reading
    finally:
        hub.streams -= 1
    return response


async def _action(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    name = request.match_info["action"]
    if not hub.cfg.console_actions:
        return _bad("console actions are off ([admin] console_actions)", 403)
    try:
        body = await request.json()
    except ValueError:
        return _bad("body must be JSON")
    if not isinstance(body, dict):
        return _bad("body must be a JSON object")
    handler = _ACTIONS[name]
    answer = handler(hub.sources, body)
    if isinstance(answer, web.Response):
        return answer
    event(
        log,
        logging.WARNING,
        "console action",
        action=name,
        peer=request.remote,
        agent=request.headers.get("User-Agent", "-")[:80],
        **answer,
    )
    return web.json_response(answer)


def _act_trace(src: AdminSources, body: dict[str, Any]) -> dict[str, Any] | web.Response:
    if src.trace is None:
        return _bad("no wire trace", 404)
    wanted = trace_wanted(body, src.trace.state())
    if wanted is None:
        return _bad('body must be like {"sip": true, "xmpp": false}')
    for kind, on in wanted.items():
        src.trace.set(kind, on)
    return src.trace.state()


def _act_authorization(src: AdminSources, body: dict[str, Any]) -> dict[str, Any] | web.Response:
    if src.pending is None or src.decide is None:
        return _bad("no hosted users in this gateway", 404)
    aor, watcher, verdict = body.get("aor"), body.get("watcher"), body.get("verdict")
    if verdict not in ("allow", "deny") or not isinstance(aor, str) or not isinstance(watcher, str):
        return _bad('body must be like {"aor": ..., "watcher": ..., "verdict": "allow"}')
    entry = next((p for p in src.pending() if p.aor == aor and p.watcher == watcher), None)
    if entry is None or not src.decide(entry.aor, entry.sip_uri, verdict):
        return _bad("no such pending authorization", 404)
    return {"aor": aor, "watcher": watcher, "verdict": verdict}


def _act_drain(src: AdminSources, body: dict[str, Any]) -> dict[str, Any] | web.Response:
    if src.drain is None:
        return _bad("drain not available", 404)
    if body.get("confirm") is not True:
        return _bad('body must be {"confirm": true}')
    src.drain()
    return {"draining": True}


_ACTIONS: dict[str, Callable[[AdminSources, dict[str, Any]], dict[str, Any] | web.Response]] = {
    "trace": _act_trace,
    "authorization": _act_authorization,
    "drain": _act_drain,
}


def add_console(app: web.Application, cfg: AdminConfig, sources: AdminSources) -> None:
    """Mount the console's routes and its once-a-second sampler on the admin app."""
    hub = app[HUB] = Hub(cfg, sources)

    async def ticking(app: web.Application) -> AsyncIterator[None]:
        async def run() -> None:
            while True:
                await asyncio.sleep(TICK)
                hub.sample()

        task = asyncio.create_task(run())
        yield
        task.cancel()

    async def closing(app: web.Application) -> None:
        hub.closing = True  # open streams end now, not after the shutdown timeout
        hub.wake()

    app.cleanup_ctx.append(ticking)
    app.on_shutdown.append(closing)
    app.router.add_get(PREFIX, _slash)
    app.router.add_get(PREFIX + "/", _page)
    app.router.add_get(PREFIX + "/static/{name}", _static)
    app.router.add_get(PREFIX + "/api/state", _state)
    app.router.add_get(PREFIX + "/api/fates", _fates)
    app.router.add_get(PREFIX + "/events", _events)
    app.router.add_post(PREFIX + "/api/actions/{action:trace|authorization|drain}", _action)

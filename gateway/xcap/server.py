"""The XCAP server's HTTP side (RFC 4825 over aiohttp): its own listener, HTTP Digest
(RFC 7616) against the registrar's users, the owner check, and nothing else.

* ``<root>/<auid>/users/<xui>/...`` needs credentials: no or wrong ones get 401 with a
  challenge in the realm of the user the XUI names (the registrar's realm for that user,
  gateway/registrar/users.py), so the HA1 of the user file answers it; a user may reach
  only the documents of its own XUI (403 otherwise).
* ``<root>/xcap-caps/global/index`` (RFC 4825 §12) is public: it says what the server
  supports, nothing about users.
* Bodies are read only after authentication, bounded by ``[xcap] max_document_size``
  (413). The semantics are the pure core's (core.py through service.py); a store
  failure is 503: nothing is acknowledged that was not committed.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Final
from urllib.parse import unquote

from aiohttp import web

from gateway.config import XcapConfig
from gateway.logs import event
from gateway.registrar.users import UserDirectory
from gateway.sip.auth import (
    AuthError,
    AuthStatus,
    NonceManager,
    make_challenge,
    parse_credentials,
    verify_authorization,
)
from gateway.store.api import StoreError
from gateway.xcap.core import Preconditions, Reply
from gateway.xcap.errors import XcapError
from gateway.xcap.service import XcapDocuments, owner_aor
from gateway.xcap.uri import XcapUri, parse_xcap_uri

__all__ = ["XcapServer", "create_app"]

log = logging.getLogger(__name__)

Users = Callable[[], UserDirectory]
DOCUMENTS = web.AppKey[XcapDocuments]("xcap_documents")
_METHODS: Final = ("GET", "HEAD", "PUT", "DELETE")


class _Auth:
    """HTTP Digest with the SIP core's pure helper (the same algorithms and nonces)."""

    def __init__(self, users: Users, clock: Callable[[], float]) -> None:
        self.users = users
        self.clock = clock
        self.nonces = NonceManager(os.urandom(32), now=clock())

    def _realm(self, aor: str) -> tuple[str, tuple[str, ...]]:
        user = self.users().by_aor(aor)
        if user is not None:
            return user.realm, user.algorithms or ("MD5",)
        realm = aor.partition("@")[2]
        return realm, self.users().algorithms(realm)

    def challenge(self, aor: str, reason: str, *, stale: bool = False) -> web.Response:
        realm, algorithms = self._realm(aor)
        values = make_challenge(self.nonces, realm, algorithms, self.clock(), stale=stale)
        response = web.Response(status=401, text=f"{reason}\n")
        for value in values:
            response.headers.add("WWW-Authenticate", value)
        return response

    def check(self, request: web.Request, aor: str) -> web.Response | None:
        """None when the request carries valid credentials of the owner of `aor`."""
        value = request.headers.get("Authorization")
        if value is None or not value.lstrip().lower().startswith("digest "):
            return self.challenge(aor, "credentials required")
        realm, _ = self._realm(aor)
        users = self.users()
        result = verify_authorization(
            value,
            request.method,
            users.ha1_lookup,
            self.clock(),
            nonces=self.nonces,
            realm=realm,
            allow_no_qop=False,
        )
        if result.status is AuthStatus.STALE:
            return self.challenge(aor, "stale nonce", stale=True)
        if not result.ok or not _same_target(value, request.raw_path):
            fields = {"aor": aor, "peer": request.remote, "reason": result.reason or "uri"}
            event(log, logging.WARNING, "xcap authentication failed", **fields)
            return self.challenge(aor, "authentication failed")
        user = users.by_login(result.username or "", realm)
        if user is None or user.sip_aor != aor:
            fields = {"aor": aor, "user": result.username, "peer": request.remote}
            event(log, logging.WARNING, "xcap request for another user's documents", **fields)
            return web.Response(status=403, text="a user may reach only its own documents\n")
        return None


def _same_target(authorization: str, raw_path: str) -> bool:
    """RFC 7616 §3.4.6: the digest's `uri` names the request target."""
    try:
        uri = parse_credentials(authorization).uri
    except AuthError:
        return False
    return unquote(uri) == unquote(raw_path)


def _response(reply: Reply, head: bool) -> web.Response:
    headers = {} if reply.etag is None else {"ETag": reply.etag}
    if reply.content_type is not None:
        headers["Content-Type"] = reply.content_type
    body = b"" if head else reply.body
    return web.Response(status=reply.status, body=body, headers=headers)


def _error(exc: XcapError) -> web.Response:
    return web.Response(
        status=exc.status, body=exc.body(), headers={"Content-Type": exc.content_type}
    )


def create_app(
    cfg: XcapConfig,
    documents: XcapDocuments,
    users: Users,
    *,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    auth = _Auth(users, clock)
    app = web.Application(client_max_size=cfg.max_document_size)
    app[DOCUMENTS] = documents

    async def handle(request: web.Request) -> web.Response:
        if request.method not in _METHODS:
            return web.Response(status=405, headers={"Allow": ", ".join(_METHODS)})
        path, _, query = request.raw_path.partition("?")
        try:
            uri = parse_xcap_uri(path, query, root=cfg.root, default_ns=documents.default_ns)
            if uri.document.xui is not None:
                refused = auth.check(request, owner_aor(uri.document.xui))
                if refused is not None:
                    return refused
        except XcapError as exc:
            return _error(exc)
        return await _serve(request, documents, uri, cfg.max_document_size)

    app.router.add_route("*", cfg.root.rstrip("/") + "/{tail:.*}", handle)
    return app


async def _serve(
    request: web.Request, documents: XcapDocuments, uri: XcapUri, max_bytes: int
) -> web.Response:
    if request.content_length is not None and request.content_length > max_bytes:
        return _error(XcapError(413, f"request body larger than {max_bytes} bytes"))
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _error(XcapError(413, f"request body larger than {max_bytes} bytes"))
    conditions = Preconditions(
        request.headers.get("If-Match"), request.headers.get("If-None-Match")
    )
    try:
        reply = documents.request(
            "GET" if request.method == "HEAD" else request.method,
            uri,
            body=body,
            content_type=request.headers.get("Content-Type"),
            preconditions=conditions,
            actor=f"http {request.remote}",
        )
    except StoreError as exc:
        event(log, logging.ERROR, "xcap store failure", error=str(exc))
        return web.Response(status=503, text="store unavailable\n", headers={"Retry-After": "5"})
    return _response(reply, request.method == "HEAD")


class XcapServer:
    """Runs the XCAP app on `[xcap] host`/`port` (HTTPS with a certificate) in the loop."""

    def __init__(self, cfg: XcapConfig, documents: XcapDocuments, users: Users) -> None:
        self.cfg = cfg
        self._runner = web.AppRunner(create_app(cfg, documents, users), access_log=None)

    def _ssl(self) -> ssl.SSLContext | None:
        if self.cfg.certificate is None or self.cfg.private_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cfg.certificate), str(self.cfg.private_key))
        return ctx

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.cfg.host, self.cfg.port, ssl_context=self._ssl(), reuse_address=True
        )
        await site.start()
        scheme = "https" if self.cfg.tls else "http"
        url = f"{scheme}://{self.cfg.host}:{self.cfg.port}{self.cfg.root}"
        event(log, logging.INFO, "xcap server listening", url=url)

    async def stop(self) -> None:
        await self._runner.cleanup()

"""Users' XCAP documents for operators (issue 24, docs/admin-api.md "Documents").

``GET /documents/{aor}``: the user's documents (AUID, name, ETag, size, time).
``GET|PUT|DELETE /documents/{aor}/{auid}``: the ``index`` document of that application
usage, with the same validation, ETags and change announcements as XCAP itself
(gateway/xcap/service.py). Users' documents are private data: these routes answer only
when ``[admin] token`` is set (the auth middleware in server.py checks it), 403 otherwise.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.admin.sources import AdminSources
from gateway.config import AdminConfig
from gateway.logs import event
from gateway.store.api import StoreError
from gateway.xcap.errors import XcapError
from gateway.xcap.service import XcapDocuments, owner_aor

__all__ = ["add_documents"]

log = logging.getLogger(__name__)

DOCUMENTS = web.AppKey[XcapDocuments]("admin_documents")


def _aor(request: web.Request) -> str:
    try:
        return owner_aor(request.match_info["aor"])
    except XcapError as exc:
        raise web.HTTPNotFound(text=exc.reason) from None


async def _list(request: web.Request) -> web.Response:
    aor = _aor(request)
    docs = request.app[DOCUMENTS].store.xcap_documents(aor=aor)
    rows = [
        {
            "auid": d.auid,
            "name": d.name,
            "etag": d.etag,
            "size": len(d.body),
            "updated_at": d.updated_at,
        }
        for d in docs
    ]
    return web.json_response({"aor": aor, "documents": rows})


async def _document(request: web.Request) -> web.Response:
    documents, aor, auid = request.app[DOCUMENTS], _aor(request), request.match_info["auid"]
    usage = documents.usages.get(auid)
    try:
        if request.method == "GET":
            found = documents.document(auid, aor)
            if usage is None or found is None:
                return web.json_response({"error": "no such document"}, status=404)
            return web.Response(
                body=found.body, headers={"Content-Type": usage.mime, "ETag": found.etag}
            )
        actor = f"admin {request.remote}"
        if request.method == "PUT":
            reply = documents.put(aor, auid, await request.read(), actor=actor)
        else:
            reply = documents.delete(aor, auid, actor=actor)
    except StoreError as exc:
        return web.json_response({"error": f"store: {exc}"}, status=503)
    if reply.status >= 300:
        headers = {} if reply.content_type is None else {"Content-Type": reply.content_type}
        return web.Response(status=reply.status, body=reply.body, headers=headers)
    fields = {"aor": aor, "auid": auid, "method": request.method, "peer": request.remote}
    event(log, logging.WARNING, "admin wrote a user's document", **fields)
    return web.json_response({"aor": aor, "auid": auid, "status": reply.status, "etag": reply.etag})


def add_documents(app: web.Application, cfg: AdminConfig, sources: AdminSources) -> None:
    """Mount the routes (only with a token; without one they answer 403)."""
    if sources.documents is None:
        return
    if not cfg.token:

        async def refused(request: web.Request) -> web.Response:
            return web.json_response({"error": "needs [admin] token"}, status=403)

        app.router.add_route("*", "/documents/{tail:.*}", refused)
        return
    app[DOCUMENTS] = sources.documents
    app.router.add_get("/documents/{aor}", _list)
    app.router.add_route("GET", "/documents/{aor}/{auid}", _document)
    app.router.add_route("PUT", "/documents/{aor}/{auid}", _document)
    app.router.add_route("DELETE", "/documents/{aor}/{auid}", _document)

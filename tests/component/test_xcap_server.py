"""The XCAP HTTP glue in process (aiohttp test server, aiohttp's Digest client): the
challenge realm, stale nonces, the digest `uri` check, HEAD, methods, a failing store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.config import XcapConfig
from gateway.registrar.users import UserDirectory, hash_password
from gateway.store.api import StoreError, XcapDocument
from gateway.store.memory import MemoryStore
from gateway.xcap.server import create_app
from gateway.xcap.service import XcapDocuments

ALICE = "sip:alice@sip.localhost"
URL = f"/xcap/resource-lists/users/{ALICE}/index"
LISTS = b'<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"/>'
RL = {"Content-Type": "application/resource-lists+xml"}
USERS = UserDirectory((hash_password("alice@sip.localhost", "realm.example", "pw"),))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[..., Awaitable[tuple[TestClient[Any, Any], Clock]]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    clients: list[TestClient[Any, Any]] = []

    async def build(store: MemoryStore | None = None, user: str | None = "alice") -> Any:
        clock = Clock()
        docs = XcapDocuments(store or MemoryStore(), max_bytes=4096)
        app = create_app(XcapConfig(max_document_size=4096), docs, lambda: USERS, clock=clock)
        middlewares = () if user is None else (aiohttp.DigestAuthMiddleware(user, "pw"),)
        client: TestClient[Any, Any] = TestClient(
            TestServer(app, host="127.0.0.1"), middlewares=middlewares
        )
        await client.start_server()
        clients.append(client)
        return client, clock

    yield build
    for c in clients:
        await c.close()


async def test_challenge_in_the_users_realm(make: Make) -> None:
    client, _ = await make(user=None)
    r = await client.get(URL)
    assert r.status == 401
    values = r.headers.getall("WWW-Authenticate")
    assert all('realm="realm.example"' in v for v in values)
    assert [v.split("algorithm=")[1].split(",")[0] for v in values] == ["SHA-256", "MD5"]
    basic = await client.get(URL, headers={"Authorization": "Basic YWxpY2U6cHc="})
    assert basic.status == 401
    unknown = await client.get("/xcap/resource-lists/users/sip:nobody@else.example/index")
    assert unknown.status == 401 and 'realm="else.example"' in unknown.headers["WWW-Authenticate"]


async def test_authenticated_requests_head_and_methods(make: Make) -> None:
    client, _ = await make()
    assert (await client.put(URL, data=LISTS, headers=RL)).status == 201
    head = await client.head(URL)
    assert head.status == 200 and head.headers["ETag"] and await head.read() == b""
    assert (await client.post(URL, data=LISTS)).status == 405
    big = await client.put(URL, data=b"x" * 5000, headers=RL)
    assert big.status == 413


async def test_a_stale_nonce_is_answered_stale_and_the_client_retries(make: Make) -> None:
    client, clock = await make()
    first = await client.get(URL)
    assert first.status == 404  # authenticated: no document yet
    auth = first.request_info.headers["Authorization"]
    clock.now += 3600  # that nonce is now expired; its digest is still right
    stale = await client.get(URL, headers={"Authorization": auth}, middlewares=())
    assert stale.status == 401
    assert all(v.endswith("stale=true") for v in stale.headers.getall("WWW-Authenticate"))
    wrong = auth.replace('response="', 'response="0')
    clock.now -= 3600
    bad = await client.get(URL, headers={"Authorization": wrong}, middlewares=())
    assert bad.status == 401 and "stale" not in bad.headers["WWW-Authenticate"]
    clock.now += 3600
    assert (await client.get(URL)).status == 404  # the middleware re-authenticates


async def test_the_digest_uri_must_name_the_request(make: Make) -> None:
    client, _ = await make()
    first = await client.get(URL)
    assert first.status == 404
    auth = first.request_info.headers["Authorization"]
    other = "/xcap/pres-rules/users/sip:alice@sip.localhost/index"
    assert (await client.get(other, headers={"Authorization": auth}, middlewares=())).status == 401


async def test_a_failing_store_is_503_and_nothing_is_acknowledged(make: Make) -> None:
    class Broken(MemoryStore):
        def put_xcap_document(self, document: XcapDocument) -> None:
            raise StoreError("disk full")

    client, _ = await make(Broken())
    r = await client.put(URL, data=LISTS, headers=RL)
    assert r.status == 503 and r.headers["Retry-After"] == "5"

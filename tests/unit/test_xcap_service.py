"""The XCAP documents over a store: commit before the answer, change callbacks, the
pres-rules decision for hosted users, and the RLS's ListSource."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import pytest

from gateway.store.api import StoreError, XcapDocument
from gateway.store.memory import MemoryStore
from gateway.xcap.core import Preconditions
from gateway.xcap.errors import XcapError
from gateway.xcap.service import XcapDocuments, owner_aor
from gateway.xcap.source import XcapListSource, list_uri_of, owner_of
from gateway.xcap.uri import parse_xcap_uri
from mappings.resourcelists import Entry

ALICE = "sip:alice@example.com"
REF = (
    "resource-lists/users/sip:alice@example.com/index/~~/resource-lists"
    "/list%5b@name=%22work%22%5d/entry%5b@uri=%22sip:carol@example.com%22%5d"
)
LISTS = f"""<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="friends">
    <entry uri="sip:bob@example.com"/>
    <entry-ref ref="{REF}"/>
  </list>
  <list name="work"><entry uri="sip:carol@example.com"/><entry uri="sip:bob@example.com"/></list>
</resource-lists>""".encode()


@runtime_checkable
class ListSource(Protocol):
    """The RLS's contract (branch s6-rls, gateway/bridge/lists/source.py), as of this
    branch; at merge the test imports the real one."""

    def list_of(self, list_uri: str) -> Sequence[Entry] | None: ...

    def on_change(self, callback: Callable[[str], None]) -> None: ...


def rules(handling: str, who: str = "sip:bob@example.com") -> bytes:
    return f"""<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"
  xmlns:cr="urn:ietf:params:xml:ns:common-policy"><cr:rule id="r">
  <cr:conditions><cr:identity><cr:one id="{who}"/></cr:identity></cr:conditions>
  <cr:actions><sub-handling>{handling}</sub-handling></cr:actions></cr:rule></cr:ruleset>""".encode()


def documents(store: MemoryStore | None = None) -> XcapDocuments:
    return XcapDocuments(store or MemoryStore(), max_bytes=64 * 1024, clock=lambda: 1000.0)


def test_owner_aor() -> None:
    assert owner_aor("sip:Alice@Example.COM") == "sip:Alice@example.com"
    assert owner_aor("alice@example.com") == ALICE
    for bad in ("alice", "sip:alice@example.com;x=1", "tel:+1@x"):
        with pytest.raises(XcapError):
            owner_aor(bad)


def test_writes_are_committed_then_announced() -> None:
    store = MemoryStore()
    docs = documents(store)
    seen: list[tuple[str, str, str, bool]] = []
    docs.on_change(lambda a, o, n: seen.append((a, o, n, store.xcap_document(a, o, n) is not None)))
    put = docs.put(ALICE, "resource-lists", LISTS, actor="test")
    assert put.status == 201
    assert store.xcap_document("resource-lists", ALICE, "index") == XcapDocument(
        "resource-lists", ALICE, "index", LISTS, put.etag or "", 1000.0
    )
    assert seen == [("resource-lists", ALICE, "index", True)]  # stored before the callback
    bad = docs.put(ALICE, "resource-lists", b"<nope/>", actor="test")
    assert bad.status == 409 and len(seen) == 1
    assert docs.delete(ALICE, "resource-lists", actor="test").status == 200
    assert seen[-1] == ("resource-lists", ALICE, "index", False)
    assert docs.put(ALICE, "no-such-usage", LISTS, actor="t").status == 404


def test_http_requests_through_the_service_and_a_failing_store() -> None:
    docs = documents()
    path = "/xcap/resource-lists/users/sip:alice@example.com/index"
    uri = parse_xcap_uri(path, "", root="/xcap", default_ns=docs.default_ns)
    put = docs.request("PUT", uri, body=LISTS, content_type="application/resource-lists+xml")
    stale = docs.request(
        "PUT",
        uri,
        body=LISTS,
        content_type="application/resource-lists+xml",
        preconditions=Preconditions(if_match='"old"'),
    )
    assert (put.status, stale.status) == (201, 412)
    caps = parse_xcap_uri(
        "/xcap/xcap-caps/global/index", "", root="/xcap", default_ns=docs.default_ns
    )
    assert docs.request("GET", caps).status == 200
    assert docs.request("DELETE", caps).status == 405

    class Broken(MemoryStore):
        def put_xcap_document(self, document: XcapDocument) -> None:
            raise StoreError("disk full")

    broken = documents(Broken())
    called: list[str] = []
    broken.on_change(lambda *a: called.append("x"))
    with pytest.raises(StoreError):  # the server answers 503: no 2xx for an unsaved write
        broken.request("PUT", uri, body=LISTS, content_type="application/resource-lists+xml")
    assert called == []


@pytest.mark.parametrize(
    ("handling", "watcher", "expected"),
    [
        ("allow", "sip:bob@example.com", "allow"),
        ("confirm", "sip:bob@example.com", "confirm"),
        ("polite-block", "sip:bob@example.com", "polite-block"),
        ("allow", "sip:eve@example.com", "block"),  # no rule applies: block (RFC 5025)
    ],
)
def test_watcher_decision(handling: str, watcher: str, expected: str) -> None:
    docs = documents()
    assert docs.watcher_decision(ALICE, watcher) is None  # no document: caller's policy
    assert docs.put(ALICE, "pres-rules", rules(handling), actor="t").status == 201
    assert docs.watcher_decision(ALICE, watcher) == expected


def test_a_corrupt_row_is_no_verdict() -> None:
    store = MemoryStore()
    store.put_xcap_document(XcapDocument("pres-rules", ALICE, "index", b"<x", '"1"'))
    assert documents(store).watcher_decision(ALICE, "sip:bob@example.com") is None


def test_list_source() -> None:
    docs = documents()
    source = XcapListSource(docs)
    assert isinstance(source, ListSource)
    assert list_uri_of(ALICE) == "sip:alice-list@example.com"
    assert owner_of("<sip:alice-list@Example.com>") == ALICE
    assert owner_of("sip:alice@example.com") is None
    assert source.list_of("sip:alice-list@example.com") is None  # no document yet
    changed: list[str] = []
    source.on_change(changed.append)
    docs.put(ALICE, "resource-lists", LISTS, actor="t")
    assert changed == ["sip:alice-list@example.com"]
    members = source.list_of("sip:alice-list@example.com")
    # every list, flattened; the entry-ref into the same document followed; unique URIs
    assert members == (Entry("sip:bob@example.com"), Entry("sip:carol@example.com"))
    assert source.list_of("sip:bob-list@example.com") is None
    lists = source.lists_of_user(ALICE)
    assert lists is not None and [lst.name for lst in lists.lists] == ["friends", "work"]
    docs.put(ALICE, "pres-rules", rules("allow"), actor="t")
    assert changed == ["sip:alice-list@example.com"]  # pres-rules are not a list change
    docs.delete(ALICE, "resource-lists", actor="t")
    assert source.list_of("sip:alice-list@example.com") is None
    assert changed == ["sip:alice-list@example.com"] * 2


def test_list_source_loop_gives_no_members() -> None:
    store = MemoryStore()
    loop = b"""<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists"><list name="a">
    <entry-ref ref="resource-lists/users/sip:alice@example.com/index/~~/resource-lists/list%5b@name=%22a%22%5d"/>
    </list></resource-lists>"""  # noqa: E501
    docs = documents(store)
    assert docs.put(ALICE, "resource-lists", loop, actor="t").status == 201  # well-formed
    assert XcapListSource(docs).list_of("sip:alice-list@example.com") == ()

"""pres-rules (RFC 5025, stored as XCAP documents) decide who watches a hosted SIP user:
`Hosted.on_subscribe` through its injected `rules`, and `settle` when the rules change.
Without a document, today's flow (pending, /allow and /deny) is unchanged."""

from __future__ import annotations

from gateway.bridge.presence.presrules import settle
from gateway.bridge.presence.service import PresenceService
from gateway.store.memory import MemoryStore
from gateway.xcap.service import XcapDocuments
from mappings.jid import parse_jid
from tests.component.test_presence_departures import COMP, ROMEO, TYBALT, Links, service

ROMEO_JID, TYBALT_JID = parse_jid(f"romeo@{COMP}"), parse_jid(f"tybalt@{COMP}")


def rules(*pairs: tuple[str, str]) -> bytes:
    body = "".join(
        f'<cr:rule id="r{n}"><cr:conditions><cr:identity><cr:one id="sip:{who}"/>'
        f"</cr:identity></cr:conditions><cr:actions><sub-handling>{handling}</sub-handling>"
        "</cr:actions></cr:rule>"
        for n, (who, handling) in enumerate(pairs)
    )
    return (
        '<cr:ruleset xmlns="urn:ietf:params:xml:ns:pres-rules" '
        f'xmlns:cr="urn:ietf:params:xml:ns:common-policy">{body}</cr:ruleset>'
    ).encode()


def wired() -> tuple[PresenceService, Links, XcapDocuments]:
    svc, links = service()
    assert svc.hosted is not None
    docs = XcapDocuments(svc.ctx.store, max_bytes=65536)  # the service's MemoryStore
    assert isinstance(svc.ctx.store, MemoryStore)
    svc.hosted.rules = docs.watcher_decision
    return svc, links, docs


def test_the_document_decides_new_requests() -> None:
    svc, links, docs = wired()
    hosted = svc.hosted
    assert hosted is not None
    doc = rules(
        ("ann@localhost", "allow"),
        ("eve@localhost", "block"),
        ("mallory@localhost", "polite-block"),
        ("bea@localhost", "confirm"),
    )
    assert docs.put(ROMEO, "pres-rules", doc, actor="test").status == 201
    for who in ("ann", "eve", "mallory", "bea", "zed"):
        hosted.on_subscribe(parse_jid(f"{who}@localhost/x"), ROMEO_JID, ROMEO)
    told = [(t[1], t[2]) for t in links.told() if not t[2].startswith("avail")]
    assert ("ann@localhost", "subscribed") in told
    assert ("eve@localhost", "unsubscribed") in told
    assert not [t for t in told if t[0] in ("mallory@localhost", "bea@localhost")]
    status = {str(e.watcher): e.status for e in hosted.watchers(ROMEO)}
    assert status["ann@localhost"] == "active"
    assert status["bea@localhost"] == "pending"  # confirm: the user is asked as before
    assert "eve@localhost" not in status and "mallory@localhost" not in status  # nothing kept
    # zed matches no rule: RFC 5025 §3.2.1 default is block
    assert "zed@localhost" not in status
    assert ("zed@localhost", "unsubscribed") in told
    stored = {r.watcher for r in svc.ctx.store.subscriptions(target=ROMEO)}
    assert {"ann@localhost", "bea@localhost"} <= stored
    assert not {"eve@localhost", "mallory@localhost", "zed@localhost"} & stored


def test_without_a_document_requests_wait_for_the_user() -> None:
    svc, links, _docs = wired()
    hosted = svc.hosted
    assert hosted is not None
    hosted.on_subscribe(parse_jid("ann@localhost/x"), TYBALT_JID, TYBALT)
    assert links.sent == []
    assert [e.status for e in hosted.watchers(TYBALT) if str(e.watcher) == "ann@localhost"] == [
        "pending"
    ]
    assert hosted.decide(TYBALT, "sip:ann@localhost", "allow")  # /allow still works


def test_settle_applies_new_rules_to_known_watchers() -> None:
    svc, links, docs = wired()
    hosted = svc.hosted
    assert hosted is not None
    # restored: juliet active, paris pending (test_presence_departures.service)
    assert {str(e.watcher): e.status for e in hosted.watchers(ROMEO)} == {
        "juliet@localhost": "active",
        "paris@localhost": "pending",
    }
    assert settle(hosted, ROMEO, docs.watcher_decision) == 0  # no document: nothing
    doc = rules(("paris@localhost", "allow"), ("juliet@localhost", "block"))
    docs.put(ROMEO, "pres-rules", doc, actor="test")
    assert settle(hosted, ROMEO, docs.watcher_decision) == 2
    assert {str(e.watcher): e.status for e in hosted.watchers(ROMEO)} == {
        "paris@localhost": "active"
    }
    told = [(t[1], t[2]) for t in links.told()]
    assert ("paris@localhost", "subscribed") in told
    assert ("juliet@localhost", "unsubscribed") in told

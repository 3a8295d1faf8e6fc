"""The resource list server over the presence service (gateway/bridge/lists/service.py).

A real `PresenceService` with its S2X part, a `MemoryStore`, a real `GatewayComponent`
building stanzas behind a recording `XmppOut` double, the `HostedRegistrar` slice with
PIDF documents, and NOTIFYs captured where the endpoint would send them (each answered
200 at once). Checked: the RFC 5367 SUBSCRIBE's answer, full state then partial state
(RFC 4662 §5), pending authorizations, rate control, unsubscribe, limits, restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.bridge.lists.service import LIST_RECORD_TYPE, ListServer, ListsPolicy
from gateway.bridge.presence.context import PresenceConfig, SendDone, domain_maps
from gateway.bridge.presence.service import PresenceService
from gateway.config import ComponentConfig
from gateway.sip.message import Headers, SipRequest, make_response
from gateway.sip.uri import parse_uri
from gateway.store.memory import MemoryStore
from gateway.xmpp.component import GatewayComponent
from mappings.jid import parse_jid
from mappings.pidf import PresenceDocument, Tuple, build_pidf, parse_pidf
from mappings.presence import XmppPresence
from mappings.resourcelists import NS, Entry
from mappings.rlmi import ListBody, parse_list_body

COMP = "sip.localhost"
ALICE = f"sip:alice@{COMP}"
BOB = f"sip:bob@{COMP}"  # hosted
JULIET = "sip:juliet@localhost"  # an XMPP user
CAROL = "sip:carol@far.example"  # foreign
ALICE_JID, JULIET_JID = parse_jid(f"alice@{COMP}"), parse_jid("juliet@localhost")


class Registrar:
    def __init__(self) -> None:
        self.docs: dict[str, PresenceDocument] = {
            BOB: PresenceDocument(f"pres:bob@{COMP}", (Tuple("phone", "open"),))
        }
        self.callbacks: list[Callable[[str], None]] = []

    def is_hosted(self, domain: str) -> bool:
        return domain == COMP

    def presence_of(self, aor: str) -> PresenceDocument | None:
        return self.docs.get(aor)

    def on_presence_change(self, callback: Callable[[str], None]) -> None:
        self.callbacks.append(callback)


class Links:
    def __init__(self, comp: GatewayComponent) -> None:
        self.comp = comp
        self.sent: list[Any] = []

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent.append(stanza)
        return True

    async def send_confirmed(self, domain: str, stanza: Any, timeout: float | None = None) -> None:
        self.sent.append(stanza)

    def is_up(self, domain: str) -> bool:
        return True

    def component(self, domain: str) -> GatewayComponent:
        return self.comp

    def told(self) -> list[tuple[str, str, str]]:
        return [(s["from"].bare, s["to"].bare, s.xml.get("type") or "available") for s in self.sent]


class Incoming:
    def __init__(self, request: SipRequest) -> None:
        self.request = request
        self.to_tag = "rlstag"
        self.transport = "udp"
        self.replies: list[tuple[int, list[tuple[str, str]]]] = []
        self.responses: list[Any] = []

    def reply(self, status: int, reason: str | None = None, *, headers: Any = (), **_: Any) -> bool:
        self.replies.append((status, list(headers)))
        return True

    def respond(self, response: Any) -> bool:
        self.responses.append(response)
        return True


class Rig:
    def __init__(
        self,
        store: MemoryStore | None = None,
        source: Any = None,
        list_owner: Callable[[str], str | None] = lambda _uri: None,
        **policy: Any,
    ) -> None:
        self.now = 1000.0
        comp = GatewayComponent(ComponentConfig(COMP, "secret"), server="127.0.0.1", port=1)
        self.links = Links(comp)
        self.store = store or MemoryStore()
        self.registrar = Registrar()
        self.svc = PresenceService(
            PresenceConfig(contact="sip:presence@127.0.0.1:5060"),
            endpoint=object(),  # type: ignore[arg-type]
            resolver=object(),  # type: ignore[arg-type]
            links=self.links,
            store=self.store,  # type: ignore[arg-type]
            maps=domain_maps((ComponentConfig(COMP, "secret"),), ("localhost",)),
            registrar=self.registrar,
            clock=lambda: self.now,
        )
        self.notifies: list[SipRequest] = []
        self.svc.ctx.send_nowait = self._send  # type: ignore[method-assign]
        self.rls = ListServer(
            self.svc.ctx,
            self.svc.s2x,
            policy=ListsPolicy(**{"min_interval": 5.0, **policy}),
            source=source,
            list_owner=list_owner,
            registrar=self.registrar,
        )
        self.svc.extend(self.rls, self.rls.timers())

    def _send(self, request: SipRequest, done: SendDone) -> bool:
        self.notifies.append(request)
        done(make_response(request, 200), None)
        return True

    async def subscribe(self, body: bytes, **headers: str) -> Incoming:
        incoming = Incoming(list_subscribe(body, **headers))
        result = self.svc.handle_subscribe(incoming)
        if result is not None:
            await result
        return incoming

    def bodies(self) -> list[ListBody]:
        out = []
        for req in self.notifies:
            ctype = req.headers.get("Content-Type")
            assert ctype is not None, req.headers.get("Subscription-State")
            out.append(parse_list_body(ctype, req.body))
        return out


def rlist(*uris: str) -> bytes:
    entries = "".join(f'<entry uri="{u}"/>' for u in uris)
    return (
        f'<?xml version="1.0"?><resource-lists xmlns="{NS}"><list>{entries}</list></resource-lists>'
    ).encode()


def list_subscribe(body: bytes, **extra: str) -> SipRequest:
    headers = {
        "Via": "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "Max-Forwards": "70",
        "From": f"<{ALICE}>;tag=alice1",
        "To": f"<sip:rls@{COMP}>",
        "Call-ID": "list-1",
        "CSeq": "1 SUBSCRIBE",
        "Contact": "<sip:alice@127.0.0.1:5070>",
        "Event": "presence",
        "Expires": "600",
        "Accept": "application/pidf+xml, application/rlmi+xml, multipart/related",
        "Supported": "eventlist",
        "Require": "recipient-list-subscribe",
        "Content-Type": "application/resource-lists+xml",
        "Content-Disposition": "recipient-list",
    }
    for k, v in extra.items():
        key = k.replace("_", "-")
        if v == "":
            headers.pop(key, None)
        else:
            headers[key] = v
    return SipRequest.from_parts(
        "SUBSCRIBE", parse_uri(f"sip:rls@{COMP}"), Headers(list(headers.items())), body
    )


def states(body: ListBody) -> dict[str, str | None]:
    return {r.uri: (r.instances[0].state if r.instances else None) for r in body.rlmi.resources}


async def test_full_state_then_partial_when_the_xmpp_contact_approves_and_changes() -> None:
    rig = Rig()
    incoming = await rig.subscribe(rlist(JULIET, BOB, CAROL))
    (ok,) = incoming.responses
    assert ok.status == 200 and "eventlist" in ok.headers.get_all("Require")
    assert rig.links.told() == [(str(ALICE_JID), str(JULIET_JID), "subscribe")]
    (first,) = rig.bodies()
    assert first.rlmi.full_state and first.rlmi.version == 0
    assert states(first) == {JULIET: "pending", BOB: "active", CAROL: None}
    assert first.rlmi.uri.startswith("sip:rls-") and first.rlmi.uri.endswith("@127.0.0.1")
    bob_part = first.parts[first.rlmi.resources[1].instances[0].cid]
    assert parse_pidf(bob_part.body).tuples[0].basic == "open"
    notify = rig.notifies[0]
    assert notify.headers.get("Require") == "eventlist"
    assert notify.headers.get("Subscription-State", "").startswith("active")
    (record,) = rig.store.all_subscriptions()
    assert record.content_type == LIST_RECORD_TYPE

    rig.now += 10
    rig.svc.s2x.on_subscribed(JULIET_JID, ALICE_JID)  # XMPP approval
    second = rig.bodies()[1]
    assert not second.rlmi.full_state and second.rlmi.version == 1
    assert states(second) == {JULIET: "active"}  # only what changed

    rig.now += 1  # inside min_interval: held back, then merged (RFC 4662 §4.8)
    avail = XmppPresence(resource="balcony", available=True, show="away")
    rig.svc.s2x.on_presence(parse_jid("juliet@localhost/balcony"), ALICE_JID, avail)
    assert len(rig.notifies) == 2
    rig.now += 5
    did = next(iter(rig.rls.by_dialog))
    assert rig.svc.scheduler.get(("rls-throttle", did)) == 1015.0
    rig.rls.handle_throttle(did, rig.now)
    third = rig.bodies()[2]
    assert third.rlmi.version == 2 and states(third) == {JULIET: "active"}
    juliet_doc = third.parts[third.rlmi.resources[0].instances[0].cid].body
    assert b"balcony" in juliet_doc and b"away" in juliet_doc


async def test_hosted_member_change_is_a_partial_and_unsubscribe_tears_down() -> None:
    rig = Rig(min_interval=0.0)
    await rig.subscribe(rlist(BOB, JULIET))
    rig.svc.s2x.on_subscribed(JULIET_JID, ALICE_JID)
    rig.registrar.docs.pop(BOB)
    for cb in rig.registrar.callbacks:
        cb(BOB)
    last = rig.bodies()[-1]
    assert states(last) == {BOB: "active"}
    bob = last.parts[last.rlmi.resources[0].instances[0].cid].body
    assert parse_pidf(bob).tuples[0].basic == "closed"

    # unsubscribe in the dialog: final NOTIFY with RLMI full state, back-ends gone
    sent = len(rig.notifies)
    rig.links.sent.clear()
    unsub = Incoming(
        list_subscribe(
            b"",
            To=f"<sip:rls@{COMP}>;tag=rlstag",
            CSeq="2 SUBSCRIBE",
            Expires="0",
            Require="",
            Content_Type="",
            Content_Disposition="",
        )
    )
    assert rig.svc.handle_subscribe(unsub) is None
    assert unsub.responses[0].status == 200
    final = rig.notifies[sent]
    assert final.headers.get("Subscription-State", "").startswith("terminated")
    assert rig.bodies()[-1].rlmi.full_state
    assert (str(ALICE_JID), str(JULIET_JID), "unavailable") in rig.links.told()
    assert not rig.svc.s2x.watches and not rig.rls.by_dialog and not rig.rls.by_hosted
    assert list(rig.store.all_subscriptions()) == []
    assert len(rig.rls.contained) == 0


async def test_refusals() -> None:
    rig = Rig(max_per_user=1, max_entries=2)
    no_eventlist = await rig.subscribe(rlist(JULIET), Supported="")
    assert no_eventlist.replies == [(421, [("Require", "eventlist")])]
    too_many = await rig.subscribe(rlist(JULIET, BOB, CAROL))
    assert too_many.replies[0][0] == 413
    bad = await rig.subscribe(b"<resource-lists")
    assert bad.replies[0][0] == 400
    ok = await rig.subscribe(rlist(JULIET))
    assert ok.responses[0].status == 200
    second = await rig.subscribe(rlist(BOB), Call_ID="list-2")
    assert second.replies[0][0] == 403  # one list subscription per user here
    assert rig.notifies and len(rig.rls.by_dialog) == 1

    full = Rig()
    full.rls.contained.limit = 0  # the bounded table of request-contained lists
    refused = await full.subscribe(rlist(JULIET))
    assert refused.replies[0][0] == 503 and not full.notifies and not full.svc.s2x.watches


async def test_max_rate_is_reflected_and_paces() -> None:
    rig = Rig(min_interval=0.0)
    await rig.subscribe(rlist(BOB), Event="presence;max-rate=0.1")
    state = rig.notifies[0].headers.get("Subscription-State", "")
    assert state.endswith(";max-rate=0.1")
    rig.now += 1
    rig.registrar.docs.pop(BOB)
    for cb in rig.registrar.callbacks:
        cb(BOB)
    assert len(rig.notifies) == 1  # 10 s between NOTIFYs (RFC 6446 §5.2)
    assert rig.svc.scheduler.get(("rls-throttle", next(iter(rig.rls.by_dialog)))) == 1010.0


async def test_list_subscription_survives_a_restart() -> None:
    rig = Rig(min_interval=0.0)
    await rig.subscribe(rlist(JULIET, BOB))
    rig.svc.s2x.on_subscribed(JULIET_JID, ALICE_JID)
    rig.rls.flush()
    version = rig.bodies()[-1].rlmi.version

    again = Rig(store=rig.store, min_interval=0.0)
    assert again.svc.restore() == 1
    (sub,) = again.rls.by_dialog.values()
    assert sub.view.version == version + 1
    assert (str(ALICE_JID), str(JULIET_JID), "subscribe") in again.links.told()
    again.svc.s2x.on_subscribed(JULIET_JID, ALICE_JID)
    notify = again.notifies[-1]
    assert notify.headers.get("From", "").startswith(f"<sip:rls@{COMP}>;tag=rlstag")
    assert notify.headers.get("CSeq") == f"{len(rig.notifies) + 1} NOTIFY"  # CSeq goes on
    body = again.bodies()[-1]
    assert body.rlmi.version == version + 1 and not body.rlmi.full_state
    assert states(body)[JULIET] == "active"


async def test_linphone_gets_its_dialect_and_others_the_rfc_form() -> None:
    """liblinphone 5.1 reads list NOTIFYs only with `Event: Presence` and bracket-less
    `Content-Id` (docs/lists.md, "Linphone"); every other subscriber gets RFC 6665
    §8.2.1 (the Event as subscribed) and RFC 2045 `Content-ID: <cid>`."""
    rig = Rig(min_interval=0.0)
    await rig.subscribe(rlist(BOB), User_Agent="Linphonec/5.1.65")
    await rig.subscribe(rlist(BOB), Call_ID="list-2", User_Agent="baresip v1.0")
    lp, other = rig.notifies
    assert lp.headers.get("Event") == "Presence" and other.headers.get("Event") == "presence"
    assert b"\r\nContent-Id: i" in lp.body and b"Content-ID: <" not in lp.body
    assert b"\r\nContent-ID: <i" in other.body
    parse_list_body(other.headers.get("Content-Type", ""), other.body)

    off = Rig(min_interval=0.0, linphone_quirks=False)
    await off.subscribe(rlist(BOB), User_Agent="Linphonec/5.1.65")
    assert off.notifies[0].headers.get("Event") == "presence"


def carol_notify(subscribe: SipRequest, state: str, body: bytes, cseq: int) -> SipRequest:
    """carol's notifier answering the back-end SUBSCRIBE (RFC 6665 §4.2)."""
    headers = [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKcarol" + str(cseq)),
        ("Max-Forwards", "70"),
        ("From", f"<{CAROL}>;tag=carol1"),
        ("To", f"{subscribe.headers.get('From')}"),
        ("Call-ID", subscribe.call_id or ""),
        ("CSeq", f"{cseq} NOTIFY"),
        ("Contact", "<sip:carol@127.0.0.1:5099>"),
        ("Event", "presence"),
        ("Subscription-State", state),
    ]
    if body:
        headers.append(("Content-Type", "application/pidf+xml"))
    return SipRequest.from_parts(
        "NOTIFY", parse_uri("sip:presence@127.0.0.1:5060"), Headers(headers), body
    )


async def test_foreign_sip_member_is_followed_with_a_back_end_subscribe() -> None:
    """A foreign SIP member: SUBSCRIBE from the list's owner to it (RFC 6665 §4.1), its
    NOTIFYs become the member's instance (pending, active with its PIDF, terminated with
    the reason), and the list's end unsubscribes (Expires: 0)."""
    import asyncio

    rig = Rig(min_interval=0.0)
    sent: list[SipRequest] = []

    async def send(request: SipRequest) -> Any:
        sent.append(request)
        return make_response(request, 200, to_tag="carol1", headers=[("Expires", "600")])

    rig.svc.ctx.send = send  # type: ignore[method-assign]
    await rig.subscribe(rlist(CAROL, BOB))
    await asyncio.sleep(0)
    (subscribe,) = sent
    assert subscribe.method == "SUBSCRIBE" and str(subscribe.uri) == CAROL
    assert ALICE in (subscribe.headers.get("From") or "")
    assert states(rig.bodies()[0]) == {CAROL: None, BOB: "active"}  # nothing known yet

    pending = Incoming(carol_notify(subscribe, "pending;expires=600", b"", 1))
    assert rig.svc.handle_notify(pending) is None
    assert pending.responses[0].status == 200
    assert states(rig.bodies()[-1]) == {CAROL: "pending"}

    doc = build_pidf(PresenceDocument("pres:carol@far.example", (Tuple("t1", "open"),)))
    active = Incoming(carol_notify(subscribe, "active;expires=599", doc, 2))
    rig.svc.handle_notify(active)
    last = rig.bodies()[-1]
    assert states(last) == {CAROL: "active"}
    assert last.parts[last.rlmi.resources[0].instances[0].cid].body == doc

    stray = Incoming(
        carol_notify(subscribe, "active", doc, 3).replace(
            headers=carol_notify(subscribe, "active", doc, 3).headers.set("Call-ID", "other")
        )
    )
    rig.svc.handle_notify(stray)
    assert stray.replies == [(481, [])]

    rejected = Incoming(carol_notify(subscribe, "terminated;reason=rejected", b"", 4))
    rig.svc.handle_notify(rejected)
    last = rig.bodies()[-1]
    inst = last.rlmi.resources[0].instances[0]
    assert (inst.state, inst.reason) == ("terminated", "rejected")


async def test_list_end_unsubscribes_the_foreign_member() -> None:
    import asyncio

    rig = Rig(min_interval=0.0)
    sent: list[SipRequest] = []

    async def send(request: SipRequest) -> Any:
        sent.append(request)
        return make_response(request, 200, to_tag="carol1", headers=[("Expires", "600")])

    rig.svc.ctx.send = send  # type: ignore[method-assign]
    await rig.subscribe(rlist(CAROL))
    await asyncio.sleep(0)
    rig.svc.handle_notify(Incoming(carol_notify(sent[0], "active;expires=600", b"", 1)))
    unsub = Incoming(
        list_subscribe(
            b"", To=f"<sip:rls@{COMP}>;tag=rlstag", CSeq="2 SUBSCRIBE", Expires="0",
            Require="", Content_Type="", Content_Disposition="",
        )
    )  # fmt: skip
    rig.svc.handle_subscribe(unsub)
    await asyncio.sleep(0)
    assert sent[-1].headers.get("Expires") == "0" and sent[-1].to_tag == "carol1"
    assert not rig.rls.sip.follows


class Source:
    """A `ListSource` standing for the XCAP store of users' lists."""

    def __init__(self) -> None:
        self.lists: dict[str, tuple[Entry, ...]] = {}
        self.callbacks: list[Callable[[str], None]] = []

    def list_of(self, list_uri: str) -> tuple[Entry, ...] | None:
        return self.lists.get(list_uri)

    def on_change(self, callback: Callable[[str], None]) -> None:
        self.callbacks.append(callback)

    def change(self, list_uri: str, *uris: str | None) -> None:
        if uris == (None,):
            self.lists.pop(list_uri, None)
        else:
            self.lists[list_uri] = tuple(Entry(u) for u in uris if u is not None)
        for cb in self.callbacks:
            cb(list_uri)


async def test_list_uri_from_the_source_and_its_changes() -> None:
    """A SUBSCRIBE to a list URI the `ListSource` knows (RFC 4662 §4): 421 without
    `Supported: eventlist`, full state with its members; a change of the list re-expands
    it (full state with the new member); the list gone ends it with `noresource`."""
    source = Source()
    buddies = f"sip:alice-buddies@{COMP}"
    source.lists[buddies] = (Entry(BOB),)
    rig = Rig(source=source, list_owner={buddies: ALICE}.get, min_interval=0.0)
    plain = {"Require": "", "Content_Type": "", "Content_Disposition": ""}

    async def subscribe(**extra: str) -> Incoming:
        req = list_subscribe(b"", **{**plain, **extra})
        req = req.replace(uri=parse_uri(buddies + ";transport=udp"))
        assert rig.rls.owns(req)
        incoming = Incoming(req)
        result = rig.svc.handle_subscribe(incoming)
        if result is not None:
            await result
        return incoming

    refused = await subscribe(Supported="")
    assert refused.replies == [(421, [("Require", "eventlist")])]
    ok = await subscribe()
    assert ok.responses[0].status == 200
    first = rig.bodies()[0]
    assert first.rlmi.uri == buddies and states(first) == {BOB: "active"}
    other = list_subscribe(b"", **plain).replace(uri=parse_uri(f"sip:nolist@{COMP}"))
    assert not rig.rls.owns(other)  # not a list: the single-resource path, as before

    source.change(buddies, BOB, JULIET)
    again = rig.bodies()[-1]
    assert again.rlmi.full_state and again.rlmi.version == 1
    assert states(again) == {BOB: "active", JULIET: "pending"}
    assert (str(ALICE_JID), str(JULIET_JID), "subscribe") in rig.links.told()

    source.change(buddies, None)
    assert rig.notifies[-1].headers.get("Subscription-State") == "terminated;reason=noresource"
    assert rig.bodies()[-1].rlmi.full_state  # RLMI in every NOTIFY (RFC 4662 §4.5)
    assert not rig.svc.s2x.watches  # juliet's watch followed by nobody now


async def test_an_unusable_list_record_is_dropped_at_restore() -> None:
    from gateway.bridge.lists.records import LIST_RECORD_TYPE as KIND
    from gateway.store.api import SubscriptionRecord

    store = MemoryStore()
    for n, doc in enumerate((b"not json", b"[1, 2]", b'{"list": "sip:l@x"}')):
        store.put_subscription(
            SubscriptionRecord(
                "s2x", ALICE, "sip:l@x", f"bad{n}", "t", remote_tag="r",
                remote_target="sip:alice@127.0.0.1:5070", state="active",
                expires_at=5000.0, last_document=doc, content_type=KIND,
            )
        )  # fmt: skip
    rig = Rig(store=store)
    assert rig.svc.restore() == 0
    assert list(store.all_subscriptions()) == [] and not rig.rls.by_dialog


async def test_only_its_owner_may_subscribe_to_a_source_list() -> None:
    """A source's list reveals its members' presence: a SUBSCRIBE to another user's list
    URI is 403, as is one to a list whose owner is unknown (no `list_owner` answer)."""
    source = Source()
    bobs, orphan = f"sip:bob-list@{COMP}", f"sip:orphan-list@{COMP}"
    source.lists[bobs] = (Entry(JULIET),)
    source.lists[orphan] = (Entry(JULIET),)
    rig = Rig(source=source, list_owner={bobs: BOB}.get, min_interval=0.0)
    plain = {"Require": "", "Content_Type": "", "Content_Disposition": ""}
    for uri in (bobs, orphan):
        req = list_subscribe(b"", **plain).replace(uri=parse_uri(uri))  # From: alice
        incoming = Incoming(req)
        result = rig.svc.handle_subscribe(incoming)
        if result is not None:
            await result
        assert [status for status, _ in incoming.replies] == [403], uri
        assert not incoming.responses
    assert not rig.notifies and not rig.links.told()

"""PUBLISH (RFC 3903 §6) and presence composition."""

from __future__ import annotations

import pytest

from gateway.registrar.bindings import RegistrarPolicy, process_register, resource_of
from gateway.registrar.publish import (
    PublishOutcome,
    PublishPolicy,
    compose,
    effective_presence,
    process_publish,
)
from gateway.sip.message import SipRequest
from gateway.sip.parser import parse_message
from gateway.store.api import Publication
from mappings.pidf import MEDIA_TYPE, Note, PresenceDocument, Tuple, build_pidf, parse_pidf
from mappings.presence import tuple_id_for_resource

AOR = "sip:romeo@sip.localhost"
POLICY = PublishPolicy(hosted_domains=frozenset({"sip.localhost"}))


def pidf(*tuples: tuple[str, str], note: str | None = None) -> bytes:
    doc = PresenceDocument(
        AOR,
        tuple(Tuple(id=i, basic=b) for i, b in tuples),  # type: ignore[arg-type]
        (Note(note),) if note else (),
    )
    return build_pidf(doc)


def publish(
    body: bytes = b"",
    *,
    expires: int | None = None,
    if_match: str | None = None,
    event: str | None = "presence",
    ctype: str = MEDIA_TYPE,
    ruri: str = AOR,
    extra: tuple[str, ...] = (),
) -> SipRequest:
    lines = [
        f"PUBLISH {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKpub1",
        "Max-Forwards: 70",
        f"To: <{AOR}>",
        f"From: <{AOR}>;tag=1",
        "Call-ID: pub-1",
        "CSeq: 1 PUBLISH",
        *([f"Event: {event}"] if event else []),
        *([f"Expires: {expires}"] if expires is not None else []),
        *([f"SIP-If-Match: {if_match}"] if if_match else []),
        *([f"Content-Type: {ctype}"] if body else []),
        *extra,
        f"Content-Length: {len(body)}",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    assert isinstance(msg, SipRequest)
    return msg


def run(
    request: SipRequest,
    existing: tuple[Publication, ...] = (),
    now: float = 1000.0,
    etag: str = "e-new",
    identity: str | None = AOR,
) -> PublishOutcome:
    return process_publish(request, now, POLICY, existing, new_etag=etag, identity=identity)


def hdr(out: PublishOutcome, name: str) -> str | None:
    return next((v for n, v in out.headers if n == name), None)


def test_initial_publication() -> None:
    body = pidf(("t1", "open"))
    out = run(publish(body, expires=600))
    assert out.ok and out.kind == "initial" and (out.aor, out.event) == (AOR, "presence")
    assert hdr(out, "SIP-ETag") == "e-new" and hdr(out, "Expires") == "600"
    (p,) = out.publications
    assert (p.etag, p.expires_at, p.body, p.content_type, p.updated_at) == (
        "e-new", 1600.0, body, MEDIA_TYPE, 1000.0,
    )  # fmt: skip
    assert out.response(publish(body), to_tag="x").headers.get("SIP-ETag") == "e-new"


def test_default_and_capped_expiry() -> None:
    assert hdr(run(publish(pidf(("t", "open")))), "Expires") == "3600"
    assert hdr(run(publish(pidf(("t", "open")), expires=10**6)), "Expires") == "7200"


def test_refresh_keeps_body_and_changes_etag() -> None:
    first = run(publish(pidf(("t1", "open")), expires=600), etag="e1").publications
    out = run(publish(expires=900, if_match="e1"), first, now=1500.0, etag="e2")
    assert out.ok and out.kind == "refresh"
    (p,) = out.publications
    assert (p.etag, p.expires_at, p.body, p.updated_at) == ("e2", 2400.0, first[0].body, 1000.0)
    # The old tag is gone: reusing it is a 412 (§6 step 3).
    assert run(publish(if_match="e1"), out.publications, etag="e3").status == 412


def test_modify_replaces_body() -> None:
    first = run(publish(pidf(("t1", "open")), expires=600), etag="e1").publications
    body = pidf(("t1", "closed"))
    out = run(publish(body, if_match="e1"), first, now=1100.0, etag="e2")
    assert out.kind == "modify" and out.publications[0].body == body
    assert out.publications[0].updated_at == 1100.0


def test_remove_with_expires_zero() -> None:
    first = run(publish(pidf(("t1", "open"))), etag="e1").publications
    out = run(publish(expires=0, if_match="e1"), first, etag="e2")
    assert out.ok and out.kind == "remove" and out.publications == ()
    assert hdr(out, "Expires") == "0"


def test_initial_with_expires_zero_stores_nothing() -> None:
    out = run(publish(pidf(("t1", "open")), expires=0))
    assert out.ok and out.publications == ()


def test_several_publications_coexist() -> None:
    a = run(publish(pidf(("phone", "open"))), etag="ea").publications
    b = run(publish(pidf(("laptop", "open"))), a, etag="eb").publications
    assert [p.etag for p in b] == ["ea", "eb"]


@pytest.mark.parametrize(
    ("request_", "status", "header"),
    [
        (publish(pidf(("t", "open")), event=None), 489, ("Allow-Events", "presence")),
        (publish(pidf(("t", "open")), event="dialog"), 489, ("Allow-Events", "presence")),
        (publish(pidf(("t", "open")), expires=30), 423, ("Min-Expires", "60")),
        (publish(b"hello", ctype="text/plain"), 415, ("Accept", MEDIA_TYPE)),
        (publish(b"<presence/>"), 400, None),  # not PIDF (wrong namespace)
        (publish(), 400, None),  # initial without body
        (publish(if_match="unknown"), 412, None),
        (publish(extra=("SIP-If-Match: a, b",)), 400, None),
        (publish(pidf(("t", "open")), ruri="sip:romeo@elsewhere.org"), 404, None),
        (publish(pidf(("t", "open")), ruri="sip:sip.localhost"), 404, None),
    ],
)
def test_failures(request_: SipRequest, status: int, header: tuple[str, str] | None) -> None:
    existing = run(publish(pidf(("t1", "open"))), etag="e1").publications
    out = run(request_, existing)
    assert out.status == status and out.kind is None
    if out.aor is not None:
        assert out.publications == existing
    if header is not None:
        assert hdr(out, header[0]) == header[1]


def test_only_the_presentity_may_publish() -> None:
    out = run(publish(pidf(("t", "open"))), identity="sip:juliet@sip.localhost")
    assert out.status == 403
    assert run(publish(pidf(("t", "open"))), identity=None).ok


def test_expired_publications_are_dropped() -> None:
    first = run(publish(pidf(("t1", "open")), expires=100), etag="e1").publications
    assert run(publish(if_match="e1"), first, now=1200.0).status == 412
    assert run(publish(pidf(("t2", "open"))), first, now=1200.0).publications[0].etag == "e-new"


def test_etag_reuse_is_a_caller_bug() -> None:
    existing = run(publish(pidf(("t1", "open"))), etag="e1").publications
    with pytest.raises(ValueError):
        run(publish(pidf(("t1", "open"))), existing, etag="e1")


def test_publication_count_is_bounded() -> None:
    policy = PublishPolicy(hosted_domains=frozenset({"sip.localhost"}), max_publications=2)
    pubs: tuple[Publication, ...] = ()
    for n in range(3):
        pubs = process_publish(
            publish(pidf((f"t{n}", "open"))), 1000.0 + n, policy, pubs, new_etag=f"e{n}"
        ).publications
    assert [p.etag for p in pubs] == ["e1", "e2"]


# ---------------------------------------------------------------- composition


def pub(etag: str, body: bytes, updated: float, expires_at: float = 5000.0) -> Publication:
    return Publication(AOR, etag, "presence", expires_at, body, MEDIA_TYPE, updated)


def test_compose_union_newest_wins_per_tuple() -> None:
    older = pub("a", pidf(("phone", "open"), ("shared", "open"), note="old"), 1.0)
    newer = pub("b", pidf(("laptop", "open"), ("shared", "closed")), 2.0)
    doc = compose([newer, older], 10.0, entity=AOR)
    assert doc is not None
    assert {t.id: t.basic for t in doc.tuples} == {
        "phone": "open", "shared": "closed", "laptop": "open",
    }  # fmt: skip
    assert doc.notes == (Note("old"),)  # newest publication having notes
    parse_pidf(build_pidf(doc))  # a valid document


def test_compose_ignores_expired_and_foreign_types() -> None:
    expired = pub("a", pidf(("phone", "open")), 1.0, expires_at=5.0)
    other = Publication(AOR, "x", "presence", 50.0, b"<xml/>", "application/xml", 2.0)
    assert compose([expired, other], 10.0, entity=AOR) is None


def test_effective_presence_for_registered_devices() -> None:
    reg = process_register(
        _register(),
        1000.0,
        RegistrarPolicy(frozenset({"sip.localhost"})),
        (),
        identity=AOR,
    )
    bindings = reg.bindings
    assert effective_presence(AOR, (), bindings, 1001.0, available_without_publish=False) is None
    doc = effective_presence(AOR, (), bindings, 1001.0, available_without_publish=True)
    assert doc is not None
    (tup,) = doc.tuples
    assert tup.id == tuple_id_for_resource(resource_of(bindings[0])) and tup.basic == "open"
    assert tup.contact is not None and tup.contact.startswith(f"{AOR};gr=")
    # Expired registration: nothing to show.
    assert effective_presence(AOR, (), bindings, 1e9, available_without_publish=True) is None
    # Publications win over registrations.
    published = pub("a", pidf(("phone", "closed")), 1.0)
    doc = effective_presence(AOR, (published,), bindings, 1001.0, available_without_publish=True)
    assert doc is not None and [t.basic for t in doc.tuples] == ["closed"]


def _register() -> SipRequest:
    lines = [
        "REGISTER sip:sip.localhost SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKreg1",
        "Max-Forwards: 70",
        f"To: <{AOR}>",
        f"From: <{AOR}>;tag=1",
        "Call-ID: reg-1",
        "CSeq: 1 REGISTER",
        'Contact: <sip:romeo@192.0.2.7>;+sip.instance="<urn:uuid:00000000-0000-0000-0000-1>"',
        "Content-Length: 0",
    ]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, SipRequest)
    return msg

"""The event state compositor for hosted users' presence (RFC 3903 §6), pure.

`process_publish(request, now, policy, existing, new_etag=...)` handles one PUBLISH
against the presentity's current publications and returns a `PublishOutcome`: status,
header fields, and the complete new set to commit with `Store.set_publications` before
answering (atomic, §6 step 5). The caller draws `new_etag` (unpredictable, e.g. 96
random bits); entity-tags are never reused for a Request-URI because they are random.

`compose(...)` merges a presentity's publications into one PIDF document: the union of
the tuples, the newest publication winning for a tuple id it shares with an older one;
document notes and the person element come from the newest publication having them.
`effective_presence(...)` adds the "registered means available" rule for devices that
register but never publish (`available_without_publish`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from gateway.registrar.bindings import canonical_aor, live_bindings, public_gruu, resource_of
from gateway.sip.headers import split_comma
from gateway.sip.message import REASON_PHRASES, SipRequest, SipResponse, make_response
from gateway.sip.uri import SipUri
from gateway.store.api import Binding, Publication
from mappings.dialoginfo import MEDIA_TYPE as DIALOG_INFO
from mappings.dialoginfo import parse_dialog_info
from mappings.pidf import MEDIA_TYPE as PIDF
from mappings.pidf import Note, PresenceDocument, Tuple, parse_pidf
from mappings.presence import tuple_id_for_resource
from mappings.xmlsafe import FormatError

__all__ = [
    "PRESENCE_AND_DIALOG",
    "PublishKind",
    "PublishOutcome",
    "PublishPolicy",
    "compose",
    "effective_presence",
    "process_publish",
]

PublishKind = Literal["initial", "refresh", "modify", "remove"]
_PRESENCE_TYPES: Mapping[str, frozenset[str]] = MappingProxyType({"presence": frozenset({PIDF})})
# With call activity (docs/call-activity.md): devices also publish their dialogs (RFC 4235
# documents under the dialog package, RFC 3903 §4 applies to any event package).
PRESENCE_AND_DIALOG: Mapping[str, frozenset[str]] = MappingProxyType(
    {**_PRESENCE_TYPES, "dialog": frozenset({DIALOG_INFO})}
)


@dataclass(frozen=True)
class PublishPolicy:
    hosted_domains: frozenset[str]
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600  # RFC 3856 §6.4 default for presence
    events: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: _PRESENCE_TYPES, hash=False
    )
    max_publications: int = 16  # per presentity and event; memory bound

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")


@dataclass(frozen=True)
class PublishOutcome:
    """`publications` is the presentity's full set for `event` after the request
    (unchanged on failure); commit it when `kind` is not None."""

    status: int
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    aor: str | None = None
    event: str | None = None
    kind: PublishKind | None = None
    publications: tuple[Publication, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == 200

    def response(self, request: SipRequest, to_tag: str | None = None) -> SipResponse:
        return make_response(
            request, self.status, self.reason or None, to_tag=to_tag, headers=self.headers
        )


def _fail(status: int, reason: str | None = None, *headers: tuple[str, str]) -> PublishOutcome:
    return PublishOutcome(status, reason or REASON_PHRASES.get(status, ""), tuple(headers))


def _check_body(request: SipRequest, event: str, policy: PublishPolicy) -> PublishOutcome | None:
    """§6 step 5: the body must be of a type the event package takes, and parse."""
    ctype = request.content_type
    allowed = policy.events[event]
    if ctype is None or ctype.mime not in allowed:
        return _fail(415, None, ("Accept", ", ".join(sorted(allowed))))
    if ctype.mime == PIDF:
        try:
            parse_pidf(request.body)
        except FormatError as exc:  # 413 for an oversized body, 400 for the rest
            return _fail(exc.sip_status, "Malformed PIDF" if exc.sip_status == 400 else None)
    elif ctype.mime == DIALOG_INFO:
        try:
            parse_dialog_info(request.body)
        except FormatError as exc:
            return _fail(exc.sip_status, "Malformed dialog-info" if exc.sip_status == 400 else None)
    return None


def process_publish(
    request: SipRequest,
    now: float,
    policy: PublishPolicy,
    existing: Sequence[Publication],
    *,
    new_etag: str,
    identity: str | None = None,
) -> PublishOutcome:
    """One PUBLISH (RFC 3903 §6 steps 1-6). `existing` are the presentity's publications
    for any event (expired ones are dropped); `identity` is the authenticated publisher's
    canonical AOR, which must be the presentity (403), or None for a trusted source."""
    if request.method != "PUBLISH":
        raise ValueError(f"process_publish got a {request.method}")
    aor = canonical_aor(request.uri)
    if aor is None or not isinstance(request.uri, SipUri):
        return _fail(404)
    if request.uri.host_bare.rstrip(".") not in policy.hosted_domains:  # step 1
        return _fail(404)
    if identity is not None and identity != aor:
        return _fail(403, "Not authorized to publish for this presentity")
    allow_events = ("Allow-Events", ", ".join(sorted(policy.events)))
    ev = request.event
    if ev is None or ev.package not in policy.events:  # step 2
        return _fail(489, None, allow_events)
    event = ev.package
    if any(p.etag == new_etag for p in existing):
        raise ValueError("new_etag is already in use")
    current = [p for p in existing if p.event == event and p.expires_at > now]
    base = PublishOutcome(0, aor=aor, event=event, publications=tuple(current))
    tags = [t for line in request.headers.get_all("SIP-If-Match") for t in split_comma(line)]
    if len(tags) > 1:  # step 3
        return _with(base, _fail(400, "One entity-tag in SIP-If-Match"))
    previous = None
    if tags:
        previous = next((p for p in current if p.etag == tags[0]), None)
        if previous is None:
            return _with(base, _fail(412))
    requested = policy.default_expires if request.expires is None else request.expires
    if 0 < requested < policy.min_expires:  # step 4
        return _with(base, _fail(423, None, ("Min-Expires", str(policy.min_expires))))
    expires = min(requested, policy.max_expires)
    if request.body:
        bad = _check_body(request, event, policy)
        if bad is not None:
            return _with(base, bad)
    elif previous is None:
        return _with(base, _fail(400, "Initial PUBLISH needs a body"))
    kept = [p for p in current if p is not previous]
    kind: PublishKind
    if expires == 0:
        kind = "remove" if previous is not None else "initial"
    else:
        kind = "initial" if previous is None else "modify" if request.body else "refresh"
        if request.body or previous is None:
            ctype = request.content_type
            body, mime, updated = request.body, ctype.mime if ctype else "", now
        else:
            body, mime, updated = previous.body, previous.content_type, previous.updated_at
        kept.append(Publication(aor, new_etag, event, now + expires, body, mime, updated))
        while len(kept) > policy.max_publications:
            kept.remove(min(kept[:-1], key=lambda p: p.updated_at))
    headers = (("SIP-ETag", new_etag), ("Expires", str(expires)))  # step 6
    return PublishOutcome(200, "OK", headers, aor, event, kind, tuple(kept))


def _with(base: PublishOutcome, failure: PublishOutcome) -> PublishOutcome:
    return PublishOutcome(
        failure.status, failure.reason, failure.headers, base.aor, base.event, None,
        base.publications,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# Composition


def compose(
    publications: Iterable[Publication], now: float, *, entity: str
) -> PresenceDocument | None:
    """One PIDF from the live presence publications, oldest first so the newest wins per
    tuple id; None when there is nothing to compose."""
    live = sorted(
        (p for p in publications if p.expires_at > now and p.content_type == PIDF),
        key=lambda p: p.updated_at,
    )
    tuples: dict[str, Tuple] = {}
    notes: tuple[Note, ...] = ()
    person = None
    parsed = 0
    for pub in live:
        try:
            doc = parse_pidf(pub.body)
        except FormatError:
            continue  # validated on PUBLISH; a corrupt stored body is skipped
        parsed += 1
        for tup in doc.tuples:
            tuples.pop(tup.id, None)
            tuples[tup.id] = tup
        notes = doc.notes or notes
        person = doc.person or person
    if not parsed:
        return None
    return PresenceDocument(entity, tuple(tuples.values()), notes, person)


def effective_presence(
    aor: str,
    publications: Iterable[Publication],
    bindings: Iterable[Binding],
    now: float,
    *,
    available_without_publish: bool,
    entity: str | None = None,
) -> PresenceDocument | None:
    """What XMPP watchers of `aor` see: the composed publications if any; otherwise, when
    `available_without_publish`, one open tuple per registered device (tuple id from its
    XMPP resource, contact its public GRUU or AOR); otherwise None (unavailable)."""
    entity = entity or aor
    doc = compose(publications, now, entity=entity)
    if doc is not None or not available_without_publish:
        return doc
    live = sorted(live_bindings(bindings, now), key=lambda b: b.updated_at)
    if not live:
        return None
    tuples = {}
    for b in live:
        tid = tuple_id_for_resource(resource_of(b))
        tuples[tid] = Tuple(id=tid, basic="open", contact=public_gruu(b) or aor)
    return PresenceDocument(entity, tuple(tuples.values()))

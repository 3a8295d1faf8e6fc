"""REGISTER processing (RFC 3261 §10.3) with GRUU (RFC 5627) and outbound (RFC 5626).

Pure: `process_register(request, now, policy, existing, flow=..., identity=...)` takes the
AOR's current bindings and returns a `RegisterOutcome`: the response status and header
fields, and the AOR's complete new binding set to commit (`Store.set_bindings`) before
sending the response. Nothing is changed unless the outcome says 200; if the commit
fails the caller answers 500 (§10.3 step 7: all or nothing).

Steps done here: 1 (Request-URI domain hosted, else 403), 4 (authorization: the
authenticated `identity` must be the AOR, else 403), 5 (AOR from To, 404 if not in the
Request-URI's domain), 6 (`*` with Expires: 0), 7 (expiry, 423, Call-ID/CSeq ordering),
8 (200 listing all bindings with `expires`). Steps 2 (Require, via `SUPPORTED_OPTIONS`
and `gateway.sip.validate`) and 3 (Digest, `gateway.sip.auth`) are the caller's.

GRUU: only public GRUUs are issued (temporary GRUUs are a SHOULD we leave out: no
privacy service here). The `gr` value is the binding's XMPP resource, a short stable
token (see `resource_token`), so `sip:romeo@example.com;gr=T` <-> `romeo@example.com/T`
with the RFC 7247 mapping and needs no table.

Decisions (docs/registrar.md): an out-of-order CSeq fails the request with 400; a Contact
with `+sip.instance` and no reg-id replaces the binding of the same instance
(`replace_same_instance`); beyond `max_bindings` the least recently registered binding
is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate
from typing import Literal

from gateway.config import RegistrarConfig, SipConfig
from gateway.sip import abnf
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import NameAddr, parse_name_addr, split_comma
from gateway.sip.message import REASON_PHRASES, SipRequest, SipResponse, make_response
from gateway.sip.uri import SipUri, Uri, parse_uri, uri_equal
from gateway.store.api import Binding, Flow

__all__ = [
    "SUPPORTED_OPTIONS",
    "BindingChanges",
    "BindingsChange",
    "RegisterOutcome",
    "RegistrarPolicy",
    "canonical_aor",
    "delivery_order",
    "live_bindings",
    "next_deadline",
    "process_register",
    "public_gruu",
    "resource_of",
    "resource_token",
]

SUPPORTED_OPTIONS = ("gruu", "outbound", "path")  # RFC 5627, RFC 5626, RFC 3327
_ONE_HOUR = 3600  # RFC 3261 §10.3 step 7: 423 only below one hour


@dataclass(frozen=True)
class RegistrarPolicy:
    hosted_domains: frozenset[str]
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_bindings: int = 10  # per AOR; memory bound
    gruu: bool = True
    outbound: bool = True
    replace_same_instance: bool = True
    flow_timer: int | None = None  # RFC 5626 §4.4.1 Flow-Timer in 200 when outbound applied

    def __post_init__(self) -> None:
        if not 0 < self.min_expires <= self.default_expires <= self.max_expires:
            raise ValueError("need 0 < min_expires <= default_expires <= max_expires")
        if self.max_bindings < 1:
            raise ValueError("max_bindings must be at least 1")

    @classmethod
    def from_config(cls, registrar: RegistrarConfig, sip: SipConfig) -> RegistrarPolicy:
        return cls(
            hosted_domains=frozenset(d.lower() for d in sip.hosted_domains),
            min_expires=registrar.min_expires,
            max_expires=registrar.max_expires,
            default_expires=registrar.default_expires,
        )

    def hosts(self, domain: str) -> bool:
        return domain.lower().rstrip(".") in self.hosted_domains


@dataclass(frozen=True)
class BindingChanges:
    added: tuple[Binding, ...] = ()
    refreshed: tuple[Binding, ...] = ()  # updated: new expiry, Call-ID/CSeq, flow...
    removed: tuple[Binding, ...] = ()  # explicit removal, `*`, eviction or found expired
    evicted: tuple[Binding, ...] = ()  # those of `removed` dropped beyond `max_bindings`

    def __bool__(self) -> bool:
        return bool(self.added or self.refreshed or self.removed)


@dataclass(frozen=True)
class BindingsChange:
    """What `Registrar.on_bindings_change` observers get: the AOR's live bindings before
    and after one change, and why (RFC 3680 §4.7.1 needs the cause of every contact's
    transition). `cause`: "register" (an accepted REGISTER; `changes` is its outcome's),
    "expired" (the expiry timer), "rejected" (the user left the user file)."""

    aor: str
    before: tuple[Binding, ...]
    after: tuple[Binding, ...]
    cause: Literal["register", "expired", "rejected"]
    now: float
    changes: BindingChanges = BindingChanges()


@dataclass(frozen=True)
class RegisterOutcome:
    """The answer to one REGISTER. `bindings` is the AOR's full set after the request
    (unchanged on failure); commit it when `changes` is non-empty and status is 200."""

    status: int
    reason: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    aor: str | None = None
    bindings: tuple[Binding, ...] = ()
    changes: BindingChanges = BindingChanges()

    @property
    def ok(self) -> bool:
        return self.status == 200

    def response(self, request: SipRequest, to_tag: str | None = None) -> SipResponse:
        return make_response(request, self.status, self.reason or None, to_tag=to_tag,
                             headers=self.headers)  # fmt: skip


def _fail(status: int, reason: str | None = None, *headers: tuple[str, str]) -> RegisterOutcome:
    return RegisterOutcome(status, reason or REASON_PHRASES.get(status, ""), tuple(headers))


class _Abort(Exception):
    def __init__(self, outcome: RegisterOutcome) -> None:
        self.outcome = outcome


# ---------------------------------------------------------------------------------------
# Identity helpers


def canonical_aor(uri: Uri) -> str | None:
    """`sip:user@host`: parameters dropped, escapes decoded, host lower-cased (§10.3 step 5).
    sips: AORs index the same bindings as sip:. None when not a SIP URI with a user."""
    if not isinstance(uri, SipUri) or not uri.user:
        return None
    return f"sip:{uri.user_decoded}@{uri.host_bare.rstrip('.')}"


def resource_token(aor: str, kind: str, value: str) -> str:
    """16 lower-case base32 characters of SHA-256(aor, kind, value): stable across restarts
    and re-registrations, paramchar-safe for `gr`, valid as an XMPP resourcepart."""
    digest = hashlib.sha256(f"{aor}\x00{kind}\x00{value}".encode()).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def resource_of(binding: Binding) -> str:
    """The XMPP resource of a registered device: from `+sip.instance` when present (stable
    for the device), otherwise from the Contact URI (changes when the contact does)."""
    if binding.instance:
        return resource_token(binding.aor, "instance", binding.instance)
    return resource_token(binding.aor, "contact", binding.contact)


def public_gruu(binding: Binding) -> str | None:
    """`sip:user@host;gr=<resource>` (RFC 5627 §5.1: the AOR plus `gr`), or None without
    an instance."""
    if not binding.instance:
        return None
    return f"{binding.aor};gr={resource_of(binding)}"


def live_bindings(bindings: Iterable[Binding], now: float) -> tuple[Binding, ...]:
    return tuple(b for b in bindings if b.expires_at > now)


def next_deadline(bindings: Iterable[Binding]) -> float | None:
    """The earliest `expires_at`, for the one scheduler that removes expired bindings."""
    return min((b.expires_at for b in bindings), default=None)


def delivery_order(
    bindings: Iterable[Binding], now: float, resource: str | None = None
) -> tuple[Binding, ...]:
    """Targets for a request to the AOR (or to one device when `resource`, the `gr` value,
    is given), tried one after another: highest q first (absent q counts as 1.0), then the
    most recently registered (docs/registrar.md, "Delivery")."""
    live = [
        b for b in live_bindings(bindings, now) if resource is None or resource_of(b) == resource
    ]
    return tuple(sorted(live, key=lambda b: (-(1.0 if b.q is None else b.q), -b.updated_at)))


# ---------------------------------------------------------------------------------------
# REGISTER


@dataclass(frozen=True)
class _Req:
    aor: str
    aor_uri: Uri
    call_id: str
    cseq: int
    expires_header: int | None
    gruu: bool
    outbound_supported: bool  # Supported: outbound (RFC 5626 §4.2.1)
    path: tuple[str, ...]
    flow: Flow | None
    now: float


def _contacts(request: SipRequest) -> tuple[bool, tuple[NameAddr, ...]]:
    """(star, contacts); `*` mixed with anything else is a 400 (§10.3 step 6)."""
    raw = [v for line in request.headers.get_all("Contact") for v in split_comma(line)]
    if any(v.strip(" \t") == "*" for v in raw):
        if len(raw) != 1:
            raise _Abort(_fail(400, "Contact * must be alone"))
        return True, ()
    try:
        return False, request.contacts
    except RemoteProtocolError as exc:
        if any(_UNQUOTED_INSTANCE.search(v) for v in raw):  # `urn:` is no token: unparseable
            raise _Abort(_fail(400, _BAD_INSTANCE)) from exc
        raise _Abort(_fail(400, "Malformed Contact")) from exc


# RFC 5626 §4.1: +sip.instance="<urn:...>", a URN (RFC 2141: "urn:" NID ":" NSS) quoted
# in angle brackets.
_INSTANCE = re.compile(r'"<urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s<>"]+>"', re.IGNORECASE)
_UNQUOTED_INSTANCE = re.compile(r';\s*\+sip\.instance\s*=\s*[^"\s]', re.IGNORECASE)
_BAD_INSTANCE = "Bad +sip.instance (RFC 5626 §4.1: a quoted URN in angle brackets)"
_BAD_REG_ID = "Bad reg-id (RFC 5626 §4.2: an integer from 1 to 2^31-1)"


def _check_outbound_params(contact: NameAddr) -> None:
    """400 naming the parameter for a malformed `+sip.instance` or `reg-id`, whether or
    not outbound applies to the contact (a client that sends them means them)."""
    raw = {n.lower(): v for n, v in contact.params.items}
    if "+sip.instance" in raw:
        instance = raw["+sip.instance"]
        if instance is None or not _INSTANCE.fullmatch(instance):
            raise _Abort(_fail(400, _BAD_INSTANCE))
    if "reg-id" in raw:
        value = raw["reg-id"] or ""
        if not (value.isascii() and value.isdigit() and 0 < int(value) < 2**31):
            raise _Abort(_fail(400, _BAD_REG_ID))


def _requested_expiry(contact: NameAddr, req: _Req, policy: RegistrarPolicy) -> int:
    """Step 7: the `expires` param, else Expires, else the default; 423 when too brief."""
    if "expires" in contact.params:
        requested = contact.expires or 0
    elif req.expires_header is not None:
        requested = req.expires_header
    else:
        requested = policy.default_expires
    if 0 < requested < policy.min_expires and requested < _ONE_HOUR:
        raise _Abort(_fail(423, None, ("Min-Expires", str(policy.min_expires))))
    return min(requested, policy.max_expires)


def _reg_id(contact: NameAddr, req: _Req, policy: RegistrarPolicy) -> int | None:
    """RFC 5626 §6: reg-id counts only with +sip.instance; through a Path, the first hop
    (the last Path entry, RFC 3327 §5.1) must have `ob`, else 439 if the UA asked for
    outbound (Supported: outbound), or the reg-id is ignored."""
    value = contact.params.get("reg-id")
    if not policy.outbound or value is None or not contact.instance:
        return None
    if req.path:
        try:
            first_hop = parse_name_addr(req.path[-1]).uri
        except RemoteProtocolError:
            first_hop = None
        if not (isinstance(first_hop, SipUri) and first_hop.has_param("ob")):
            if req.outbound_supported:
                raise _Abort(_fail(439, "First Hop Lacks Outbound Support"))
            return None
    return int(value)


def _check_contact_uri(contact: NameAddr, req: _Req, policy: RegistrarPolicy) -> None:
    """RFC 5627 §5.1: a contact equal to the AOR or to one of its GRUUs would loop (403);
    a non-SIP contact is refused too (we can only deliver to SIP). A GRUU of another
    user of a hosted domain is refused as well: a binding to it would loop through the
    location service and let one user register another's device."""
    uri = contact.uri
    if not isinstance(uri, SipUri):
        raise _Abort(_fail(403, "Contact must be a SIP URI"))
    if uri_equal(uri, req.aor_uri) or (uri.gr is not None and canonical_aor(uri) == req.aor):
        raise _Abort(_fail(403, "Contact would loop to the AOR"))
    if uri.gr is not None and policy.hosts(uri.host_bare):
        raise _Abort(_fail(403, "Contact is a GRUU of this domain"))


def _matches(b: Binding, uri: SipUri, instance: str | None, reg_id: int | None,
             policy: RegistrarPolicy) -> bool:  # fmt: skip
    if reg_id is not None:  # RFC 5626 §6: keyed by (AOR, instance, reg-id)
        return b.reg_id == reg_id and b.instance == instance
    if b.reg_id is not None:
        return False
    if policy.replace_same_instance and instance is not None and b.instance == instance:
        return True
    try:
        return uri_equal(parse_uri(b.contact), uri)
    except RemoteProtocolError:
        return False


def _ordered(b: Binding, req: _Req) -> None:
    """Same Call-ID needs a higher CSeq, else the request fails (§10.3 steps 6-7)."""
    if b.call_id == req.call_id and req.cseq <= b.cseq:
        raise _Abort(_fail(400, "Out-of-order CSeq"))


def _remove_all(table: list[Binding], req: _Req) -> list[Binding]:
    for b in table:
        _ordered(b, req)
    return []


def _apply_contact(
    table: list[Binding], origin: dict[int, Binding | None], contact: NameAddr, req: _Req,
    policy: RegistrarPolicy,
) -> None:  # fmt: skip
    """Step 7 for one Contact. `origin` maps each binding this request wrote (by id) to the
    pre-existing binding it replaced, so repeated Contacts in one request do not trip the
    CSeq rule against themselves."""
    _check_outbound_params(contact)
    expires = _requested_expiry(contact, req, policy)
    reg_id = _reg_id(contact, req, policy)
    if expires:
        _check_contact_uri(contact, req, policy)
    uri = contact.uri
    if not isinstance(uri, SipUri):
        return  # removing a contact we could never have registered
    instance = contact.instance
    idx = next((i for i, b in enumerate(table) if _matches(b, uri, instance, reg_id, policy)), None)
    replaced = None if idx is None else table[idx]
    if replaced is not None and id(replaced) not in origin:
        _ordered(replaced, req)
    if expires == 0:
        if idx is not None:
            origin.pop(id(table.pop(idx)), None)
        return
    binding = Binding(
        aor=req.aor,
        contact=str(uri),
        expires_at=req.now + expires,
        call_id=req.call_id,
        cseq=req.cseq,
        q=contact.q if contact.q is not None and 0 <= contact.q <= 1 else None,
        instance=instance,
        reg_id=reg_id,
        flow=req.flow,
        path=req.path,
        received=None if req.flow is None else req.flow.remote,
        updated_at=req.now,
    )
    if replaced is None:
        table.append(binding)
        origin[id(binding)] = None
    else:
        table[idx] = binding  # type: ignore[index]
        origin[id(binding)] = origin.pop(id(replaced), replaced)


def _evict(
    table: list[Binding], policy: RegistrarPolicy, origin: dict[int, Binding | None]
) -> list[Binding]:
    """Drop the least recently registered bindings beyond `max_bindings`; the request's
    own contacts are never dropped (too many of them: 403). Returns the dropped ones."""
    evicted: list[Binding] = []
    while len(table) > policy.max_bindings:
        old = [b for b in table if id(b) not in origin]
        if not old:
            raise _Abort(_fail(403, "Too many contacts"))
        oldest = min(old, key=lambda b: b.updated_at)
        table.remove(oldest)
        evicted.append(oldest)
    return evicted


def _contact_value(b: Binding, now: float, gruu: bool) -> str:
    """Step 8 Contact with `expires`; RFC 5627 §5.2 +sip.instance and pub-gruu."""
    value = f"<{b.contact}>;expires={max(0, math.ceil(b.expires_at - now))}"
    if b.q is not None:
        value += f";q={b.q:.3f}".rstrip("0").rstrip(".")
    if b.instance:
        value += f";+sip.instance={abnf.quote(b.instance)}"
        if b.reg_id is not None:
            value += f";reg-id={b.reg_id}"
        gr = public_gruu(b)
        if gruu and gr is not None:
            value += f";pub-gruu={abnf.quote(gr)}"
    return value


def _prepare(request: SipRequest, now: float, policy: RegistrarPolicy,
             flow: Flow | None, identity: str | None) -> _Req:  # fmt: skip
    if request.method != "REGISTER":
        raise ValueError(f"process_register got a {request.method}")
    ruri = request.uri
    if not isinstance(ruri, SipUri) or not policy.hosts(ruri.host_bare):
        raise _Abort(_fail(403, "Domain not hosted here"))
    to = request.to
    aor = None if to is None else canonical_aor(to.uri)
    if to is None or aor is None or not isinstance(to.uri, SipUri):
        raise _Abort(_fail(404, "Not a user in this domain"))
    if to.uri.host_bare.rstrip(".") != ruri.host_bare.rstrip("."):
        raise _Abort(_fail(404, "AOR not in the Request-URI's domain"))
    if identity is not None and identity != aor:
        raise _Abort(_fail(403, "Not authorized for this AOR"))
    if request.call_id is None or request.cseq is None:
        raise _Abort(_fail(400, "Missing Call-ID or CSeq"))
    return _Req(
        aor=aor,
        aor_uri=replace(to.uri, scheme="sip", password=None, port=None, params=(), headers=()),
        call_id=request.call_id,
        cseq=request.cseq.seq,
        expires_header=request.expires,
        gruu=policy.gruu and "gruu" in request.supported,
        outbound_supported="outbound" in request.supported,
        path=tuple(v for line in request.headers.get_all("Path") for v in split_comma(line)),
        flow=flow,
        now=now,
    )


def process_register(
    request: SipRequest,
    now: float,
    policy: RegistrarPolicy,
    existing: Sequence[Binding],
    *,
    flow: Flow | None = None,
    identity: str | None = None,
) -> RegisterOutcome:
    """Process one REGISTER against the AOR's `existing` bindings (see module docstring).

    `flow` is where the request arrived (stored with each binding so that requests reach
    a NATed client over the same flow); `identity` is the canonical AOR of the
    authenticated user, or None when the caller trusts the source (a trusted proxy).
    """
    current = [b for b in existing if b.expires_at > now]
    try:
        req = _prepare(request, now, policy, flow, identity)
        star, contacts = _contacts(request)
    except _Abort as abort:
        return replace(abort.outcome, bindings=tuple(current))
    table = list(current)
    origin: dict[int, Binding | None] = {}
    evicted: list[Binding] = []
    try:
        if star:
            if request.expires != 0 or "Expires" not in request.headers:
                raise _Abort(_fail(400, "Contact * needs Expires: 0"))
            for b in table:
                _ordered(b, req)
            table = []
        else:
            if policy.outbound and sum(1 for c in contacts if "reg-id" in c.params) > 1:
                raise _Abort(_fail(400, "One Contact per flow registration"))
            for contact in contacts:
                _apply_contact(table, origin, contact, req, policy)
        evicted = _evict(table, policy, origin)
    except _Abort as abort:
        return replace(abort.outcome, aor=req.aor, bindings=tuple(current))
    headers: list[tuple[str, str]] = [("Contact", _contact_value(b, now, req.gruu)) for b in table]
    if req.path and table:  # RFC 3327 §5.3: the stored Path, echoed; Path is supported
        headers.extend(("Path", hop) for hop in req.path)
        headers.append(("Supported", "path"))
    if any(b.reg_id is not None and id(b) in origin for b in table):
        headers.append(("Require", "outbound"))  # RFC 5626 §6
        if policy.flow_timer is not None:
            headers.append(("Flow-Timer", str(policy.flow_timer)))
    headers.append(("Date", formatdate(now, usegmt=True)))  # §10.3 step 8: SHOULD
    kept = {id(b) for b in table} | {id(o) for o in origin.values() if o is not None}
    return RegisterOutcome(
        status=200,
        reason="OK",
        headers=tuple(headers),
        aor=req.aor,
        bindings=tuple(table),
        changes=BindingChanges(
            added=tuple(b for b in table if id(b) in origin and origin[id(b)] is None),
            refreshed=tuple(b for b in table if origin.get(id(b)) is not None),
            removed=tuple(b for b in existing if id(b) not in kept),
            evicted=tuple(evicted),
        ),
    )

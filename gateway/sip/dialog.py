"""SIP dialogs (RFC 3261 §12) as used by subscriptions (RFC 6665 §4.1.2.4, §4.4.1).

`Dialog` is a small *mutable* record: the identity (`DialogId`), the local/remote URIs and
the route set never change after creation; the local CSeq, the remote CSeq and the remote
target change only through its methods (`new_request`, `accept_remote_request`,
`accept_response`). Nothing here adds a Via: the transport endpoint fills it in.

`DialogTable` maps dialog ids to whatever the caller keeps per dialog (a subscription), and
answers "which dialog is this incoming request for?"; a miss is answered with 481
(`no_such_dialog`, RFC 3261 §12.2.2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from gateway.sip.errors import DropMessage, LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import NameAddr, parse_name_addr
from gateway.sip.message import HeaderPair, Headers, SipRequest, SipResponse, make_response
from gateway.sip.uri import SipUri, Uri, parse_uri

__all__ = [
    "MAX_FORWARDS",
    "TARGET_REFRESH_METHODS",
    "Dialog",
    "DialogId",
    "DialogTable",
    "no_such_dialog",
]

MAX_FORWARDS = 70  # RFC 3261 §8.1.1.6
# Requests that update the remote target (RFC 3261 §12.2; RFC 6665 §4.1.2.4 / Appendix B.12:
# SUBSCRIBE and NOTIFY are target refresh requests).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# uri-parameters that may not appear in a Request-URI (RFC 3261 §19.1.1 table).
_NOT_IN_REQUEST_URI = ("method",)


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID, local tag, remote tag (RFC 3261 §12). The remote tag is "" for an RFC 2543
    peer that sent no tag (§12.1.1: "set to null")."""

    call_id: str
    local_tag: str
    remote_tag: str

    @classmethod
    def of_incoming(cls, request: SipRequest) -> DialogId | None:
        """The id of the dialog an incoming in-dialog request belongs to (§12.2.2): local tag
        = To tag, remote tag = From tag. None when the request has no To tag."""
        call_id, local = request.call_id, request.to_tag
        if call_id is None or local is None:
            return None
        return cls(call_id, local, request.from_tag or "")


def _bare(addr: NameAddr) -> NameAddr:
    """A From/To value without its tag (the dialog keeps the tag separately)."""
    return NameAddr(addr.uri, addr.display_name, addr.params.without("tag"))


V = TypeVar("V")


def _need(value: V | None, what: str) -> V:
    if value is None:
        raise RemoteProtocolError(f"missing {what}")
    return value


@dataclass(slots=True, init=False, eq=False)
class Dialog:
    """Dialog state (RFC 3261 §12.1). Mutate only through the methods.

    `remote` and `remote_target` may be given as URI text: they are parsed on first use.
    A restore of 100,000 dialogs then holds two short strings per dialog instead of two
    parsed URIs until a dialog is used (docs/performance.md)."""

    id: DialogId
    local: NameAddr  # local URI, from our From (UAC) or the request's To (UAS); no tag
    _remote: NameAddr | str  # remote URI; no tag
    _remote_target: Uri | str
    route_set: tuple[NameAddr, ...]
    local_cseq: int | None
    remote_cseq: int | None
    secure: bool
    local_target: NameAddr | None  # our Contact, sent in target refresh requests
    # What `new_request` derives from the fields that never change within a dialog
    # (`_Prefix`), with the field values it was built from; rebuilt when one differs.
    _prefix: _Prefix | None = field(default=None, repr=False)

    def __init__(
        self,
        *,
        id: DialogId,
        local: NameAddr,
        remote: NameAddr | str,
        remote_target: Uri | str,
        route_set: tuple[NameAddr, ...] = (),
        local_cseq: int | None = None,
        remote_cseq: int | None = None,
        secure: bool = False,
        local_target: NameAddr | None = None,
    ) -> None:
        self.id = id
        self.local = local
        self._remote = remote
        self._remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.secure = secure
        self.local_target = local_target
        self._prefix = None

    @property
    def remote(self) -> NameAddr:
        remote = self._remote
        if isinstance(remote, str):
            remote = self._remote = NameAddr(parse_uri(remote))
        return remote

    @property
    def remote_target(self) -> Uri:
        target = self._remote_target
        if isinstance(target, str):
            target = self._remote_target = parse_uri(target)
        return target

    @remote_target.setter
    def remote_target(self, value: Uri) -> None:
        self._remote_target = value

    def _state(self) -> tuple[object, ...]:
        return (
            self.id,
            self.local,
            self.remote,
            self.remote_target,
            self.route_set,
            self.local_cseq,
            self.remote_cseq,
            self.secure,
            self.local_target,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Dialog):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def remote_uri_text(self) -> str:
        """The remote URI as text, without parsing a lazy one."""
        remote = self._remote
        return remote if isinstance(remote, str) else str(remote.uri)

    def remote_target_text(self) -> str:
        target = self._remote_target
        return target if isinstance(target, str) else str(target)

    # ------------------------------------------------------------ construction

    @classmethod
    def as_uac(
        cls, request: SipRequest, message: SipResponse | SipRequest, *, tls: bool = False
    ) -> Dialog:
        """The dialog a request we sent (a SUBSCRIBE) forms with `message`:

        * a 2xx response (RFC 3261 §12.1.2): route set = Record-Route *reversed*, remote
          target = its Contact, remote tag = its To tag;
        * or the NOTIFY that creates the dialog usage (RFC 6665 §4.1.2.4, §4.4.1; it may come
          before the 2xx): route set = its Record-Route *in order* (we are the UAS of that
          NOTIFY, §12.1.1), remote target = its Contact, remote tag = its From tag, remote
          CSeq = its CSeq.

        A 2xx without a To tag is dropped (`DropMessage`); a NOTIFY without a From tag gets a
        400 (`RemoteProtocolError`). `tls`: the request went over TLS (for the secure flag).
        """
        call_id = request.call_id
        local_tag = request.from_tag
        if call_id is None or local_tag is None or request.cseq is None:
            raise LocalProtocolError("our request lacks Call-ID, From tag or CSeq")
        if message.call_id != call_id:
            raise LocalProtocolError("message belongs to another Call-ID")
        if isinstance(message, SipResponse):
            remote_tag = message.to_tag
            if remote_tag is None:
                raise DropMessage("2xx without a To tag")
            routes = tuple(reversed(message.record_routes))
            remote_cseq = None
        else:
            if message.to_tag != local_tag:
                raise LocalProtocolError("NOTIFY To tag does not match our From tag")
            remote_tag = _need(message.from_tag, "From tag")
            routes = message.record_routes
            remote_cseq = _need(message.cseq, "CSeq").seq
        contacts = message.contacts
        return cls(
            id=DialogId(call_id, local_tag, remote_tag),
            local=_bare(_need(request.from_, "From")),
            remote=_bare(_need(request.to, "To")),
            # A missing Contact is a peer error; fall back on the Request-URI (lenient).
            remote_target=contacts[0].uri if contacts else request.uri,
            route_set=routes,
            local_cseq=request.cseq.seq,
            remote_cseq=remote_cseq,
            secure=tls and _is_sips(request.uri),
            local_target=request.contacts[0] if request.contacts else None,
        )

    @classmethod
    def as_uas(
        cls,
        request: SipRequest,
        local_tag: str,
        *,
        contact: NameAddr | None = None,
        tls: bool = False,
    ) -> Dialog:
        """The dialog formed by a request we received (a SUBSCRIBE) and our 2xx carrying
        `local_tag` (RFC 3261 §12.1.1): route set = Record-Route in order, remote target =
        its Contact, remote CSeq = its CSeq, local CSeq empty. `contact` is our Contact."""
        call_id = _need(request.call_id, "Call-ID")
        contacts = request.contacts
        if not contacts:
            raise RemoteProtocolError("dialog-creating request without Contact")
        return cls(
            id=DialogId(call_id, local_tag, request.from_tag or ""),
            local=_bare(_need(request.to, "To")),
            remote=_bare(_need(request.from_, "From")),
            remote_target=contacts[0].uri,
            route_set=request.record_routes,
            local_cseq=None,
            remote_cseq=_need(request.cseq, "CSeq").seq,
            secure=tls and _is_sips(request.uri),
            local_target=contact,
        )

    # ------------------------------------------------------------ requests we send

    def request_target(self) -> tuple[Uri, tuple[NameAddr, ...]]:
        """Request-URI and Route header values (RFC 3261 §12.2.1.1): with an empty route set
        or a loose first route (`lr`), the Request-URI is the remote target and the route
        set is the Route; with a strict first route, the Request-URI is that route's URI
        (minus parameters not allowed there) and the remote target is appended as the last
        Route."""
        if not self.route_set:
            return self.remote_target, ()
        first = self.route_set[0].uri
        if isinstance(first, SipUri) and first.lr:
            return self.remote_target, self.route_set
        uri: Uri = first
        if isinstance(first, SipUri):
            uri = first.without_params(*_NOT_IN_REQUEST_URI).without_headers()
        return uri, (*self.route_set[1:], NameAddr(self.remote_target))

    def new_request(
        self, method: str, *, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> SipRequest:
        """An in-dialog request (RFC 3261 §12.2.1.1) with the next local CSeq: Route,
        Max-Forwards 70, From/To with tags, Call-ID, CSeq, Contact on target refresh
        requests, then `headers`. No Via (the transport adds it).

        The Request-URI and the checked Route/Max-Forwards/From/To/Call-ID fields are
        built once per dialog (`_Prefix`; issue 11: a fan-out sends one NOTIFY per dialog
        per change); only CSeq, Contact and `headers` are checked per request, and a field
        replaced by assignment rebuilds the prefix (tests/unit/test_dialog_prefix.py checks
        the result against §12.2.1.1)."""
        self.local_cseq = 1 if self.local_cseq is None else self.local_cseq + 1
        prefix = self._prefix
        if (
            prefix is None
            or prefix.id is not self.id
            or prefix.local is not self.local
            or prefix.remote is not self._remote
            or prefix.remote_target is not self._remote_target
            or prefix.route_set is not self.route_set
        ):
            prefix = self._prefix = self._build_prefix()
        tail: list[HeaderPair] = [("CSeq", f"{self.local_cseq} {method}")]
        local_target = self.local_target
        if local_target is not None and method in TARGET_REFRESH_METHODS:
            tail.append(("Contact", str(local_target)))
        tail.extend(headers)
        checked = Headers(tail)
        request = SipRequest(
            method,
            prefix.uri,
            Headers._trusted_keyed(prefix.items + checked._items, prefix.keys + checked._keys),
            body,
        )
        # The parsed To and Route views (the sender reads them) are those of the prefix's
        # fields, unless `headers` adds a field of that name: filled in as the parser does.
        views = request.__dict__
        for name, key, value in prefix.views:
            if key not in checked._keys:
                views[name] = value
        return request

    def _build_prefix(self) -> _Prefix:
        uri, routes = self.request_target()
        pairs: list[HeaderPair] = [("Route", str(r)) for r in routes]
        pairs += [
            ("Max-Forwards", str(MAX_FORWARDS)),
            ("From", str(self.local.with_tag(self.id.local_tag))),
            ("To", str(self._remote_with_tag())),
            ("Call-ID", self.id.call_id),
        ]
        checked = Headers(pairs)  # raises as the per-request construction did
        probe = SipRequest("NOTIFY", uri, checked)
        views: list[tuple[str, str, object]] = []
        for name, key in (("to", "to"), ("routes", "route")):
            # the lazy views parse the same field values (immutable results); a failure is
            # left to raise when the view is read, as before
            with contextlib.suppress(Exception):
                views.append((name, key, getattr(probe, name)))
        # the lazy remote URIs are parsed by now: remember the parsed objects
        return _Prefix(
            self.id,
            self.local,
            self._remote,
            self._remote_target,
            self.route_set,
            uri,
            checked._items,
            checked._keys,
            tuple(views),
        )

    def _remote_with_tag(self) -> NameAddr:
        tag = self.id.remote_tag
        return self.remote.with_tag(tag) if tag else self.remote

    # ------------------------------------------------------------ messages we receive

    def matches(self, request: SipRequest) -> bool:
        return DialogId.of_incoming(request) == self.id

    def accept_remote_request(self, request: SipRequest) -> None:
        """Check and record an incoming in-dialog request (RFC 3261 §12.2.2): a CSeq lower
        than the remote CSeq raises `RemoteProtocolError` 500; a target refresh request
        with a Contact replaces the remote target."""
        if not self.matches(request):
            raise LocalProtocolError("request does not belong to this dialog")
        seq = _need(request.cseq, "CSeq").seq
        if self.remote_cseq is not None and seq < self.remote_cseq:
            raise RemoteProtocolError("CSeq out of order", 500)
        self.remote_cseq = seq
        if request.method in TARGET_REFRESH_METHODS and request.contacts:
            self.remote_target = request.contacts[0].uri

    def accept_response(self, response: SipResponse) -> None:
        """A 2xx to a target refresh request we sent replaces the remote target with its
        Contact (RFC 3261 §12.2.1.2). The route set never changes."""
        cseq = response.cseq
        if (
            response.is_success
            and cseq is not None
            and cseq.method in TARGET_REFRESH_METHODS
            and response.contacts
        ):
            self.remote_target = response.contacts[0].uri

    # ------------------------------------------------------------ persistence

    def to_record(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (strings, ints, bools, lists)."""
        return {
            "call_id": self.id.call_id,
            "local_tag": self.id.local_tag,
            "remote_tag": self.id.remote_tag,
            "local": str(self.local),
            "remote": str(self.remote),
            "remote_target": str(self.remote_target),
            "route_set": [str(r) for r in self.route_set],
            "local_cseq": self.local_cseq,
            "remote_cseq": self.remote_cseq,
            "secure": self.secure,
            "local_target": None if self.local_target is None else str(self.local_target),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Dialog:
        lt = record["local_target"]
        return cls(
            id=DialogId(record["call_id"], record["local_tag"], record["remote_tag"]),
            local=parse_name_addr(record["local"]),
            remote=parse_name_addr(record["remote"]),
            remote_target=parse_uri(record["remote_target"]),
            route_set=tuple(parse_name_addr(r) for r in record["route_set"]),
            local_cseq=record["local_cseq"],
            remote_cseq=record["remote_cseq"],
            secure=bool(record["secure"]),
            local_target=None if lt is None else parse_name_addr(lt),
        )


@dataclass(frozen=True, slots=True)
class _Prefix:
    """A dialog's Request-URI and its checked header pairs up to Call-ID (RFC 3261
    §12.2.1.1), with the dialog fields they were built from (compared by identity)."""

    id: DialogId
    local: NameAddr
    remote: NameAddr | str
    remote_target: Uri | str
    route_set: tuple[NameAddr, ...]
    uri: Uri
    items: tuple[HeaderPair, ...]
    keys: tuple[str, ...]
    views: tuple[tuple[str, str, object], ...]  # (lazy view, its field's key, parsed value)


def _is_sips(uri: Uri) -> bool:
    return isinstance(uri, SipUri) and uri.secure


def no_such_dialog(request: SipRequest) -> SipResponse:
    """481 Call/Transaction Does Not Exist for an in-dialog request matching no dialog
    (RFC 3261 §12.2.2; RFC 6665 §4.1.3 "Subscription does not exist")."""
    return make_response(request, 481)


T = TypeVar("T")


class DialogTable(Generic[T]):
    """Dialog id -> value (e.g. a subscription), for routing incoming in-dialog requests.

    A value may also be registered under a *half* key (Call-ID, local tag) before its remote
    tag is known: a subscriber waits for the NOTIFY that creates the dialog (RFC 6665
    §4.1.2.4). `match` tries the full id first, then the half key.
    """

    def __init__(self) -> None:
        self._full: dict[DialogId, T] = {}
        self._half: dict[tuple[str, str], T] = {}

    def __len__(self) -> int:
        return len(self._full) + len(self._half)

    def __contains__(self, key: object) -> bool:
        return key in self._full or key in self._half

    def __iter__(self) -> Iterator[T]:
        yield from self._full.values()
        yield from self._half.values()

    def add(self, dialog_id: DialogId, value: T) -> None:
        self._full[dialog_id] = value

    def add_half(self, call_id: str, local_tag: str, value: T) -> None:
        self._half[(call_id, local_tag)] = value

    def get(self, dialog_id: DialogId) -> T | None:
        return self._full.get(dialog_id)

    def remove(self, dialog_id: DialogId) -> T | None:
        return self._full.pop(dialog_id, None)

    def remove_half(self, call_id: str, local_tag: str) -> T | None:
        return self._half.pop((call_id, local_tag), None)

    def match(self, request: SipRequest) -> T | None:
        """The value for an incoming in-dialog request; None -> answer `no_such_dialog`."""
        did = DialogId.of_incoming(request)
        if did is None:
            return None
        found = self._full.get(did)
        if found is not None:
            return found
        return self._half.get((did.call_id, did.local_tag))

"""The SIP message model (RFC 3261 §7): immutable `Headers`, `SipRequest`, `SipResponse`.

Design (h11 style): messages are frozen values. `Headers` is an immutable ordered list of
(canonical name, raw value) pairs; "mutators" (`add`, `set`, `remove`, ...) return a new
`Headers`, and `SipRequest.replace(...)` / `with_headers(...)` return a new message.
Typed views (`via`, `cseq`, `from_`, ...) are parsed lazily from the raw values on first
access and cached on the instance; malformed values raise `RemoteProtocolError` (400).
Bodies are bytes and are never interpreted (multipart passes through untouched).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar, overload

from gateway.sip import abnf
from gateway.sip.compiling import mypyc_attr
from gateway.sip.errors import LocalProtocolError, RemoteProtocolError
from gateway.sip.headers import (
    COMPACT_FORMS,
    LIST_HEADERS,
    SINGLETON_HEADERS,
    AuthHeader,
    ContentType,
    CSeq,
    Event,
    NameAddr,
    SubscriptionState,
    Via,
    canonical_name,
    parse_accept,
    parse_auth,
    parse_content_type,
    parse_cseq,
    parse_delta_seconds,
    parse_event,
    parse_max_forwards,
    parse_name_addr,
    parse_name_addr_list,
    parse_subscription_state,
    parse_token_list,
    parse_via,
    split_comma,
)
from gateway.sip.status import REASON_PHRASES
from gateway.sip.uri import Uri

__all__ = [
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "make_response",
    "make_response_from_headers",
]

HeaderPair: TypeAlias = tuple[str, str]
_T = TypeVar("_T")


@mypyc_attr(native_class=False)
class _lazy(Generic[_T]):
    """`functools.cached_property` without its per-access lock (Python 3.11 takes an RLock
    on every first access; 3.12 dropped it): the value goes into the instance `__dict__`,
    which shadows this non-data descriptor from then on. The parser fills the views it
    checks eagerly the same way (issue 11: parser speed)."""

    def __init__(self, func: Callable[[Any], _T]) -> None:
        self.func = func
        # __set_name__ names it; a mypyc-compiled method object has no __name__ (issue 27)
        self.attrname: str = getattr(func, "__name__", "")
        self.__doc__ = func.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        self.attrname = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> _lazy[_T]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...
    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        value = self.func(instance)
        instance.__dict__[self.attrname] = value
        return value


# Lower-case lookup key of the header names seen most (exact spelling -> key): skips
# canonical_name() on hot paths. Unknown spellings take the general path.
_KEYS: dict[str, str] = {}
for _name in (*LIST_HEADERS, *SINGLETON_HEADERS, *COMPACT_FORMS, "Via", "Route", "Timestamp"):
    for _spelling in (_name, _name.lower(), _name.upper()):
        _KEYS[_spelling] = canonical_name(_name).lower()


@mypyc_attr(native_class=False)
class Headers:
    """Immutable ordered header fields; names are canonical (`v` -> `Via`, `cseq` -> `CSeq`),
    unknown names kept verbatim; lookups are case-insensitive and accept compact forms."""

    __slots__ = ("_items", "_keys")

    def __init__(self, items: Iterable[HeaderPair] = ()) -> None:
        pairs: list[HeaderPair] = []
        for name, value in items:
            if not abnf.is_token(name):
                raise LocalProtocolError(f"invalid header name {name!r}")
            if "\r" in value or "\n" in value:
                raise LocalProtocolError(f"CR/LF in value of {name}")
            pairs.append((canonical_name(name), value.strip(" \t")))
        self._items: tuple[HeaderPair, ...] = tuple(pairs)
        self._keys: tuple[str, ...] = tuple(n.lower() for n, _ in pairs)

    @classmethod
    def _trusted(cls, items: tuple[HeaderPair, ...]) -> Headers:
        """Build from already canonical, stripped pairs (the parser's fast path)."""
        self = cls.__new__(cls)
        self._items = items
        self._keys = tuple(n.lower() for n, _ in items)
        return self

    @classmethod
    def _trusted_keyed(cls, items: tuple[HeaderPair, ...], keys: tuple[str, ...]) -> Headers:
        """`_trusted` with the lower-case keys already computed (the parser's loop)."""
        self = cls.__new__(cls)
        self._items = items
        self._keys = keys
        return self

    @classmethod
    def from_canonical(cls, items: Iterable[HeaderPair], keys: tuple[str, ...]) -> Headers:
        """`Headers(items)` for a builder whose names are canonical tokens already (its own
        constants: "Call-ID", "CSeq", ...), with `keys` their lower-case forms in order.

        The values get exactly the checks of `Headers(items)`: a CR or LF is refused with
        the same `LocalProtocolError` (RFC 3261 §7.3.1: no line folding in what we write),
        SP/HTAB around a value are stripped. The names are not checked again: that is the
        saving (token grammar, compact-form lookup, lower-casing). For names that are not
        canonical tokens, or keys that do not match them, use `Headers(items)`."""
        pairs: list[HeaderPair] = []
        for name, value in items:
            if "\r" in value or "\n" in value:
                raise LocalProtocolError(f"CR/LF in value of {name}")
            pairs.append((name, value.strip(" \t")))
        if len(keys) != len(pairs):
            raise ValueError(f"{len(keys)} keys for {len(pairs)} header fields")
        return cls._trusted_keyed(tuple(pairs), keys)

    def extended(
        self, before: Iterable[HeaderPair] = (), after: Iterable[HeaderPair] = ()
    ) -> Headers:
        """``Headers((*before, *self, *after))`` checking only the new pairs: this instance's
        pairs are canonical, stripped and valid already (issue 11: one construction where
        `prepend` + `add` + `add` built and re-checked three)."""
        head = Headers(before)
        tail = Headers(after)
        return Headers._trusted_keyed(
            head._items + self._items + tail._items, head._keys + self._keys + tail._keys
        )

    @staticmethod
    def _key(name: str) -> str:
        key = _KEYS.get(name)
        return canonical_name(name).lower() if key is None else key

    def __iter__(self) -> Iterator[HeaderPair]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._keys

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"

    def items(self) -> tuple[HeaderPair, ...]:
        return self._items

    def keys(self) -> tuple[str, ...]:
        """The lookup key (lower-case canonical name) of every line, in order."""
        return self._keys

    def get(self, name: str, default: str | None = None) -> str | None:
        """Raw value of the first `name` header, else `default`."""
        try:
            return self._items[self._keys.index(self._key(name))][1]
        except ValueError:
            return default

    def first(self, name: str) -> str | None:
        return self.get(name)

    def get_all(self, name: str) -> tuple[str, ...]:
        """Raw values of every `name` header line, in order."""
        key = self._key(name)
        keys = self._keys
        if keys.count(key) <= 1:
            return () if key not in keys else (self._items[keys.index(key)][1],)
        return tuple([v for k, (_, v) in zip(keys, self._items, strict=True) if k == key])

    def values(self, name: str) -> tuple[str, ...]:
        """Element values: list headers are split at top-level commas (RFC 3261 §7.3.1)."""
        raw = self.get_all(name)
        if canonical_name(name) not in LIST_HEADERS:
            return raw
        return tuple(e for v in raw for e in split_comma(v))

    def count(self, name: str) -> int:
        return self._keys.count(self._key(name))

    def add(self, name: str, value: str) -> Headers:
        """Append a header line."""
        return Headers((*self._items, (name, value)))

    def prepend(self, name: str, value: str) -> Headers:
        """Insert before the first header line (e.g. a new top Via, RFC 3261 §8.1.1.7)."""
        return Headers(((name, value), *self._items))

    def set(self, name: str, value: str) -> Headers:
        """Replace the first `name` line in place and drop the others; append if absent."""
        key = self._key(name)
        out: list[HeaderPair] = []
        done = False
        for k, pair in zip(self._keys, self._items, strict=True):
            if k != key:
                out.append(pair)
            elif not done:
                out.append((name, value))
                done = True
        if not done:
            out.append((name, value))
        return Headers(out)

    def remove(self, name: str) -> Headers:
        key = self._key(name)
        return Headers._trusted(
            tuple(p for k, p in zip(self._keys, self._items, strict=True) if k != key)
        )

    def remove_first(self, name: str) -> Headers:
        """Drop the first `name` line (e.g. pop the top Via/Route)."""
        key = self._key(name)
        if key not in self._keys:
            return self
        i = self._keys.index(key)
        return Headers._trusted(self._items[:i] + self._items[i + 1 :])


@mypyc_attr(native_class=False)
class _MessageViews:
    """Typed views shared by requests and responses, computed lazily from `headers`."""

    headers: Headers
    body: bytes

    def _one(self, name: str) -> str | None:
        return self.headers.get(name)

    @_lazy
    def call_id(self) -> str | None:
        return self._one("Call-ID")

    @_lazy
    def cseq(self) -> CSeq | None:
        v = self._one("CSeq")
        return None if v is None else parse_cseq(v)

    @_lazy
    def from_(self) -> NameAddr | None:
        v = self._one("From")
        return None if v is None else parse_name_addr(v)

    @_lazy
    def to(self) -> NameAddr | None:
        v = self._one("To")
        return None if v is None else parse_name_addr(v)

    @property
    def from_tag(self) -> str | None:
        return None if self.from_ is None else self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return None if self.to is None else self.to.tag

    @_lazy
    def vias(self) -> tuple[Via, ...]:
        return tuple(v for raw in self.headers.get_all("Via") for v in parse_via(raw))

    @property
    def top_via(self) -> Via | None:
        return self.vias[0] if self.vias else None

    @_lazy
    def max_forwards(self) -> int | None:
        v = self._one("Max-Forwards")
        return None if v is None else parse_max_forwards(v)

    @_lazy
    def content_length(self) -> int | None:
        v = self._one("Content-Length")
        return None if v is None or not v.isdigit() or len(v) > 10 else int(v)

    @_lazy
    def content_type(self) -> ContentType | None:
        v = self._one("Content-Type")
        return None if v is None else parse_content_type(v)

    @_lazy
    def contact_star(self) -> bool:
        """`Contact: *` (RFC 3261 §10.2.2, REGISTER only)."""
        return [v.strip(" \t") for v in self.headers.get_all("Contact")] == ["*"]

    @_lazy
    def contacts(self) -> tuple[NameAddr, ...]:
        if self.contact_star:
            return ()
        raw = self.headers.get_all("Contact")
        return tuple(c for value in raw for c in parse_name_addr_list(value))

    @_lazy
    def routes(self) -> tuple[NameAddr, ...]:
        return tuple(r for raw in self.headers.get_all("Route") for r in parse_name_addr_list(raw))

    @_lazy
    def record_routes(self) -> tuple[NameAddr, ...]:
        return tuple(
            r for raw in self.headers.get_all("Record-Route") for r in parse_name_addr_list(raw)
        )

    @_lazy
    def expires(self) -> int | None:
        """Expires in seconds; None if absent; malformed/overlarge -> 3600 (RFC 3261 §20.19)."""
        v = self._one("Expires")
        return None if v is None else parse_delta_seconds(v)

    @_lazy
    def min_expires(self) -> int | None:
        v = self._one("Min-Expires")
        return None if v is None else parse_delta_seconds(v)

    @_lazy
    def event(self) -> Event | None:
        v = self._one("Event")
        return None if v is None else parse_event(v)

    @_lazy
    def subscription_state(self) -> SubscriptionState | None:
        v = self._one("Subscription-State")
        return None if v is None else parse_subscription_state(v)

    def _tokens(self, name: str) -> tuple[str, ...]:
        return tuple(parse_token_list(self.headers.get_all(name)))

    @_lazy
    def allow(self) -> tuple[str, ...]:
        return self._tokens("Allow")

    @_lazy
    def supported(self) -> tuple[str, ...]:
        return self._tokens("Supported")

    @_lazy
    def require(self) -> tuple[str, ...]:
        return self._tokens("Require")

    @_lazy
    def proxy_require(self) -> tuple[str, ...]:
        return self._tokens("Proxy-Require")

    @_lazy
    def unsupported(self) -> tuple[str, ...]:
        return self._tokens("Unsupported")

    @_lazy
    def allow_events(self) -> tuple[str, ...]:
        return self._tokens("Allow-Events")

    @_lazy
    def accept(self) -> tuple[ContentType, ...] | None:
        """Accept media ranges; None when the header is absent (differs from empty)."""
        raw = self.headers.get_all("Accept")
        return None if not raw else tuple(parse_accept(raw))

    def auth_headers(self, name: str) -> tuple[AuthHeader, ...]:
        """Parsed WWW-Authenticate / Proxy-Authenticate / (Proxy-)Authorization lines."""
        return tuple(parse_auth(v) for v in self.headers.get_all(name))


# Methods that are tokens (RFC 3261 §25.1), checked by `SipRequest.from_parts` as a set.
_SENT_METHODS = frozenset(
    {"MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH", "REGISTER", "OPTIONS", "INVITE", "ACK"}
    | {"BYE", "CANCEL", "INFO", "UPDATE", "REFER", "PRACK"}
)


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class SipRequest(_MessageViews):
    """A request. `uri` is the parsed Request-URI; `method` is case-sensitive."""

    method: str
    uri: Uri
    headers: Headers = dataclasses.field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not abnf.is_token(self.method):
            raise LocalProtocolError(f"invalid method {self.method!r}")

    @classmethod
    def _trusted(cls, method: str, uri: Uri, headers: Headers, body: bytes) -> SipRequest:
        """Build without `__post_init__`: the parser has already matched `method` as a
        token (its fast path)."""
        self = object.__new__(cls)
        self.__dict__.update(method=method, uri=uri, headers=headers, body=body)
        return self

    @classmethod
    def from_parts(cls, method: str, uri: Uri, headers: Headers, body: bytes = b"") -> SipRequest:
        """`SipRequest(method, uri, headers, body)`: the same request, or the same
        `LocalProtocolError` for a method that is not a token (RFC 3261 §25.1), with the
        methods the gateway sends checked by a set lookup instead of the token grammar."""
        if method not in _SENT_METHODS and not abnf.is_token(method):
            raise LocalProtocolError(f"invalid method {method!r}")
        return cls._trusted(method, uri, headers, body)

    def replace(self, **changes: object) -> SipRequest:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_headers(self, headers: Headers) -> SipRequest:
        # = dataclasses.replace(self, headers=headers); the method was checked already
        return self._trusted(self.method, self.uri, headers, self.body)


@mypyc_attr(native_class=False)
@dataclass(frozen=True)
class SipResponse(_MessageViews):
    status: int
    reason: str = ""
    headers: Headers = dataclasses.field(default_factory=Headers)
    body: bytes = b""

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 699:
            raise LocalProtocolError(f"status code out of range: {self.status}")
        if "\r" in self.reason or "\n" in self.reason:
            raise LocalProtocolError("CR/LF in reason phrase")

    @classmethod
    def _trusted(cls, status: int, reason: str, headers: Headers, body: bytes) -> SipResponse:
        """Build without `__post_init__`: the parser has already checked the status range
        and that the reason has no CR/LF (its fast path)."""
        self = object.__new__(cls)
        self.__dict__.update(status=status, reason=reason, headers=headers, body=body)
        return self

    @property
    def is_provisional(self) -> bool:
        return self.status < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    def replace(self, **changes: object) -> SipResponse:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def with_headers(self, headers: Headers) -> SipResponse:
        # = dataclasses.replace(self, headers=headers); status and reason were checked already
        return self._trusted(self.status, self.reason, headers, self.body)


SipMessage: TypeAlias = SipRequest | SipResponse


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[HeaderPair] = (),
    body: bytes = b"",
) -> SipResponse:
    """Build a response per RFC 3261 §8.2.6: copy Via (all, in order), From, Call-ID, CSeq
    and To (adding `to_tag` unless To already has a tag or status is 100; §8.2.6.2),
    Timestamp for 100 (§8.2.6.1); then `headers`. The serializer adds Content-Length."""
    # The To view, when the parser (or a caller) has computed it already, answers the tag
    # test: it is parse_name_addr() of the same To value (issue 11: no second parse).
    to = request.__dict__.get("to")
    has_tag = None if to is None else to.tag is not None
    return _response(
        request.headers, status, reason, to_tag=to_tag, headers=headers, body=body, has_tag=has_tag
    )


def make_response_from_headers(
    request_headers: Headers,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[HeaderPair] = (),
    body: bytes = b"",
) -> SipResponse:
    """`make_response` from raw request headers only: usable when the request itself could
    not be parsed (see `RemoteProtocolError.headers`). Never parses the To value beyond
    a cheap tag test, so a malformed To is copied verbatim."""
    return _response(
        request_headers, status, reason, to_tag=to_tag, headers=headers, body=body, has_tag=None
    )


def _response(
    request_headers: Headers,
    status: int,
    reason: str | None,
    *,
    to_tag: str | None,
    headers: Iterable[HeaderPair],
    body: bytes,
    has_tag: bool | None,
) -> SipResponse:
    """`has_tag`: whether To has a tag, when the parsed To is at hand; None: test it here.
    Copied pairs are valid already (they come from a `Headers`); only a To with the added
    tag and the extra `headers` are checked, in order, as `Headers(out)` did."""
    out: list[HeaderPair] = [("Via", v) for v in request_headers.get_all("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request_headers.get(name)
        if value is None:
            continue
        if (
            name == "To"
            and to_tag is not None
            and status != 100
            and not (_has_tag(value) if has_tag is None else has_tag)
        ):
            out.extend(Headers(((name, f"{value};tag={to_tag}"),))._items)
            continue
        out.append((name, value))
    if status == 100 and (ts := request_headers.get("Timestamp")) is not None:
        out.append(("Timestamp", ts))
    items = tuple(out) + Headers(headers)._items
    phrase = reason if reason is not None else REASON_PHRASES.get(status, "")
    return SipResponse(status, phrase, Headers._trusted(items), body)


def _has_tag(to_value: str) -> bool:
    try:
        return parse_name_addr(to_value).tag is not None
    except RemoteProtocolError:
        return ";tag=" in to_value.replace(" ", "").lower()

"""The public fast constructors of gateway/sip/message.py against the general ones:
`Headers.from_canonical(pairs, keys)` = `Headers(pairs)` for canonical token names, and
`SipRequest.from_parts(...)` = `SipRequest(...)`: the same result or the same error."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.errors import LocalProtocolError
from gateway.sip.headers import canonical_name
from gateway.sip.message import Headers, SipRequest
from gateway.sip.uri import parse_uri

pytestmark = pytest.mark.unit

# Canonical token names: what a builder writes (known headers in their long form, and
# extension headers kept verbatim by `Headers`).
NAMES = [
    canonical_name(n)
    for n in ("Max-Forwards", "from", "TO", "call-id", "cseq", "Subject", "Content-Language",
              "Content-Type", "Contact", "Event", "Expires", "X-Custom", "P-Asserted-Identity",
              "Call-Info")
]  # fmt: skip
_values = st.text(
    alphabet=st.sampled_from(["a", "Z", "0", " ", "\t", "\r", "\n", ";", "<", ">", "é", "\x00"]),
    max_size=12,
)
_pairs = st.lists(st.tuples(st.sampled_from(NAMES), _values), max_size=8)
URI = parse_uri("sip:romeo@sip.example")


def _outcome(build: Callable[[], object]) -> object:
    try:
        return ("ok", build())
    except LocalProtocolError as exc:
        return ("error", type(exc), str(exc))


def _headers(build: Callable[[], Headers]) -> object:
    outcome = _outcome(build)
    if outcome[0] == "ok":
        headers = outcome[1]
        assert isinstance(headers, Headers)
        return ("ok", headers.items(), headers.keys())
    return outcome


@settings(max_examples=300, deadline=None)
@given(pairs=_pairs)
def test_from_canonical_is_headers(pairs: list[tuple[str, str]]) -> None:
    keys = tuple(n.lower() for n, _ in pairs)
    fast = _headers(lambda: Headers.from_canonical(pairs, keys))
    assert fast == _headers(lambda: Headers(pairs))


def test_from_canonical_refuses_cr_lf_as_headers_does() -> None:
    pairs = [("Subject", "a\r\nVia: SIP/2.0/UDP evil")]
    with pytest.raises(LocalProtocolError, match="CR/LF in value of Subject"):
        Headers.from_canonical(pairs, ("subject",))
    with pytest.raises(LocalProtocolError, match="CR/LF in value of Subject"):
        Headers(pairs)


def test_from_canonical_wants_one_key_per_field() -> None:
    with pytest.raises(ValueError):
        Headers.from_canonical([("To", "<sip:a@b>")], ())


_methods = st.one_of(
    st.sampled_from(["MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH", "BYE", "FOO", "message"]),
    st.text(alphabet=st.sampled_from(["A", "z", "-", ".", "!", " ", "@", "\r", "é"]), max_size=6),
)


@settings(max_examples=300, deadline=None)
@given(method=_methods, pairs=_pairs, body=st.binary(max_size=8))
def test_from_parts_is_sip_request(method: str, pairs: list[tuple[str, str]], body: bytes) -> None:
    h = Headers((n, v.replace("\r", "").replace("\n", "")) for n, v in pairs)
    fast = _outcome(lambda: SipRequest.from_parts(method, URI, h, body))
    slow = _outcome(lambda: SipRequest(method, URI, h, body))
    assert fast == slow
    if fast[0] == "ok":
        request = fast[1]
        assert isinstance(request, SipRequest)
        assert (request.method, request.uri, request.headers, request.body) == (
            method,
            URI,
            h,
            body,
        )

"""gateway.msrp.relay: the RFC 4976 §5.1/§9.1 AUTH exchange, digest and Use-Path."""

from __future__ import annotations

import pytest

from gateway.msrp import relay
from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.message import MsrpResponse
from gateway.msrp.parser import parse_message
from gateway.msrp.serializer import serialize
from gateway.msrp.uri import parse_uri

RELAY = parse_uri("msrps://alice@intra.example.com;tcp")
ME = parse_uri("msrps://alice.example.com:9892/98cjs;tcp")


def _response(text: str) -> MsrpResponse:
    msg = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(msg, MsrpResponse)
    return msg


def test_rfc2617_digest_vector() -> None:
    """RFC 2617 §3.5 (whose values RFC 4976 §5.1's example reuses: response 6629fae4...)."""
    assert relay.digest_response(
        username="Mufasa", password="Circle Of Life", realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", method="GET", uri="/dir/index.html",
        cnonce="0a4f113b",
    ) == "6629fae49393a05397450978507c4ef1"  # fmt: skip


def test_rfc4976_auth_exchange() -> None:
    first = relay.auth_request(RELAY, ME, new_id=lambda: "49fh")
    assert serialize(first) == (
        b"MSRP 49fh AUTH\r\nTo-Path: msrps://alice@intra.example.com;tcp\r\n"
        b"From-Path: msrps://alice.example.com:9892/98cjs;tcp\r\n-------49fh$\r\n"
    )  # RFC 4976 §5.1, byte for byte
    challenge = relay.parse_challenge(_response(
        "MSRP 49fh 401 Unauthorized\n"
        "To-Path: msrps://alice.example.com:9892/98cjs;tcp\n"
        "From-Path: msrps://alice@intra.example.com;tcp\n"
        'WWW-Authenticate: Digest realm="intra.example.com", qop="auth", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"\n'
        "-------49fh$\n"
    ))  # fmt: skip
    assert challenge == relay.Challenge("intra.example.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093")
    value = relay.authorization(challenge, username="Alice", password="pw", uri=RELAY,
                                cnonce="0a4f113b")  # fmt: skip
    expected = relay.digest_response(
        username="Alice", password="pw", realm="intra.example.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", method="AUTH", uri=str(RELAY),
        cnonce="0a4f113b",
    )  # fmt: skip
    assert value.startswith('Digest username="Alice", realm="intra.example.com"')
    assert "qop=auth, nc=00000001" in value and f'response="{expected}"' in value
    assert f'uri="{RELAY}"' in value  # §9.1: the rightmost To-Path URI, quoted
    second = relay.auth_request(RELAY, ME, authorization=value)
    assert second.get("Authorization") == value and parse_message(serialize(second)) == second
    granted = relay.granted(_response(
        "MSRP 49fi 200 OK\n"
        "To-Path: msrps://alice.example.com:9892/98cjs;tcp\n"
        "From-Path: msrps://alice@intra.example.com;tcp\n"
        "Use-Path: msrps://intra.example.com:9000/jui787s2f;tcp\n"
        "Expires: 900\n"
        "-------49fi$\n"
    ))  # fmt: skip
    assert granted == relay.Granted(
        (parse_uri("msrps://intra.example.com:9000/jui787s2f;tcp"),), 900
    )


@pytest.mark.parametrize(
    "www",
    [
        None,
        'Basic realm="x"',  # §9.1: no Basic
        'Digest realm="x", nonce="n"',  # §9.1: qop MUST be present
        'Digest realm="x", nonce="n", qop="auth", algorithm=MD5-sess',  # §9.1: no MD5-sess
        'Digest nonce="n", qop="auth"',
        'Digest realm="x" nonce',
    ],
)
def test_unusable_challenges(www: str | None) -> None:
    head = "MSRP t1234 401 Unauthorized\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://r:2;tcp\n"
    text = head + ("" if www is None else f"WWW-Authenticate: {www}\n") + "-------t1234$\n"
    with pytest.raises(RemoteProtocolError):
        relay.parse_challenge(_response(text))


def test_refused_auth_has_no_use_path() -> None:
    with pytest.raises(RemoteProtocolError):
        relay.granted(_response(
            "MSRP t1234 403 Forbidden\nTo-Path: msrp://a:1/s;tcp\nFrom-Path: msrp://r:2;tcp\n"
            "-------t1234$\n"
        ))  # fmt: skip

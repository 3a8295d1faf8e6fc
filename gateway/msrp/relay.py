"""The relay client's decisions (RFC 4976 §5.1, §9.1): AUTH requests, HTTP Digest
(RFC 2617) answers to a relay's challenge, and the path a 200 grants.

Pure, and deliberately apart from the SIP core's digest (gateway/sip/auth.py): the MSRP
core does not import the SIP core (tests/unit/test_layering.py), and RFC 4976 §9.1 narrows
RFC 2617 in its own way: qop "auth" only (MUST be present, unquoted in Authorization),
cnonce and nc always, no Basic, no MD5-sess, the digest URI is the rightmost To-Path URI,
the method is "AUTH".

Paths (§5.1): the Use-Path of the outermost AUTH's 200, reversed, followed by our URI, is
our SDP a=path; To-Path of our requests is that Use-Path followed by the peer's a=path.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from gateway.msrp.chunks import random_id
from gateway.msrp.errors import RemoteProtocolError
from gateway.msrp.message import MsrpRequest, MsrpResponse, parse_path
from gateway.msrp.uri import MsrpUri

__all__ = [
    "Challenge",
    "Granted",
    "auth_request",
    "authorization",
    "digest_response",
    "granted",
    "parse_challenge",
]

_param_re = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)\s*(?:,|$)')


@dataclass(frozen=True)
class Challenge:
    """A `WWW-Authenticate: Digest ...` from a 401 (RFC 4976 §9.1)."""

    realm: str
    nonce: str
    opaque: str | None = None
    algorithm: str = "MD5"


@dataclass(frozen=True)
class Granted:
    """A 200 to AUTH: the relay URIs to put in paths and how long they last (§5.1)."""

    use_path: tuple[MsrpUri, ...]
    expires: int | None


def auth_request(
    relay: MsrpUri,
    local: MsrpUri,
    *,
    authorization: str | None = None,
    expires: int | None = None,
    new_id: Callable[[], str] = random_id,
) -> MsrpRequest:
    """AUTH (§5.1): To-Path the relay, From-Path our URI."""
    headers: list[tuple[str, str]] = []
    if authorization is not None:
        headers.append(("Authorization", authorization))
    if expires is not None:
        headers.append(("Expires", str(expires)))
    return MsrpRequest.build(new_id(), "AUTH", (relay,), (local,), headers)


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _param_re.match(text, pos)
        if m is None or m.end() == pos:
            raise RemoteProtocolError(f"malformed digest parameters {text[:80]!r}")
        value = m[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[m[1].lower()] = value
        pos = m.end()
    return out


def parse_challenge(response: MsrpResponse) -> Challenge:
    """The Digest challenge of a 401 (RemoteProtocolError when unusable for §9.1)."""
    value = response.get("WWW-Authenticate")
    if value is None or not value[:7].lower() == "digest ":
        raise RemoteProtocolError("401 without a Digest WWW-Authenticate (RFC 4976 §5.1)")
    params = _params(value[7:])
    if "realm" not in params or "nonce" not in params:
        raise RemoteProtocolError("Digest challenge without realm or nonce")
    qops = [q.strip() for q in params.get("qop", "").split(",")]
    if "auth" not in qops:
        raise RemoteProtocolError("Digest challenge without qop=auth (RFC 4976 §9.1)")
    algorithm = params.get("algorithm", "MD5")
    if algorithm.upper() != "MD5":
        raise RemoteProtocolError(f"unsupported digest algorithm {algorithm[:20]!r} (§9.1)")
    return Challenge(params["realm"], params["nonce"], params.get("opaque"), algorithm)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_response(
    *,
    username: str,
    password: str,
    realm: str,
    nonce: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: str = "00000001",
) -> str:
    """RFC 2617 §3.2.2.1 with qop=auth: KD(H(A1), nonce:nc:cnonce:qop:H(A2))."""
    ha1 = _md5(f"{username}:{realm}:{password}")
    ha2 = _md5(f"{method}:{uri}")
    return _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    uri: MsrpUri,
    cnonce: str | None = None,
    nc: int = 1,
) -> str:
    """The Authorization value answering `challenge` for an AUTH whose rightmost To-Path
    URI is `uri` (§9.1)."""
    cnonce = random_id(16) if cnonce is None else cnonce
    count = f"{nc:08x}"
    digest = digest_response(
        username=username,
        password=password,
        realm=challenge.realm,
        nonce=challenge.nonce,
        method="AUTH",
        uri=str(uri),
        cnonce=cnonce,
        nc=count,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(str(uri))}",
        "qop=auth",
        f"nc={count}",
        f"cnonce={_quote(cnonce)}",
        f"response={_quote(digest)}",
        "algorithm=MD5",
    ]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def granted(response: MsrpResponse) -> Granted:
    """The Use-Path (and Expires) of a 200 to AUTH (§5.1)."""
    value = response.get("Use-Path")
    if response.code != 200 or value is None:
        raise RemoteProtocolError(f"AUTH answered {response.code} without a Use-Path")

    expires = response.get("Expires")
    return Granted(
        parse_path(value), int(expires) if expires is not None and expires.isdigit() else None
    )

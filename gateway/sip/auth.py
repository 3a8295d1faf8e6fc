"""SIP Digest authentication (RFC 3261 §22.4 on RFC 2617 / RFC 7616, SHA-256 per RFC 8760).

Pure: hashlib/hmac only, time is an argument. Client side: `parse_challenge` and
`build_authorization` answer a 401/407. Server side: `NonceManager` issues stateless
HMAC-signed nonces, `make_challenge` builds WWW-/Proxy-Authenticate values, and
`verify_authorization` checks an Authorization/Proxy-Authorization value.

Supported: algorithms MD5, MD5-sess, SHA-256, SHA-256-sess; qop=auth and the RFC 2069
no-qop form (RFC 3261 §22.4 item 8 keeps it receivable). Not supported: qop=auth-int,
userhash (RFC 7616 §3.4.4), SHA-512-256, Basic (RFC 3261 §22.4: MUST NOT).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "AuthResult",
    "AuthStatus",
    "DigestChallenge",
    "DigestCredentials",
    "NonceManager",
    "build_authorization",
    "digest_response",
    "ha1",
    "make_challenge",
    "parse_auth_params",
    "parse_challenge",
    "parse_credentials",
    "select_challenge",
    "verify_authorization",
]


class AuthError(ValueError):
    """A malformed or unusable challenge/credentials value."""


# Algorithm name (case-insensitive on input) -> (hash constructor name, is -sess variant).
# RFC 7616 §6.1 registry; RFC 8760 §2.2 for SIP.
ALGORITHMS: dict[str, tuple[str, bool]] = {
    "MD5": ("md5", False),
    "MD5-sess": ("md5", True),
    "SHA-256": ("sha256", False),
    "SHA-256-sess": ("sha256", True),
}
_CANONICAL = {name.lower(): name for name in ALGORITHMS}
# RFC 8760 §2.4: most preferred first.
_PREFERENCE = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


def _algorithm(name: str | None) -> str:
    """Canonical algorithm name; absent means MD5 (RFC 2617 §3.2.1)."""
    if name is None:
        return "MD5"
    try:
        return _CANONICAL[name.lower()]
    except KeyError:
        raise AuthError(f"unsupported digest algorithm {name!r}") from None


def _h(algorithm: str, data: str) -> str:
    return hashlib.new(ALGORITHMS[algorithm][0], data.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------
# auth-param grammar (RFC 3261 §25.1 / §20.27)
#   challenge    = ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
#   auth-param   = auth-param-name EQUAL ( token / quoted-string )
#   quoted-string = SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
#   quoted-pair  = "\" (%x00-09 / %x0B-0C / %x0E-7F)
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_QUOTED = r'"(?:[^"\\]|\\[\x00-\x09\x0b\x0c\x0e-\x7f])*"'
_SCHEME_RE = re.compile(rf"\s*({_TOKEN})(?:\s+|$)")
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*=\s*({_TOKEN}|{_QUOTED})\s*(?:,|$)")
_UNQUOTE_RE = re.compile(r"\\(.)", re.DOTALL)


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return _UNQUOTE_RE.sub(r"\1", value[1:-1])
    return value


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split `Scheme a=b, c="d"` into (scheme, {lowercased name: unquoted value})."""
    m = _SCHEME_RE.match(value)
    if m is None:
        raise AuthError("missing auth scheme")
    scheme, pos, params = m.group(1), m.end(), {}
    while pos < len(value):
        p = _PARAM_RE.match(value, pos)
        if p is None:
            if value[pos:].strip() == "":
                break
            raise AuthError(f"malformed auth-param at {value[pos : pos + 20]!r}")
        name = p.group(1).lower()
        if name in params:
            raise AuthError(f"duplicate auth-param {name!r}")
        params[name] = _unquote(p.group(2))
        pos = p.end()
    return scheme, params


# ---------------------------------------------------------------------------------------
# Client side


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """One Digest WWW-Authenticate / Proxy-Authenticate value (RFC 3261 §20.44)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(header_value: str) -> DigestChallenge:
    """Parse a Digest challenge; AuthError for other schemes or missing realm/nonce."""
    scheme, p = parse_auth_params(header_value)
    if scheme.lower() != "digest":
        raise AuthError(f"not a Digest challenge: {scheme!r}")
    if "realm" not in p or "nonce" not in p:
        raise AuthError("Digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return DigestChallenge(
        realm=p["realm"],
        nonce=p["nonce"],
        algorithm=_algorithm(p.get("algorithm")),
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
    )


def select_challenge(header_values: list[str]) -> DigestChallenge:
    """The topmost usable challenge (RFC 8760 §2.4: servers list the preferred one first)."""
    for value in header_values:
        try:
            challenge = parse_challenge(value)
        except AuthError:
            continue
        if challenge.qop and "auth" not in challenge.qop:
            continue  # auth-int only: unsupported
        return challenge
    raise AuthError("no supported Digest challenge")


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """H(username:realm:password), the base HA1 stored by registrars (RFC 7616 §3.4.2)."""
    return _h(_algorithm(algorithm), f"{username}:{realm}:{password}")


def digest_response(
    *,
    ha1_base: str,
    algorithm: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str = "",
    cnonce: str = "",
) -> str:
    """request-digest per RFC 7616 §3.4.1 (qop=auth) or RFC 2069 (qop None)."""
    alg = _algorithm(algorithm)
    if ALGORITHMS[alg][1]:
        if qop is None:
            raise AuthError("-sess algorithms need qop (RFC 3261 §22.4 item 8)")
        a1 = _h(alg, f"{ha1_base}:{nonce}:{cnonce}")  # RFC 7616 §3.4.2
    else:
        a1 = ha1_base
    a2 = _h(alg, f"{method}:{uri}")  # qop=auth or absent (RFC 7616 §3.4.3)
    if qop is None:
        return _h(alg, f"{a1}:{nonce}:{a2}")
    return _h(alg, f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}")


def build_authorization(
    challenge: DigestChallenge,
    method: str,
    uri: str,
    username: str,
    *,
    password: str | None = None,
    ha1_base: str | None = None,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """An Authorization / Proxy-Authorization value answering `challenge`.

    Give `password` or the precomputed base `ha1_base`. `nc` is the count of requests sent
    with this nonce (RFC 7616 §3.4); `cnonce` defaults to 96 random bits.
    """
    if (password is None) == (ha1_base is None):
        raise AuthError("give exactly one of password and ha1_base")
    if ha1_base is None:
        assert password is not None
        ha1_base = ha1(username, challenge.realm, password, challenge.algorithm)
    if challenge.qop and "auth" not in challenge.qop:
        raise AuthError(f"unsupported qop {challenge.qop!r}")
    qop = "auth" if challenge.qop else None
    if not 0 < nc <= 0xFFFFFFFF:
        raise AuthError("nonce count out of range")
    nc_text = f"{nc:08x}" if qop else ""
    cn = (cnonce or base64.urlsafe_b64encode(os.urandom(12)).decode()) if qop else ""
    response = digest_response(
        ha1_base=ha1_base,
        algorithm=challenge.algorithm,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cn,
    )
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",  # RFC 3261 §22.4 item 2: quoted
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop:
        parts += [f"cnonce={_quote(cn)}", f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


# ---------------------------------------------------------------------------------------
# Server side


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed Digest Authorization value (RFC 3261 §20.7)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None


def parse_credentials(header_value: str) -> DigestCredentials:
    scheme, p = parse_auth_params(header_value)
    if scheme.lower() != "digest":
        raise AuthError(f"not Digest credentials: {scheme!r}")
    missing = {"username", "realm", "nonce", "uri", "response"} - p.keys()
    if missing:
        raise AuthError(f"Digest credentials missing {sorted(missing)}")
    qop = p.get("qop")
    if qop is not None and (qop.lower() != "auth" or "nc" not in p or "cnonce" not in p):
        raise AuthError("qop other than auth, or qop without nc/cnonce")
    return DigestCredentials(
        username=p["username"],
        realm=p["realm"],
        nonce=p["nonce"],
        uri=p["uri"],
        response=p["response"].lower(),
        algorithm=_algorithm(p.get("algorithm")),
        qop=qop.lower() if qop else None,
        nc=p.get("nc"),
        cnonce=p.get("cnonce"),
        opaque=p.get("opaque"),
    )


class AuthStatus(enum.Enum):
    OK = "ok"
    STALE = "stale"  # right password, expired nonce: re-challenge with stale=true
    BAD = "bad"  # malformed, foreign nonce/realm, or wrong password
    UNKNOWN_USER = "unknown-user"
    REPLAY = "replay"  # nonce count not above the last one accepted for this nonce


@dataclass(frozen=True, slots=True)
class AuthResult:
    status: AuthStatus
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status is AuthStatus.OK


class NonceManager:
    """Stateless nonces: base64url(issued_ms[8] || salt[8] || HMAC-SHA256(secret, ...)[16]).

    The MAC binds the issue time, salt and realm, so any process holding `secret` can
    verify a nonce without storing it. Nonce-count replay detection needs state: a
    bounded table nonce -> highest nc accepted. To stay replay-safe when that table is
    lost (restart) or trimmed (eviction), an untracked nonce older than `_floor` is
    answered as STALE: the client retries transparently with a fresh nonce, no prompt.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        now: float,
        lifetime: float = 300.0,
        max_tracked: int = 4096,
        salt: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self._secret = secret
        self._lifetime_ms = int(lifetime * 1000)
        self._max_tracked = max_tracked
        self._salt = salt
        self._floor = int(now * 1000)  # nonces issued before this are untrusted if untracked
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()  # nonce -> (issued, nc)

    def _mac(self, issued: bytes, salt: bytes, realm: str) -> bytes:
        msg = issued + salt + realm.encode("utf-8")
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:16]

    def issue(self, realm: str, now: float) -> str:
        issued = struct.pack(">Q", int(now * 1000))
        salt = self._salt(8)
        return base64.urlsafe_b64encode(issued + salt + self._mac(issued, salt, realm)).decode()

    def issued_at(self, nonce: str, realm: str) -> int | None:
        """Issue time in ms if the nonce is ours and authentic for `realm`, else None."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != 32:
            return None
        issued, salt, mac = raw[:8], raw[8:16], raw[16:]
        if not hmac.compare_digest(mac, self._mac(issued, salt, realm)):
            return None
        return int(struct.unpack(">Q", issued)[0])

    def check_fresh(self, nonce: str, issued_ms: int, nc: int, now: float) -> AuthStatus:
        """STALE, REPLAY or OK for a nonce whose digest was verified; records nc when OK."""
        now_ms = int(now * 1000)
        if now_ms - issued_ms > self._lifetime_ms or issued_ms > now_ms + 1000:
            return AuthStatus.STALE
        entry = self._seen.get(nonce)
        if entry is None:
            if issued_ms < self._floor:
                return AuthStatus.STALE
        elif nc <= entry[1]:
            return AuthStatus.REPLAY
        self._seen[nonce] = (issued_ms, nc)
        self._seen.move_to_end(nonce)
        while len(self._seen) > self._max_tracked:
            _, (evicted_issued, _) = self._seen.popitem(last=False)
            self._floor = max(self._floor, evicted_issued + 1)
        return AuthStatus.OK


def make_challenge(
    nonces: NonceManager,
    realm: str,
    algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
    now: float = 0.0,
    stale: bool = False,
) -> list[str]:
    """One challenge value per algorithm, preferred first (RFC 8760 §2.4); always qop
    (RFC 3261 §22.4 item 8). One nonce is shared by all of them."""
    nonce = nonces.issue(realm, now)
    ordered = sorted((_algorithm(a) for a in algorithms), key=_PREFERENCE.index)
    suffix = ", stale=true" if stale else ""
    return [
        f'Digest realm={_quote(realm)}, nonce={_quote(nonce)}, algorithm={alg}, qop="auth"' + suffix
        for alg in ordered
    ]


def verify_authorization(
    header_value: str,
    method: str,
    ha1_lookup: Callable[[str, str, str], str | None],
    now: float,
    *,
    nonces: NonceManager,
    realm: str,
    allow_no_qop: bool = True,
) -> AuthResult:
    """Check credentials. `ha1_lookup(username, realm, algorithm)` returns the base HA1
    (H(user:realm:password) with that algorithm's hash) or None for an unknown user.

    Staleness and replay are judged only after the digest is right (RFC 2617 §3.2.1:
    stale=true only "with a valid digest for that nonce"), so a forger cannot advance
    a nonce's count. The Authorization `uri` is not compared with the Request-URI
    (RFC 3261 §22.4 item 6: a mismatch is not necessarily a failure).
    """
    try:
        cred = parse_credentials(header_value)
    except AuthError as exc:
        return AuthResult(AuthStatus.BAD, reason=str(exc))
    if cred.realm != realm:
        return AuthResult(AuthStatus.BAD, cred.username, "foreign realm")
    issued = nonces.issued_at(cred.nonce, realm)
    if issued is None:
        return AuthResult(AuthStatus.BAD, cred.username, "nonce not issued here")
    if cred.qop is None:
        if not allow_no_qop or ALGORITHMS[cred.algorithm][1]:
            return AuthResult(AuthStatus.BAD, cred.username, "qop required")
        nc = 0
    else:
        assert cred.nc is not None
        if not re.fullmatch(r"[0-9a-fA-F]{8}", cred.nc):
            return AuthResult(AuthStatus.BAD, cred.username, "malformed nc")
        nc = int(cred.nc, 16)
        if nc == 0:
            return AuthResult(AuthStatus.BAD, cred.username, "nc starts at 1")
    base = ha1_lookup(cred.username, realm, cred.algorithm)
    if base is None:
        return AuthResult(AuthStatus.UNKNOWN_USER, cred.username, "unknown user")
    expected = digest_response(
        ha1_base=base,
        algorithm=cred.algorithm,
        method=method,
        uri=cred.uri,
        nonce=cred.nonce,
        qop=cred.qop,
        nc=cred.nc or "",
        cnonce=cred.cnonce or "",
    )
    if not hmac.compare_digest(expected, cred.response):
        return AuthResult(AuthStatus.BAD, cred.username, "wrong response")
    if cred.qop is None:
        # RFC 2069 clients send no nc: only the lifetime bounds replay.
        status = nonces.check_fresh(cred.nonce, issued, 1, now)
        if status is AuthStatus.REPLAY:
            status = AuthStatus.OK
    else:
        status = nonces.check_fresh(cred.nonce, issued, nc, now)
    return AuthResult(status, cred.username, "" if status is AuthStatus.OK else status.value)

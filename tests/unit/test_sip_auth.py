"""Digest authentication (RFC 3261 §22.4, RFC 7616, RFC 8760)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sip.auth import (
    AuthError,
    AuthStatus,
    DigestChallenge,
    NonceManager,
    build_authorization,
    digest_response,
    ha1,
    make_challenge,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
    select_challenge,
    verify_authorization,
)

SECRET = b"0123456789abcdef-test-secret"
REALM = "gw.example.org"
USERS = {"alice": "wonderland", "bob": "s3cret"}


def _independent_digest(alg: str, v: dict[str, str], *, sess: bool = False) -> str:
    """RFC 7616 §3.4.1 written out again with hashlib, independent of gateway.sip.auth."""

    def h(s: str) -> str:
        return hashlib.new(alg, s.encode()).hexdigest()

    a1 = h(f"{v['user']}:{v['realm']}:{v['pw']}")
    if sess:
        a1 = h(f"{a1}:{v['nonce']}:{v['cnonce']}")
    a2 = h(f"{v['method']}:{v['uri']}")
    return h(f"{a1}:{v['nonce']}:{v['nc']}:{v['cnonce']}:auth:{a2}")


# RFC 7616 §3.9.1 example inputs.
R7616 = {
    "user": "Mufasa",
    "realm": "http-auth@example.org",
    "pw": "Circle of Life",
    "method": "GET",
    "uri": "/dir/index.html",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
}


@pytest.mark.parametrize(
    ("algorithm", "hashname", "published"),
    [
        # The response values printed in RFC 7616 §3.9.1.
        ("MD5", "md5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "sha256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_3_9_1_example(algorithm: str, hashname: str, published: str) -> None:
    v = R7616
    independent = _independent_digest(
        hashname,
        v,
    )
    assert independent == published
    challenge = DigestChallenge(
        realm=v["realm"],
        nonce=v["nonce"],
        algorithm=algorithm,
        qop=("auth",),
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
    )
    header = build_authorization(
        challenge, v["method"], v["uri"], v["user"], password=v["pw"], nc=1, cnonce=v["cnonce"]
    )
    cred = parse_credentials(header)
    assert cred.response == published
    assert cred.nc == "00000001" and cred.qop == "auth" and cred.algorithm == algorithm
    assert cred.opaque == challenge.opaque


@pytest.mark.parametrize(
    ("algorithm", "hashname"), [("MD5-sess", "md5"), ("SHA-256-sess", "sha256")]
)
def test_sess_algorithms_match_independent_formula(algorithm: str, hashname: str) -> None:
    v = R7616
    got = digest_response(
        ha1_base=ha1(v["user"], v["realm"], v["pw"], algorithm),
        algorithm=algorithm,
        method=v["method"],
        uri=v["uri"],
        nonce=v["nonce"],
        qop="auth",
        nc=v["nc"],
        cnonce=v["cnonce"],
    )
    assert got == _independent_digest(
        hashname,
        v,
        sess=True,
    )


def test_rfc2069_no_qop_formula() -> None:
    # RFC 2617 §3.2.2.1: request-digest = KD(H(A1), nonce ":" H(A2)) without qop.
    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    want = md5(f"{md5('bob:r:pw')}:n1:{md5('MESSAGE:sip:x@r')}")
    header = build_authorization(
        DigestChallenge(realm="r", nonce="n1"), "MESSAGE", "sip:x@r", "bob", password="pw"
    )
    cred = parse_credentials(header)
    assert cred.response == want
    assert cred.qop is None and cred.nc is None and cred.cnonce is None


def test_parse_challenge_quoted_escapes_and_tokens() -> None:
    c = parse_challenge(
        'Digest realm="a \\"q\\" realm", nonce="n,1", algorithm=sha-256, '
        'qop="auth,auth-int", stale=TRUE, opaque="o"'
    )
    assert c == DigestChallenge(
        realm='a "q" realm',
        nonce="n,1",
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque="o",
        stale=True,
    )


@pytest.mark.parametrize(
    "bad",
    [
        'Basic realm="x"',
        'Digest nonce="n"',
        'Digest realm="x", nonce="n", algorithm=SHA-512',
        'Digest realm="x" nonce="n"',
        'Digest realm="x',
    ],
)
def test_parse_challenge_rejects(bad: str) -> None:
    with pytest.raises(AuthError):
        parse_challenge(bad)


def test_select_challenge_takes_topmost_supported() -> None:
    # RFC 8760 §2.4: the UAS lists the preferred algorithm first; UAC takes the topmost usable.
    values = [
        'Digest realm="r", nonce="a", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="r", nonce="b", qop="auth-int"',
        'Digest realm="r", nonce="c", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="d", algorithm=MD5, qop="auth"',
    ]
    assert select_challenge(values).nonce == "c"
    with pytest.raises(AuthError):
        select_challenge(values[:2])


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30))
@settings(max_examples=200)
def test_quoted_values_round_trip(text: str) -> None:
    header = build_authorization(
        DigestChallenge(realm=text, nonce="n"), "MESSAGE", "sip:a@b", text, password="p"
    )
    _, params = parse_auth_params(header)
    assert params["username"] == text and params["realm"] == text


# --- server side ---------------------------------------------------------------------


def _lookup(username: str, realm: str, algorithm: str) -> str | None:
    pw = USERS.get(username)
    return None if pw is None else ha1(username, realm, pw, algorithm)


def _salts() -> object:
    counter = iter(range(1, 10**6))
    return lambda n: next(counter).to_bytes(n, "big")


def _manager(now: float = 1000.0, **kw: object) -> NonceManager:
    return NonceManager(SECRET, now=now, salt=_salts(), **kw)  # type: ignore[arg-type]


def _answer(challenge_value: str, user: str, pw: str, nc: int = 1, method: str = "MESSAGE") -> str:
    return build_authorization(
        parse_challenge(challenge_value),
        method,
        "sip:gw.example.org",
        user,
        password=pw,
        nc=nc,
        cnonce="cn",
    )


def _verify(header: str, nonces: NonceManager, now: float, method: str = "MESSAGE") -> AuthStatus:
    return verify_authorization(header, method, _lookup, now, nonces=nonces, realm=REALM).status


def test_make_challenge_sha256_first_and_always_qop() -> None:
    values = make_challenge(_manager(), REALM, ("MD5", "SHA-256"), now=1000.0)
    parsed = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]  # RFC 8760 §2.4
    assert all(c.qop == ("auth",) and c.realm == REALM and not c.stale for c in parsed)
    assert parse_challenge(make_challenge(_manager(), REALM, now=1000.0, stale=True)[0]).stale


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"])
def test_round_trip_ok_then_increasing_nc(algorithm: str) -> None:
    nonces = _manager()
    challenge = make_challenge(nonces, REALM, (algorithm,), now=1000.0)[0]
    assert _verify(_answer(challenge, "alice", "wonderland", nc=1), nonces, 1001.0).name == "OK"
    assert _verify(_answer(challenge, "alice", "wonderland", nc=2), nonces, 1002.0).name == "OK"


def test_replay_of_same_nc_detected() -> None:
    nonces = _manager()
    challenge = make_challenge(nonces, REALM, now=1000.0)[0]
    header = _answer(challenge, "alice", "wonderland", nc=5)
    assert _verify(header, nonces, 1001.0) is AuthStatus.OK
    assert _verify(header, nonces, 1001.5) is AuthStatus.REPLAY
    assert (
        _verify(_answer(challenge, "alice", "wonderland", nc=4), nonces, 1002.0)
        is AuthStatus.REPLAY
    )
    assert _verify(_answer(challenge, "alice", "wonderland", nc=6), nonces, 1002.0) is AuthStatus.OK


def test_wrong_password_does_not_consume_nonce_count() -> None:
    nonces = _manager()
    challenge = make_challenge(nonces, REALM, now=1000.0)[0]
    assert _verify(_answer(challenge, "alice", "guess", nc=9), nonces, 1001.0) is AuthStatus.BAD
    assert _verify(_answer(challenge, "alice", "wonderland", nc=1), nonces, 1001.0) is AuthStatus.OK


def test_stale_after_lifetime_only_with_right_password() -> None:
    nonces = _manager(lifetime=60.0)
    challenge = make_challenge(nonces, REALM, now=1000.0)[0]
    assert _verify(_answer(challenge, "alice", "wonderland"), nonces, 1061.0) is AuthStatus.STALE
    assert _verify(_answer(challenge, "alice", "nope"), nonces, 1061.0) is AuthStatus.BAD
    assert _verify(_answer(challenge, "alice", "wonderland"), nonces, 1059.0) is AuthStatus.OK


def test_unknown_user_and_wrong_method() -> None:
    nonces = _manager()
    challenge = make_challenge(nonces, REALM, now=1000.0)[0]
    assert _verify(_answer(challenge, "mallory", "x"), nonces, 1001.0) is AuthStatus.UNKNOWN_USER
    # The digest covers the method (A2 = method:uri).
    header = _answer(challenge, "alice", "wonderland", method="INVITE")
    assert _verify(header, nonces, 1001.0, method="MESSAGE") is AuthStatus.BAD


def test_forged_and_foreign_nonces_are_bad() -> None:
    nonces = _manager()
    other = NonceManager(b"another-secret-of-16+", now=1000.0)
    forged = make_challenge(other, REALM, now=1000.0)[0]
    assert _verify(_answer(forged, "alice", "wonderland"), nonces, 1001.0) is AuthStatus.BAD
    other_realm = make_challenge(nonces, "elsewhere", now=1000.0)[0]
    header = build_authorization(
        parse_challenge(other_realm),
        "MESSAGE",
        "sip:x",
        "alice",
        ha1_base=_lookup("alice", REALM, "MD5") or "",
        cnonce="c",
    )
    assert (
        _verify(header.replace('realm="elsewhere"', f'realm="{REALM}"'), nonces, 1001.0)
        is AuthStatus.BAD
    )
    garbage = 'Digest username="alice", realm="gw.example.org", nonce="!!", uri="x", response="0"'
    assert _verify(garbage, nonces, 1001.0) is AuthStatus.BAD
    assert _verify("Basic YWxpY2U6d29uZGVybGFuZA==", nonces, 1001.0) is AuthStatus.BAD


def test_restart_keeps_nonces_authentic_but_stale() -> None:
    before = _manager(now=1000.0)
    challenge = make_challenge(before, REALM, now=1000.0)[0]
    assert _verify(_answer(challenge, "alice", "wonderland", nc=1), before, 1001.0) is AuthStatus.OK
    after = _manager(now=1010.0)  # same secret, empty table
    # A replay of the first request would pass if the lost table were trusted; it is STALE.
    assert (
        _verify(_answer(challenge, "alice", "wonderland", nc=1), after, 1011.0) is AuthStatus.STALE
    )
    fresh = make_challenge(after, REALM, now=1011.0)[0]
    assert _verify(_answer(fresh, "alice", "wonderland", nc=1), after, 1012.0) is AuthStatus.OK


def test_table_is_bounded_and_evicted_nonces_turn_stale() -> None:
    nonces = _manager(max_tracked=2)
    challenges = [make_challenge(nonces, REALM, now=1000.0 + i)[0] for i in range(3)]
    for i, c in enumerate(challenges):
        assert _verify(_answer(c, "alice", "wonderland"), nonces, 1010.0 + i) is AuthStatus.OK
    # The first nonce was evicted: a replay of it is not accepted.
    assert (
        _verify(_answer(challenges[0], "alice", "wonderland"), nonces, 1020.0) is AuthStatus.STALE
    )
    assert (
        _verify(_answer(challenges[2], "alice", "wonderland"), nonces, 1020.0) is AuthStatus.REPLAY
    )


def test_no_qop_legacy_accepted_unless_disabled() -> None:
    nonces = _manager()
    nonce = parse_challenge(make_challenge(nonces, REALM, now=1000.0)[0]).nonce
    legacy = build_authorization(
        DigestChallenge(realm=REALM, nonce=nonce), "MESSAGE", "sip:x", "bob", password="s3cret"
    )
    assert _verify(legacy, nonces, 1001.0) is AuthStatus.OK
    assert _verify(legacy, nonces, 1002.0) is AuthStatus.OK  # RFC 2069 has no nc to check
    result = verify_authorization(
        legacy, "MESSAGE", _lookup, 1001.0, nonces=nonces, realm=REALM, allow_no_qop=False
    )
    assert result.status is AuthStatus.BAD


def test_nc_zero_and_malformed_nc_rejected() -> None:
    nonces = _manager()
    header = _answer(make_challenge(nonces, REALM, now=1000.0)[0], "alice", "wonderland")
    assert _verify(header.replace("nc=00000001", "nc=00000000"), nonces, 1001.0) is AuthStatus.BAD
    assert _verify(header.replace("nc=00000001", "nc=1"), nonces, 1001.0) is AuthStatus.BAD


def test_build_authorization_argument_errors() -> None:
    c = DigestChallenge(realm="r", nonce="n", qop=("auth-int",))
    with pytest.raises(AuthError):
        build_authorization(c, "MESSAGE", "sip:x", "u", password="p")
    with pytest.raises(AuthError):
        build_authorization(DigestChallenge(realm="r", nonce="n"), "MESSAGE", "sip:x", "u")
    with pytest.raises(AuthError):
        build_authorization(
            DigestChallenge(realm="r", nonce="n", algorithm="MD5-sess"),
            "MESSAGE",
            "sip:x",
            "u",
            password="p",
        )

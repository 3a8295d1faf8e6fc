"""The registrar user file: HA1 only, clear errors, and Digest verification end to end."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest

from gateway.registrar import users as users_mod
from gateway.registrar.users import (
    UserDirectory,
    UsersFileError,
    format_user,
    hash_password,
    load_users,
    read_users,
)
from gateway.sip.auth import (
    AuthStatus,
    NonceManager,
    build_authorization,
    ha1,
    make_challenge,
    select_challenge,
    verify_authorization,
)

MD5 = ha1("romeo", "sip.localhost", "secret", "MD5")
SHA = ha1("romeo", "sip.localhost", "secret", "SHA-256")


def test_hash_password_matches_rfc_ha1_and_round_trips_through_toml() -> None:
    user = hash_password("romeo@SIP.localhost", None, "secret")
    assert (user.aor, user.username, user.realm) == (
        "romeo@sip.localhost",
        "romeo",
        "sip.localhost",
    )
    assert (user.ha1_md5, user.ha1_sha256) == (MD5, SHA)
    text = format_user(user)
    assert "secret" not in text
    loaded = load_users(tomllib.loads(text))
    assert loaded.users == (user,)
    other = hash_password("juliet@sip.localhost", 'Realm "X"', "pw", username="jüles")
    assert load_users(tomllib.loads(format_user(other))).users == (other,)


def test_lookup_by_login_and_aor() -> None:
    d = load_users({"users": {"romeo@sip.localhost": {"ha1_md5": MD5.upper(), "ha1_sha256": SHA}}})
    assert d.ha1_lookup("romeo", "sip.localhost", "MD5") == MD5
    assert d.ha1_lookup("romeo", "sip.localhost", "MD5-sess") == MD5
    assert d.ha1_lookup("romeo", "sip.localhost", "SHA-256") == SHA
    assert d.ha1_lookup("romeo", "sip.localhost", "SHA-512-256") is None
    assert d.ha1_lookup("romeo", "other", "MD5") is None
    assert d.ha1_lookup("romeo@sip.localhost", "sip.localhost", "MD5") == MD5
    assert d.by_aor("sip:romeo@sip.localhost") is d.by_aor("romeo@sip.localhost") is not None
    assert d.by_aor("juliet@sip.localhost") is None
    assert d.algorithms("sip.localhost") == ("SHA-256", "MD5")
    assert d.algorithms("nowhere") == ("MD5",)
    md5_only = load_users({"users": {"a@x.org": {"ha1_sha256": SHA}}})
    assert md5_only.algorithms("x.org") == ("SHA-256",)


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [
        ({"users": {"r@x.org": {"password": "pw"}}}, 'users."r@x.org".password', "plain-text"),
        ({"users": {"r@x.org": {}}}, 'users."r@x.org"', "needs ha1_md5 or ha1_sha256"),
        ({"users": {"r@x.org": {"ha1_md5": "abc"}}}, 'users."r@x.org".ha1_md5', "32 hexadecimal"),
        ({"users": {"r@x.org": {"ha1_sha256": MD5}}}, 'users."r@x.org".ha1_sha256', "64 hex"),
        ({"users": {"r@x.org": {"ha1_md5": MD5, "colour": "red"}}}, 'users."r@x.org".colour',
         "unknown key"),
        ({"users": {"r@x.org": {"ha1_md5": 5}}}, 'users."r@x.org".ha1_md5', "string"),
        ({"users": {"romeo": {"ha1_md5": MD5}}}, 'users."romeo"', "user@domain"),
        ({"users": {"r@x.org": "x"}}, 'users."r@x.org"', "must be a table"),
        ({"users": []}, "users", "must be a table"),
        ({"user": {}}, "user", "unknown key"),
        (
            {"users": {"r@x.org": {"ha1_md5": MD5}, "r@X.ORG": {"ha1_md5": MD5}}},
            'users."r@X.ORG"',
            "same AOR",
        ),
        (
            {"users": {"r@x.org": {"ha1_md5": MD5}, "s@x.org": {"ha1_md5": MD5, "username": "r"}}},
            'users."s@x.org"',
            "also",
        ),
    ],
)  # fmt: skip
def test_errors_name_the_key(data: dict[str, object], path: str, fragment: str) -> None:
    with pytest.raises(UsersFileError) as err:
        load_users(data)
    assert err.value.path == path
    assert fragment in err.value.problem


def test_read_users_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsersFileError, match="cannot read"):
        read_users(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[users\n")
    with pytest.raises(UsersFileError, match="invalid TOML"):
        read_users(bad)
    good = tmp_path / "users.toml"
    good.write_text(format_user(hash_password("romeo@sip.localhost", None, "secret")))
    assert len(read_users(good)) == 1


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_digest_round_trip_with_stored_ha1(algorithm: str) -> None:
    directory = UserDirectory((hash_password("romeo@sip.localhost", None, "secret"),))
    nonces = NonceManager(b"k" * 32, now=0.0)
    challenges = make_challenge(nonces, "sip.localhost", (algorithm,), now=1.0)
    ch = select_challenge(challenges)
    value = build_authorization(ch, "REGISTER", "sip:sip.localhost", "romeo", password="secret")
    result = verify_authorization(
        value, "REGISTER", directory.ha1_lookup, 2.0, nonces=nonces, realm="sip.localhost"
    )
    assert result.status is AuthStatus.OK and result.username == "romeo"
    wrong = build_authorization(ch, "REGISTER", "sip:sip.localhost", "romeo", password="nope", nc=2)
    bad = verify_authorization(
        wrong, "REGISTER", directory.ha1_lookup, 2.0, nonces=nonces, realm="sip.localhost"
    )
    assert bad.status is AuthStatus.BAD


def test_cli_prints_entry_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert users_mod.main(["romeo@sip.localhost"]) == 0
    out = capsys.readouterr().out
    assert load_users(tomllib.loads(out)).ha1_lookup("romeo", "sip.localhost", "MD5") == MD5
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert users_mod.main(["romeo@sip.localhost"]) == 1
    assert users_mod.main([]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert users_mod.main(["not-an-aor"]) == 2


def test_display_name_is_optional_checked_and_round_trips() -> None:
    """issue 22: `display_name` (the vCard FN of a hosted user on XMPP, docs/registrar.md)."""
    entry = {"ha1_md5": MD5, "display_name": "Roméo Montague"}
    d = load_users(
        {"users": {"romeo@sip.localhost": entry, "tybalt@sip.localhost": {"ha1_md5": MD5}}}
    )
    assert d.display_name("sip:romeo@sip.localhost") == "Roméo Montague"
    assert d.display_name("tybalt@sip.localhost") is None
    assert d.display_name("nobody@sip.localhost") is None
    romeo = d.by_aor("romeo@sip.localhost")
    assert romeo is not None
    assert load_users(tomllib.loads(format_user(romeo))).users == (romeo,)
    for bad, fragment in ((5, "non-empty string"), ("", "non-empty string"),
                          ("a\nb", "control characters"), ("x" * 257, "at most 256")):  # fmt: skip
        with pytest.raises(UsersFileError) as err:
            load_users({"users": {"r@x.org": {"ha1_md5": MD5, "display_name": bad}}})
        assert err.value.path == 'users."r@x.org".display_name'
        assert fragment in err.value.problem


def test_linked_xmpp_account_is_optional_checked_and_round_trips() -> None:
    """issue 22 item 4: `xmpp`, the same person's XMPP account (RFC 7081 linked identities,
    the hosted user's vCard JABBERID on XMPP, docs/registrar.md)."""
    entry = {"ha1_md5": MD5, "xmpp": "romeo@Example.org."}
    d = load_users(
        {"users": {"romeo@sip.localhost": entry, "tybalt@sip.localhost": {"ha1_md5": MD5}}}
    )
    assert d.linked_xmpp("sip:romeo@sip.localhost") == "romeo@Example.org"  # RFC 7622 §3.2
    assert d.linked_xmpp("tybalt@sip.localhost") is None
    assert d.linked_xmpp("nobody@sip.localhost") is None
    romeo = d.by_aor("romeo@sip.localhost")
    assert romeo is not None and romeo.xmpp == "romeo@Example.org"
    assert 'xmpp = "romeo@Example.org"' in format_user(romeo)
    assert load_users(tomllib.loads(format_user(romeo))).users == (romeo,)
    for bad, fragment in ((5, "non-empty string"), ("", "non-empty string"),
                          ("example.org", "bare JID"), ("romeo@example.org/phone", "bare JID"),
                          ("a b@example.org", "bare JID"), ("romeo@", "bare JID"),
                          ("@example.org", "bare JID")):  # fmt: skip
        with pytest.raises(UsersFileError) as err:
            load_users({"users": {"r@x.org": {"ha1_md5": MD5, "xmpp": bad}}})
        assert err.value.path == 'users."r@x.org".xmpp', bad
        assert fragment in err.value.problem, (bad, err.value.problem)

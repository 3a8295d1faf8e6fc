"""Editing the registrar user file (gateway/registrar/userfile.py): HA1 vectors, one table
changed with comments kept, the atomic write, and the errors."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from gateway.registrar.userfile import (
    add_user,
    parse_text,
    remove_user,
    replace_user,
    write_atomically,
)
from gateway.registrar.users import UsersFileError, format_user, hash_password, parse_aor

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "users.toml.demo"


def test_ha1_is_rfc_2617_and_rfc_7616() -> None:
    # RFC 2617 §3.5's credentials; HA1 = H(username ":" realm ":" password) (RFC 7616 §3.4.2).
    user = hash_password("Mufasa@example.org", "testrealm@host.com", "Circle Of Life")
    assert user.ha1_md5 == "939e7578ed9e3c518a452acee763bce9"
    plain = b"Mufasa:testrealm@host.com:Circle Of Life"
    assert user.ha1_sha256 == hashlib.sha256(plain).hexdigest()
    assert user.algorithms == ("SHA-256", "MD5")
    md5_only = hash_password("Mufasa@example.org", None, "x", algorithms=["md5"])
    assert (md5_only.ha1_sha256, md5_only.algorithms) == (None, ("MD5",))
    assert md5_only.ha1_md5 == hashlib.md5(b"Mufasa:example.org:x").hexdigest()
    with pytest.raises(ValueError, match="algorithms"):
        hash_password("a@b", None, "x", algorithms=["SHA-512"])
    with pytest.raises(ValueError, match="algorithms"):
        hash_password("a@b", None, "x", algorithms=[])


@pytest.mark.parametrize("bad", ["romeo", "ro meo@x", "ro;meo@x", "a@b@c", "a@b_c", "@x", ""])
def test_parse_aor_follows_the_file_grammar(bad: str) -> None:
    with pytest.raises(ValueError, match="not user@domain"):
        parse_aor(bad)
    assert parse_aor("sip:Romeo@SIP.Localhost.") == "Romeo@sip.localhost"


def test_add_replace_remove_touch_one_table_and_keep_comments() -> None:
    text = DEMO.read_text(encoding="utf-8")
    before = parse_text(text)
    tybalt = hash_password("tybalt@sip.localhost", None, "pw", algorithms=["MD5"])
    added = add_user(text, tybalt)
    assert added.startswith(text) and added.endswith(format_user(tybalt))
    assert parse_text(added).users == (*before.users, tybalt)

    romeo = hash_password("romeo@sip.localhost", None, "new", algorithms=["MD5"])
    changed = replace_user(added, romeo)
    assert parse_text(changed).by_aor("romeo@sip.localhost") == romeo
    old_line = f'ha1_md5 = "{before.users[0].ha1_md5}"'
    assert changed == added.replace(old_line, f'ha1_md5 = "{romeo.ha1_md5}"')

    removed = remove_user(changed, "romeo@sip.localhost")
    assert [u.aor for u in parse_text(removed).users] == [
        "mercutio@sip.localhost",
        "tybalt@sip.localhost",
    ]
    comments = [ln for ln in text.splitlines() if ln.startswith("#")]
    assert [ln for ln in removed.splitlines() if ln.startswith("#")] == comments
    assert "\n\n\n" not in removed and 'romeo@sip.localhost"]' not in removed


def test_remove_first_last_and_only_entry_leaves_tidy_valid_files() -> None:
    a, b = (hash_password(f"{n}@x.org", None, "pw") for n in ("a", "b"))
    text = format_user(a) + "\n" + format_user(b)
    assert remove_user(text, "a@x.org") == format_user(b)
    assert remove_user(text, "b@x.org") == format_user(a) + "\n"
    assert parse_text(remove_user(format_user(a), "a@x.org")).users == ()
    assert add_user("", a) == format_user(a)
    assert add_user("# users\n", a) == "# users\n\n" + format_user(a)


def test_layouts_the_line_edit_does_not_follow_are_rewritten_whole() -> None:
    a = hash_password("a@x.org", None, "pw", algorithms=["MD5"])
    inline = f'# mine\nusers = {{ "a@x.org" = {{ ha1_md5 = "{a.ha1_md5}" }} }}\n'
    b = hash_password("b@x.org", None, "pw")
    new = add_user(inline, b)
    assert parse_text(new).users == (a, b)
    assert new.startswith("# mine\n")
    dotted = f'[users]\n"a@x.org".ha1_md5 = "{a.ha1_md5}"\n'
    a2 = hash_password("a@x.org", None, "other", algorithms=["MD5"])
    assert parse_text(replace_user(dotted, a2)).users == (a2,)
    assert parse_text(remove_user(dotted, "a@x.org")).users == ()


def test_edit_errors_name_the_user() -> None:
    a = hash_password("a@x.org", None, "pw")
    text = format_user(a)
    with pytest.raises(UsersFileError, match=r'users\."a@x.org": already exists'):
        add_user(text, a)
    with pytest.raises(UsersFileError, match="no such user"):
        remove_user(text, "b@x.org")
    with pytest.raises(UsersFileError, match="no such user"):
        replace_user(text, hash_password("b@x.org", None, "pw"))
    with pytest.raises(UsersFileError, match="invalid TOML"):
        add_user("[users\n", a)
    with pytest.raises(UsersFileError, match="plain-text passwords"):
        remove_user('[users."a@x.org"]\npassword = "pw"\n', "a@x.org")


def _listing(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_write_atomically_keeps_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    write_atomically(path, "one\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a new file: owner only
    path.chmod(0o640)
    inode = path.stat().st_ino
    write_atomically(path, "two\n")
    assert path.read_text() == "two\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert path.stat().st_ino != inode  # replaced, never rewritten in place
    assert _listing(tmp_path) == ["users.toml"]


def test_write_atomically_through_a_symlink_replaces_the_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "users.toml"
    target.write_text("old\n")
    link = tmp_path / "users.toml"
    link.symlink_to(target)
    write_atomically(link, "new\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    assert _listing(tmp_path / "real") == ["users.toml"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "users.toml"
    path.write_text("old\n")

    def refuse(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.replace", refuse)
    with pytest.raises(OSError, match="No space"):
        write_atomically(path, "new\n")
    assert path.read_text() == "old\n"
    assert _listing(tmp_path) == ["users.toml"]

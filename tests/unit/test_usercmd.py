"""`cpim-gateway user ...` and the demo-certificate hint, called in-process through
`gateway.cli.main` (files in tmp_path; no processes: tests/integration/test_user_cli.py
runs the real command and a running gateway)."""

from __future__ import annotations

import io
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from gateway import cli
from gateway.config import missing_file_hint
from gateway.registrar.users import format_user, hash_password, read_users
from gateway.sip.auth import ha1

ROOT = Path(__file__).resolve().parents[2]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *args: str,
    stdin: str | io.StringIO = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr(
        "sys.stdin", stdin if isinstance(stdin, io.StringIO) else io.StringIO(stdin)
    )
    code = cli.main(["user", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users.toml"
    romeo = hash_password("romeo@sip.localhost", None, "romeo", algorithms=["MD5"])
    path.write_text("# the demo's users\n" + format_user(romeo), encoding="utf-8")
    path.chmod(0o600)
    return path


def test_add_list_passwd_remove_round_trip(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    f = ("--file", str(users))
    code, out, _ = run(monkeypatch, capsys, "add", *f, "tybalt@sip.localhost",
                       "--password-stdin", stdin="s3cret\n")  # fmt: skip
    assert code == 0 and "added tybalt@sip.localhost (MD5)" in out and "SIGHUP" in out
    tybalt = read_users(users).by_aor("tybalt@sip.localhost")
    assert tybalt is not None  # MD5 only, like the realm's other user
    assert (tybalt.ha1_md5, tybalt.ha1_sha256) == (ha1("tybalt", "sip.localhost", "s3cret"), None)
    assert "s3cret" not in users.read_text()
    assert users.read_text().startswith("# the demo's users\n")

    code, out, _ = run(monkeypatch, capsys, "list", *f)
    assert code == 0
    assert out.splitlines() == [
        "romeo@sip.localhost   username=romeo   realm=sip.localhost  hashes=MD5",
        "tybalt@sip.localhost  username=tybalt  realm=sip.localhost  hashes=MD5",
    ]
    assert tybalt.ha1_md5 is not None and tybalt.ha1_md5 not in out

    code, out, _ = run(monkeypatch, capsys, "passwd", *f, "tybalt@sip.localhost",
                       "--password-stdin", "--hashes", "md5,sha-256", stdin="other\n")  # fmt: skip
    assert code == 0 and "(SHA-256, MD5)" in out
    tybalt = read_users(users).by_aor("tybalt@sip.localhost")
    assert tybalt is not None
    assert tybalt.ha1_sha256 == ha1("tybalt", "sip.localhost", "other", "SHA-256")

    code, out, _ = run(monkeypatch, capsys, "remove", *f, "sip:tybalt@SIP.localhost")
    assert code == 0 and "removed tybalt@sip.localhost" in out
    assert [u.aor for u in read_users(users).users] == ["romeo@sip.localhost"]
    assert sorted(p.name for p in users.parent.iterdir()) == ["users.toml"]
    assert oct(users.stat().st_mode & 0o777) == "0o600"


def test_passwd_keeps_display_name_and_linked_xmpp_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The entry's other keys are the operator's: a new password does not drop them."""
    path = tmp_path / "users.toml"
    romeo = hash_password("romeo@sip.localhost", None, "romeo", algorithms=["MD5"])
    romeo = replace(romeo, display_name="Romeo Montague", xmpp="romeo@example.org")
    path.write_text(format_user(romeo), encoding="utf-8")
    code, _, err = run(monkeypatch, capsys, "passwd", "-f", str(path), "romeo@sip.localhost",
                       "--password-stdin", stdin="new\n")  # fmt: skip
    assert code == 0, err
    (after,) = read_users(path).users
    assert (after.display_name, after.xmpp) == ("Romeo Montague", "romeo@example.org")
    assert after.ha1_md5 == ha1("romeo", "sip.localhost", "new")


def test_add_creates_a_missing_file_with_both_hashes_and_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.toml"
    code, _, err = run(monkeypatch, capsys, "add", "-f", str(path), "juliet@example.org",
                       "--realm", "Verona", "--username", "jules", "--password-stdin",
                       stdin="pw\r\n")  # fmt: skip
    assert code == 0, err
    (user,) = read_users(path).users
    assert (user.username, user.realm) == ("jules", "Verona")
    assert user.ha1_sha256 == ha1("jules", "Verona", "pw", "SHA-256")
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_password_from_the_terminal_is_asked_twice(
    users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["pw1", "pw1", "pw1", "typo"])
    prompts: list[str] = []

    def getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return next(answers)

    monkeypatch.setattr("getpass.getpass", getpass)
    code, _, _ = run(monkeypatch, capsys, "add", "-f", str(users), "a@sip.localhost", stdin=Tty())
    assert code == 0 and prompts == ["password: ", "again: "]
    before = users.read_text()
    code, _, err = run(monkeypatch, capsys, "passwd", "-f", str(users), "a@sip.localhost",
                       stdin=Tty())  # fmt: skip
    assert (code, err) == (1, "cpim-gateway: the passwords differ; nothing changed\n")
    assert users.read_text() == before


@pytest.mark.parametrize(
    ("args", "stdin", "status", "message"),
    [
        (("remove", "nobody@sip.localhost"), "", 1, "no user nobody@sip.localhost"),
        (("passwd", "nobody@sip.localhost", "--password-stdin"), "pw\n", 1, "no user nobody@"),
        (("add", "romeo@sip.localhost", "--password-stdin"), "pw\n", 1, "already exists"),
        (("add", "new@sip.localhost", "--password-stdin"), "\n", 1, "empty password"),
        (("add", "new@sip.localhost"), "pw\n", 2, "--password-stdin"),  # stdin not a terminal
        (("add", "ro meo@sip.localhost", "--password-stdin"), "pw\n", 2, "is not user@domain"),
        (("remove", "romeo"), "", 2, "'romeo' is not user@domain"),
    ],
)
def test_refusals_are_one_line_with_their_status(
    users: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    stdin: str,
    status: int,
    message: str,
) -> None:
    before = users.read_text()
    code, out, err = run(monkeypatch, capsys, args[0], "-f", str(users), *args[1:], stdin=stdin)
    assert code == status
    assert out == "" and err.startswith("cpim-gateway: ") and err.count("\n") == 1
    assert message in err
    assert users.read_text() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[users\n", "invalid TOML"),
        ('[users."a@b"]\nha1_md5 = "zz"\n', 'users."a@b".ha1_md5: must be 32 hexadecimal digits'),
        ('[users."a@b"]\npassword = "pw"\n', "plain-text passwords are not accepted"),
        (b"\xff\n", "is not UTF-8"),
    ],
)
@pytest.mark.parametrize("command", ["list", "remove", "add"])
def test_a_malformed_file_is_exit_2_and_untouched(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: str | bytes,
    message: str,
    command: str,
) -> None:
    path = tmp_path / "users.toml"
    data = content.encode() if isinstance(content, str) else content
    path.write_bytes(data)
    args = (
        () if command == "list" else ("x@b", "--password-stdin") if command == "add" else ("a@b",)
    )
    code, out, err = run(monkeypatch, capsys, command, "-f", str(path), *args, stdin="pw\n")
    assert (code, out) == (2, "")
    assert message in err and err.count("\n") == 1 and str(path) in err
    assert path.read_bytes() == data


def test_list_of_a_missing_file_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(monkeypatch, capsys, "list", "-f", str(tmp_path / "none.toml"))
    assert code == 2 and "no such file" in err


def _config(tmp_path: Path, users: Path | None) -> Path:
    cfg = tmp_path / "gateway.toml"
    registrar = f"[registrar]\nusers_file = {str(users)!r}\n" if users else ""
    cfg.write_text(
        '[[xmpp.components]]\ndomain = "sip.localhost"\nsecret = "s"\n'
        '[sip]\nhosted_domains = ["sip.localhost"]\n' + registrar,
        encoding="utf-8",
    )
    return cfg


def test_config_names_the_file_and_the_hosted_domains(
    tmp_path: Path,
    users: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = str(_config(tmp_path, users))
    code, out, _ = run(monkeypatch, capsys, "add", "-c", cfg, "benvolio@sip.localhost",
                       "--password-stdin", stdin="pw\n")  # fmt: skip
    assert code == 0 and str(users) in out
    code, out, _ = run(monkeypatch, capsys, "list", "--config", cfg)
    assert "benvolio@sip.localhost" in out
    code, _, err = run(monkeypatch, capsys, "add", "-c", cfg, "a@example.org",
                       "--password-stdin", stdin="pw\n")  # fmt: skip
    assert code == 2
    assert "example.org is not in sip.hosted_domains (sip.localhost)" in err

    no_file = str(_config(tmp_path, None))
    code, _, err = run(monkeypatch, capsys, "list", "-c", no_file)
    assert code == 2 and "registrar.users_file is not set" in err
    cfg_path = tmp_path / "gateway.toml"
    cfg_path.write_text("[xmpp\n")
    code, _, err = run(monkeypatch, capsys, "list", "-c", str(cfg_path))
    assert code == 2 and "invalid TOML" in err


def test_config_or_file_is_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        run(monkeypatch, capsys, "list")
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        run(monkeypatch, capsys, "add", "a@b", "--hashes", "sha-512")
    assert "give md5, sha-256 or both" in capsys.readouterr().err


def test_the_deprecated_module_still_prints_an_entry_with_a_note(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.registrar import users

    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert users.main(["romeo@sip.localhost"]) == 0
    out, err = capsys.readouterr()
    assert "deprecated" in err and "cpim-gateway user add" in err
    assert tomllib.loads(out)["users"]["romeo@sip.localhost"]["ha1_md5"] == ha1(
        "romeo", "sip.localhost", "pw"
    )


# -- the demo certificate on a fresh checkout -----------------------------------------


def fresh_checkout(tmp_path: Path) -> Path:
    """The files of a fresh clone that the demo configuration involves (no .state/)."""
    root = tmp_path / "clone"
    shutil.copytree(ROOT / "deploy" / "demo", root / "deploy" / "demo")
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo-certs.sh", root / "scripts")
    return root


def test_check_config_on_a_fresh_checkout_says_what_makes_the_demo_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fresh_checkout(tmp_path)
    monkeypatch.chdir(root)
    for args in (["check-config", "deploy/demo/gateway.toml"],
                 ["run", "--config", "deploy/demo/gateway.toml"]):  # fmt: skip
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert "sip.listeners[2].certificate: cannot read" in err
        assert err.rstrip().endswith(
            "run `bash scripts/demo-certs.sh` (or `make run`) to create the demo TLS certificate"
        )
    code, _, err = run(monkeypatch, capsys, "add", "-c", "deploy/demo/gateway.toml",
                       "tybalt@sip.localhost", "--password-stdin", stdin="pw\n")  # fmt: skip
    assert code == 2 and err.rstrip().endswith("to create the demo TLS certificate")
    monkeypatch.chdir(tmp_path)  # from elsewhere: the script's full path
    assert cli.main(["check-config", str(root / "deploy/demo/gateway.toml")]) == 2
    assert f"run `bash {root}/scripts/demo-certs.sh`" in capsys.readouterr().err


def test_no_hint_for_other_missing_files(tmp_path: Path) -> None:
    root = fresh_checkout(tmp_path)
    assert missing_file_hint(root / ".state/demo/tls/demo.crt") is not None
    assert missing_file_hint(root / ".state/demo/other/demo.crt") is None
    assert missing_file_hint(tmp_path / ".state/demo/tls/demo.crt") is None  # no script
    assert missing_file_hint(Path("/demo.crt")) is None


def test_passwd_keeps_the_display_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], users: Path
) -> None:
    """issue 22: a new password does not drop what the operator wrote for the vCard."""
    users.write_text(users.read_text() + 'display_name = "Romeo M."\n', encoding="utf-8")
    code, _, _ = run(monkeypatch, capsys, "passwd", "-f", str(users), "romeo@sip.localhost",
                     "--password-stdin", stdin="new\n")  # fmt: skip
    assert code == 0
    romeo = read_users(users).by_aor("romeo@sip.localhost")
    assert romeo is not None and romeo.display_name == "Romeo M."
    assert romeo.ha1_md5 == ha1("romeo", "sip.localhost", "new", "MD5")

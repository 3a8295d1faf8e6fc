"""issue 22 item 1: XEP-0153 avatars of hosted users, from the user file to the vCard.

mappings/avatar.py (magic bytes, size bound, the PHOTO and x:update elements), the user
file's ``avatar`` key (gateway/registrar/users.py: relative to the file, every refusal
naming the key), `cpim-gateway user add --avatar` and `check-config` reading the file."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from gateway import cli
from gateway.registrar.users import UsersFileError, format_user, hash_password, read_users
from mappings.addresses import AddressingMode, DomainMap
from mappings.avatar import (
    AVATAR_MAX_BYTES,
    NS_VCARD_UPDATE,
    Avatar,
    AvatarError,
    image_type,
    parse_avatar,
    update_element,
)
from mappings.jid import parse_jid
from mappings.vcard import contact_card, vcard_element

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
V = "{vcard-temp}"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"j" * 30
GIF = b"GIF89a" + b"g" * 20
WEBP = b"RIFF\x20\x00\x00\x00WEBPVP8 " + b"w" * 20


@pytest.mark.parametrize(
    ("data", "media_type"),
    [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"), (b"GIF87a..", "image/gif"),
     (WEBP, "image/webp")],
)  # fmt: skip
def test_image_types_by_magic_bytes(data: bytes, media_type: str) -> None:
    assert image_type(data) == media_type
    avatar = parse_avatar(data)
    assert (avatar.media_type, avatar.data) == (media_type, data)
    assert avatar.sha1 == hashlib.sha1(data).hexdigest()  # XEP-0153 §3.1: of the bytes


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a PNG"),
        (b"RIFF\x20\x00\x00\x00WAVEfmt ", "not a PNG"),  # RIFF, but audio
        (b"\x89PNG\r\n", "not a PNG"),  # a truncated signature
        (PNG[:8] + b"x" * AVATAR_MAX_BYTES, "more than the 65536 allowed"),
    ],
)
def test_refused_images(data: bytes, why: str) -> None:
    with pytest.raises(AvatarError, match=why):
        parse_avatar(data)


def test_photo_in_the_vcard_between_fn_and_tel() -> None:
    """XEP-0054's DTD order (FN, N, NICKNAME?, PHOTO?, ..., TEL?, ...); XEP-0153 §4.4."""
    dm = DomainMap("sip.example.org", AddressingMode("mirrored"))
    avatar = parse_avatar(PNG)
    pictures = {"sip:romeo@sip.example.org": avatar}
    card = contact_card(parse_jid("romeo@sip.example.org/x"), dm, avatars=pictures.get)
    element = vcard_element(card)
    assert [c.tag for c in element] == [f"{V}FN", f"{V}PHOTO", f"{V}TEL", f"{V}URL"]
    photo = element.find(f"{V}PHOTO")
    assert photo is not None and [c.tag for c in photo] == [f"{V}TYPE", f"{V}BINVAL"]
    assert photo.findtext(f"{V}TYPE") == "image/png"
    assert base64.b64decode(photo.findtext(f"{V}BINVAL") or "") == PNG
    other = vcard_element(contact_card(parse_jid("tybalt@sip.example.org"), dm, None, None,
                                       pictures.get))  # fmt: skip
    assert other.find(f"{V}PHOTO") is None


def test_update_element_is_lower_case_hex_sha1() -> None:
    x = update_element(Avatar("image/gif", GIF))
    assert ET.tostring(x, encoding="unicode") == (
        f'<ns0:x xmlns:ns0="{NS_VCARD_UPDATE}"><ns0:photo>'
        f"{hashlib.sha1(GIF).hexdigest()}</ns0:photo></ns0:x>"
    )


# -- the user file ---------------------------------------------------------------------------


def _user_file(tmp_path: Path, avatar: str) -> Path:
    romeo = replace(hash_password("romeo@sip.localhost", None, "pw"), avatar=avatar)
    path = tmp_path / "users.toml"
    path.write_text(format_user(romeo), encoding="utf-8")
    return path


def test_avatar_relative_to_the_user_file_and_absolute(tmp_path: Path) -> None:
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "romeo.png").write_bytes(PNG)
    users = read_users(_user_file(tmp_path, "pics/romeo.png"))
    avatar = users.avatar("sip:romeo@sip.localhost")
    assert avatar is not None and avatar.data == PNG and avatar.media_type == "image/png"
    assert users.by_aor("romeo@sip.localhost").avatar == "pics/romeo.png"  # type: ignore[union-attr]
    assert users.avatar("juliet@sip.localhost") is None
    absolute = read_users(_user_file(tmp_path, str(tmp_path / "pics" / "romeo.png")))
    assert absolute.avatar("romeo@sip.localhost") == avatar


def test_format_user_round_trips_the_avatar_key(tmp_path: Path) -> None:
    (tmp_path / "a.gif").write_bytes(GIF)
    path = _user_file(tmp_path, "a.gif")
    assert 'avatar = "a.gif"' in path.read_text()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda d: None, "cannot read"),  # no such file
        (lambda d: (d / "romeo.png").write_bytes(b"GIF8"), "not a PNG, JPEG, GIF or WebP"),
        (lambda d: (d / "romeo.png").write_bytes(PNG + bytes(AVATAR_MAX_BYTES)), "more than"),
        (lambda d: (d / "romeo.png").mkdir(), "not a regular file"),
        (lambda d: os.mkfifo(d / "romeo.png"), "not a regular file"),  # never opened
    ],
)
def test_refused_avatar_names_the_key(tmp_path: Path, make: object, why: str) -> None:
    make(tmp_path)  # type: ignore[operator]
    with pytest.raises(UsersFileError) as err:
        read_users(_user_file(tmp_path, "romeo.png"))
    assert err.value.path == 'users."romeo@sip.localhost".avatar'
    assert why in err.value.problem


def test_check_config_reads_the_user_file_and_its_avatars(tmp_path: Path) -> None:
    users = _user_file(tmp_path, "romeo.png")
    cfg = tmp_path / "g.toml"
    cfg.write_text(
        '[[xmpp.components]]\ndomain = "sip.localhost"\nsecret = "s"\n'
        f'[registrar]\nusers_file = "{users}"\n'
    )

    def check() -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "gateway", "check-config", str(cfg)]
        return subprocess.run(
            args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )

    out = check()
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "registrar.users_file" in line and 'users."romeo@sip.localhost".avatar' in line
    (tmp_path / "romeo.png").write_bytes(JPEG)
    out = check()
    assert out.returncode == 0, out.stderr
    assert "users      1 in" in out.stdout and "(1 with an avatar)" in out.stdout


def _user_cmd(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    code = cli.main(["user", *args, "--password-stdin"])
    return code, capsys.readouterr().err


def test_user_add_avatar_is_checked_and_stored_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.toml"
    (tmp_path / "big.png").write_bytes(PNG + bytes(AVATAR_MAX_BYTES))
    monkeypatch.chdir(tmp_path)
    code, err = _user_cmd(monkeypatch, capsys, "add", "-f", str(path), "romeo@sip.localhost",
                          "--avatar", "big.png")  # fmt: skip
    assert code == 1 and "more than" in err and "nothing changed" in err
    assert not path.exists()
    (tmp_path / "romeo.webp").write_bytes(WEBP)
    code, err = _user_cmd(monkeypatch, capsys, "add", "-f", str(path), "romeo@sip.localhost",
                          "--avatar", "romeo.webp")  # fmt: skip
    assert code == 0, err
    (romeo,) = read_users(path).users
    assert romeo.avatar == str(tmp_path / "romeo.webp")
    code, err = _user_cmd(monkeypatch, capsys, "passwd", "-f", str(path), "romeo@sip.localhost")
    assert code == 0, err
    users = read_users(path)
    assert users.users[0].avatar == str(tmp_path / "romeo.webp")  # kept by passwd
    assert users.avatar("romeo@sip.localhost") == Avatar("image/webp", WEBP)

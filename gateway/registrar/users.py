"""The registrar's user file: TOML, one table per address-of-record, HA1 hashes only.

```toml
[users."romeo@sip.localhost"]
ha1_md5 = "9f3c..."          # MD5("romeo:sip.localhost:password"), 32 hex digits
ha1_sha256 = "41b0..."       # SHA-256 of the same string, 64 hex digits (RFC 8760)
# username = "romeo"         # Digest username; default: the user part of the AOR
# realm = "sip.localhost"    # Digest realm; default: the domain of the AOR
# display_name = "Romeo Montague"  # FN of the user's vCard on XMPP (docs/xmpp.md)
# xmpp = "romeo@example.org"  # the same person's XMPP account (RFC 7081, docs/xmpp.md)
# avatar = "avatars/romeo.png"  # XEP-0153 avatar; relative to this file's directory
```

Plain-text passwords are refused (a `password` key is an error). At least one hash is
required; a user with only `ha1_md5` can only answer an MD5 challenge. Manage entries
with `cpim-gateway user add|passwd|remove|list` (gateway/registrar/usercmd.py, editing
through gateway/registrar/userfile.py) or `hash_password()` + `format_user()`. Format and
procedure: docs/registrar.md.

Parsing is pure (`load_users(mapping)`); `read_users(path)` reads the file and then the
avatar images it names (`load_avatars`: PNG/JPEG/GIF/WebP by magic bytes, at most 64 KiB,
mappings/avatar.py). Every error names the TOML key (`UsersFileError.path`), an avatar's
too: an unreadable or refused image is an error of the whole file, like any other key.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import stat
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.sip.auth import ha1
from mappings.avatar import AVATAR_MAX_BYTES, Avatar, AvatarError, parse_avatar
from mappings.jid import JidError, parse_jid

__all__ = [
    "ALGORITHMS",
    "User",
    "UserDirectory",
    "UsersFileError",
    "format_user",
    "hash_password",
    "load_avatars",
    "load_users",
    "normalise_aor",
    "parse_aor",
    "read_avatar",
    "read_users",
]

# The Digest algorithms a user file can hold a base HA1 for, strongest first (RFC 8760).
ALGORITHMS = ("SHA-256", "MD5")

# Digest algorithm (any case) -> the User attribute holding its base HA1 (RFC 7616 §3.4.2).
_HA1_KEYS = {"md5": "ha1_md5", "md5-sess": "ha1_md5", "sha-256": "ha1_sha256"}
_HA1_KEYS["sha-256-sess"] = "ha1_sha256"
_HEX = {"ha1_md5": re.compile(r"[0-9a-f]{32}"), "ha1_sha256": re.compile(r"[0-9a-f]{64}")}
_AOR_RE = re.compile(r"([^@\s:;]+)@([A-Za-z0-9.\-]+)")
_ENTRY_KEYS = frozenset(
    {"ha1_md5", "ha1_sha256", "username", "realm", "display_name", "xmpp", "avatar"}
)
_DISPLAY_NAME_MAX = 256  # characters; a name, not a document
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class UsersFileError(Exception):
    """A user-file problem, located by its TOML key path."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class User:
    """One registrable user: its AOR (`user@domain`) and Digest credentials."""

    aor: str  # "romeo@sip.localhost", domain lower-cased
    username: str
    realm: str
    ha1_md5: str | None = field(default=None, repr=False)
    ha1_sha256: str | None = field(default=None, repr=False)
    display_name: str | None = None  # shown to XMPP users (vCard FN), optional
    xmpp: str | None = None  # bare JID of the same person's XMPP account (RFC 7081), optional
    avatar: str | None = None  # image file as written (relative: to the user file), optional

    @property
    def sip_aor(self) -> str:
        """The canonical AOR as the registrar indexes bindings (`sip:user@domain`)."""
        return f"sip:{self.aor}"

    def ha1_for(self, algorithm: str) -> str | None:
        key = _HA1_KEYS.get(algorithm.lower())
        return None if key is None else getattr(self, key)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms of ALGORITHMS this user has an HA1 for."""
        return tuple(a for a in ALGORITHMS if self.ha1_for(a))


class UserDirectory:
    """Users by AOR and by (Digest username, realm)."""

    def __init__(
        self, users: tuple[User, ...] = (), avatars: Mapping[str, Avatar] | None = None
    ) -> None:
        self.users = users
        self._avatars = dict(avatars or {})  # AOR (user@domain) -> its image, as read
        self._by_aor = {u.aor: u for u in users}
        self._by_login: dict[tuple[str, str], User] = {}
        for u in users:
            self._by_login.setdefault((u.username, u.realm), u)

    def __len__(self) -> int:
        return len(self.users)

    def by_aor(self, aor: str) -> User | None:
        """`aor` as `user@domain` or `sip:user@domain`."""
        return self._by_aor.get(normalise_aor(aor.removeprefix("sip:")))

    def by_login(self, username: str, realm: str) -> User | None:
        """The user a Digest (username, realm) names; a username `user@domain` also matches
        the AOR directly (some clients send it)."""
        user = self._by_login.get((username, realm))
        if user is None and "@" in username:
            user = self.by_aor(username)
            if user is not None and user.realm != realm:
                user = None
        return user

    def display_name(self, aor: str) -> str | None:
        """The display name the user file gives `aor` (`user@domain` or `sip:user@domain`)."""
        user = self.by_aor(aor)
        return None if user is None else user.display_name

    def linked_xmpp(self, aor: str) -> str | None:
        """The bare JID the user file links to `aor` (RFC 7081 linked identities)."""
        user = self.by_aor(aor)
        return None if user is None else user.xmpp

    def avatar(self, aor: str) -> Avatar | None:
        """The avatar image of `aor` (`user@domain` or `sip:user@domain`), if it has one."""
        return self._avatars.get(normalise_aor(aor.removeprefix("sip:")))

    def ha1_lookup(self, username: str, realm: str, algorithm: str) -> str | None:
        """For `gateway.sip.auth.verify_authorization`: the base HA1 or None."""
        user = self.by_login(username, realm)
        return None if user is None else user.ha1_for(algorithm)

    def algorithms(self, realm: str) -> tuple[str, ...]:
        """Algorithms to challenge with in `realm`: those some user there can answer,
        SHA-256 first (RFC 8760 §2.4). MD5 alone when the realm has no users, so an
        unknown realm is challenged like a known one."""
        users = [u for u in self.users if u.realm == realm]
        algs = []
        if any(u.ha1_sha256 for u in users):
            algs.append("SHA-256")
        if not users or any(u.ha1_md5 for u in users):
            algs.append("MD5")
        return tuple(algs)


def normalise_aor(text: str) -> str:
    """`user@domain` as the directory keys it: the domain lower-cased, no trailing dot."""
    user, _, domain = text.rpartition("@")
    return f"{user}@{domain.lower().rstrip('.')}"


def parse_aor(text: str) -> str:
    """`user@domain` or `sip:user@domain`, normalised; ValueError if the user file's key
    grammar (a user part without `@`, `:`, `;` or blanks, and a domain name) refuses it."""
    if _AOR_RE.fullmatch(text.removeprefix("sip:")) is None:
        raise ValueError(f"not user@domain: {text!r}")
    return normalise_aor(text.removeprefix("sip:"))


def _entry(aor_key: str, data: object, path: str) -> User:
    if not isinstance(data, Mapping):
        raise UsersFileError(path, "must be a table")
    if "password" in data:
        raise UsersFileError(
            f"{path}.password",
            "plain-text passwords are not accepted; store ha1_md5/ha1_sha256 "
            "(cpim-gateway user add USER@DOMAIN writes them)",
        )
    unknown = sorted(set(data) - _ENTRY_KEYS)
    if unknown:
        raise UsersFileError(f"{path}.{unknown[0]}", "unknown key")
    m = _AOR_RE.fullmatch(aor_key)
    if m is None:
        raise UsersFileError(path, f"the key must be user@domain, not {aor_key!r}")
    values: dict[str, str] = {}
    for key in _ENTRY_KEYS & set(data):
        value = data[key]
        if not isinstance(value, str) or not value:
            raise UsersFileError(f"{path}.{key}", "must be a non-empty string")
        values[key] = value
    for key, pattern in _HEX.items():
        if key in values:
            values[key] = values[key].lower()
            if pattern.fullmatch(values[key]) is None:
                digits = 32 if key == "ha1_md5" else 64
                raise UsersFileError(f"{path}.{key}", f"must be {digits} hexadecimal digits")
    name = values.get("display_name")
    if name is not None and (len(name) > _DISPLAY_NAME_MAX or _CONTROL.search(name)):
        raise UsersFileError(
            f"{path}.display_name",
            f"must be at most {_DISPLAY_NAME_MAX} characters without control characters",
        )
    xmpp = values.get("xmpp")
    if xmpp is not None:
        xmpp = _bare_jid(xmpp, f"{path}.xmpp")
    if "ha1_md5" not in values and "ha1_sha256" not in values:
        raise UsersFileError(path, "needs ha1_md5 or ha1_sha256 (or both)")
    aor = normalise_aor(aor_key)
    return User(
        aor=aor,
        username=values.get("username", m.group(1)),
        realm=values.get("realm", aor.rpartition("@")[2]),
        ha1_md5=values.get("ha1_md5"),
        ha1_sha256=values.get("ha1_sha256"),
        display_name=name,
        xmpp=xmpp,
        avatar=values.get("avatar"),
    )


def _bare_jid(text: str, path: str) -> str:
    """A linked XMPP account: a bare JID with a localpart (RFC 7622), as written."""
    try:
        jid = parse_jid(text)
    except JidError as exc:
        raise UsersFileError(path, f"must be a bare JID user@domain: {exc}") from None
    if jid.local is None or jid.resource is not None:
        raise UsersFileError(path, f"must be a bare JID user@domain, not {text!r}")
    return str(jid)


def load_users(data: Mapping[str, Any]) -> UserDirectory:
    """Build the directory from parsed TOML; UsersFileError names the key."""
    unknown = sorted(set(data) - {"users"})
    if unknown:
        raise UsersFileError(unknown[0], 'unknown key (entries go under [users."user@domain"])')
    table = data.get("users", {})
    if not isinstance(table, Mapping):
        raise UsersFileError("users", "must be a table")
    users: list[User] = []
    seen: dict[str, str] = {}
    logins: dict[tuple[str, str], str] = {}
    for key, entry in table.items():
        path = f'users."{key}"'
        user = _entry(key, entry, path)
        if user.aor in seen:
            raise UsersFileError(path, f"same AOR as {seen[user.aor]}")
        login = (user.username, user.realm)
        if login in logins:
            raise UsersFileError(
                path, f"username {user.username!r} in realm {user.realm!r} is also {logins[login]}"
            )
        seen[user.aor] = path
        logins[login] = path
        users.append(user)
    return UserDirectory(tuple(users))


def read_users(path: Path) -> UserDirectory:
    """Read and load a user file; every failure is a UsersFileError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsersFileError("", f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsersFileError("", f"{path} is not UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsersFileError("", f"{path}: invalid TOML: {exc}") from None
    return load_avatars(load_users(data), path.parent)


def avatar_path(written: str, base: Path) -> Path:
    """Where the image an `avatar` key names is: `written` itself if absolute, else
    relative to `base` (the user file's directory)."""
    return base / os.path.expanduser(written)


def read_avatar(path: Path, key: str = "avatar") -> Avatar:
    """The image at `path` as an avatar; UsersFileError under `key` when it cannot be
    read, is not a regular file, is too large or is no PNG/JPEG/GIF/WebP."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UsersFileError(key, f"{str(path)!r} is not a regular file")
        if st.st_size > AVATAR_MAX_BYTES:  # refused before reading it
            raise UsersFileError(
                key, f"{str(path)!r}: {st.st_size} bytes, more than the {AVATAR_MAX_BYTES} allowed"
            )
        with path.open("rb") as f:
            data = f.read(AVATAR_MAX_BYTES + 1)
    except OSError as exc:
        raise UsersFileError(key, f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return parse_avatar(data)
    except AvatarError as exc:
        raise UsersFileError(key, f"{str(path)!r}: {exc}") from None


def load_avatars(directory: UserDirectory, base: Path) -> UserDirectory:
    """`directory` with the avatar image of every user that names one, read from disk
    (relative paths from `base`); UsersFileError naming the user's `avatar` key."""
    avatars = {
        u.aor: read_avatar(avatar_path(u.avatar, base), f'users."{u.aor}".avatar')
        for u in directory.users
        if u.avatar
    }
    return UserDirectory(directory.users, avatars) if avatars else directory


def hash_password(
    aor: str,
    realm: str | None,
    password: str,
    *,
    username: str | None = None,
    algorithms: Iterable[str] = ALGORITHMS,
) -> User:
    """A user entry for `aor` (`user@domain`) with the HA1 of `password` for each of
    `algorithms` (default both: RFC 7616 §3.4.2, MD5 and SHA-256)."""
    norm = parse_aor(aor)
    wanted = {a.upper() for a in algorithms}
    if not wanted or not wanted <= set(ALGORITHMS):
        raise ValueError(f"algorithms must be among {', '.join(ALGORITHMS)}")
    username = username or norm.rpartition("@")[0]
    realm = realm or norm.rpartition("@")[2]
    return User(
        aor=norm,
        username=username,
        realm=realm,
        ha1_md5=ha1(username, realm, password, "MD5") if "MD5" in wanted else None,
        ha1_sha256=ha1(username, realm, password, "SHA-256") if "SHA-256" in wanted else None,
    )


def format_user(user: User) -> str:
    """The TOML table for `user`, ready to append to a user file."""
    user_part, _, domain = user.aor.rpartition("@")
    q = json.dumps  # a JSON string is a TOML basic string
    lines = [f"[users.{q(user.aor, ensure_ascii=False)}]"]
    if user.ha1_md5:
        lines.append(f"ha1_md5 = {q(user.ha1_md5)}")
    if user.ha1_sha256:
        lines.append(f"ha1_sha256 = {q(user.ha1_sha256)}")
    if user.username != user_part:
        lines.append(f"username = {q(user.username, ensure_ascii=False)}")
    if user.realm != domain:
        lines.append(f"realm = {q(user.realm, ensure_ascii=False)}")
    if user.display_name:
        lines.append(f"display_name = {q(user.display_name, ensure_ascii=False)}")
    if user.xmpp:
        lines.append(f"xmpp = {q(user.xmpp, ensure_ascii=False)}")
    if user.avatar:
        lines.append(f"avatar = {q(user.avatar, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m gateway.registrar.users USER@DOMAIN [REALM]`: print a user-file entry.
    Deprecated alias kept for scripts: `cpim-gateway user add` edits the file itself."""
    print(
        "note: python -m gateway.registrar.users is deprecated; use "
        "`cpim-gateway user add USER@DOMAIN --file FILE` (docs/registrar.md)",
        file=sys.stderr,
    )
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: python -m gateway.registrar.users USER@DOMAIN [REALM]", file=sys.stderr)
        return 2
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 1
    try:
        user = hash_password(args[0], args[1] if len(args) > 1 else None, password)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    sys.stdout.write(format_user(user))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

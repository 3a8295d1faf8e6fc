"""Editing the registrar's user file: pure text edits, then one atomic write.

`add_user`, `replace_user` and `remove_user` take the file's text and return the new
text. They touch only the table of the user concerned (`[users."user@domain"]` up to the
next table header, comments right before that header staying with it), so comments and
the other entries stay as the operator wrote them. Every result is parsed again and must
hold exactly the expected users; a file laid out in a way the line edit does not follow
(inline tables, dotted keys) is rewritten whole instead, keeping its leading comments.

`write_atomically(path, text)` replaces the file the way a running gateway can never see
half of: a temporary file in the same directory, fsync, `os.replace`, the directory
fsynced; the old file's mode and owner are kept (a new file gets 0600). The gateway reads
the file again on SIGHUP (gateway/app.py `_reload`).
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
import tomllib
from pathlib import Path

from gateway.registrar.users import (
    User,
    UserDirectory,
    UsersFileError,
    format_user,
    load_users,
    normalise_aor,
)

__all__ = [
    "NEW_FILE_MODE",
    "add_user",
    "parse_text",
    "remove_user",
    "replace_user",
    "write_atomically",
]

NEW_FILE_MODE = 0o600

_HEADER = re.compile(r"""\s*\[\s*users\s*\.\s*("(?:[^"\\]|\\.)*"|'[^']*')\s*\]\s*(?:#.*)?""")
_ANY_HEADER = re.compile(r"\s*\[")
_TRAILER = re.compile(r"\s*(?:#.*)?")  # blank or comment: belongs to what follows


def parse_text(text: str, name: str = "user file") -> UserDirectory:
    """The directory a user file's text holds; UsersFileError on any problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsersFileError("", f"{name}: invalid TOML: {exc}") from None
    return load_users(data)


def add_user(text: str, user: User) -> str:
    """`text` with `user`'s table appended; UsersFileError if the AOR is already there."""
    before = parse_text(text)
    if before.by_aor(user.aor) is not None:
        raise UsersFileError(f'users."{user.aor}"', "already exists")
    head = text if not text or text.endswith("\n") else text + "\n"
    sep = "\n" if head.strip() else ""
    return _checked(head + sep + format_user(user), text, (*before.users, user))


def replace_user(text: str, user: User) -> str:
    """`text` with the table of `user.aor` replaced by `user`'s (new hashes)."""
    before = parse_text(text)
    if before.by_aor(user.aor) is None:
        raise UsersFileError(f'users."{user.aor}"', "no such user")
    expected = tuple(user if u.aor == user.aor else u for u in before.users)
    lines = text.splitlines(keepends=True)
    span = _table_span(lines, user.aor)
    if span is None:
        return _rewritten(text, expected)
    start, end = span
    return _checked("".join([*lines[:start], format_user(user), *lines[end:]]), text, expected)


def remove_user(text: str, aor: str) -> str:
    """`text` without the table of `aor`; UsersFileError if there is none."""
    before = parse_text(text)
    gone = before.by_aor(aor)
    if gone is None:
        raise UsersFileError(f'users."{normalise_aor(aor)}"', "no such user")
    expected = tuple(u for u in before.users if u.aor != gone.aor)
    lines = text.splitlines(keepends=True)
    span = _table_span(lines, gone.aor)
    if span is None:
        return _rewritten(text, expected)
    start, end = span
    rest = lines[end:]
    if (start == 0 or not lines[start - 1].strip()) and rest and not rest[0].strip():
        rest = rest[1:]  # one blank line stays between the neighbours, not two
    return _checked("".join([*lines[:start], *rest]), text, expected)


def _table_span(lines: list[str], aor: str) -> tuple[int, int] | None:
    """[start, end) of the lines of `aor`'s table: its header up to its last key line."""
    start = None
    for i, line in enumerate(lines):
        m = _HEADER.fullmatch(line.rstrip("\r\n"))
        if m is None:
            continue
        try:
            key = tomllib.loads(f"k = {m.group(1)}")["k"]
        except tomllib.TOMLDecodeError:
            return None
        if isinstance(key, str) and normalise_aor(key) == aor:
            start = i
            break
    if start is None:
        return None
    end = start + 1
    while end < len(lines) and _ANY_HEADER.match(lines[end]) is None:
        end += 1
    while end > start + 1 and _TRAILER.fullmatch(lines[end - 1].rstrip("\r\n")):
        end -= 1
    return start, end


def _checked(new: str, old: str, expected: tuple[User, ...]) -> str:
    """`new` if it parses to exactly `expected`, else the whole file rewritten."""
    try:
        got = parse_text(new)
    except UsersFileError:
        return _rewritten(old, expected)
    if {u.aor: u for u in got.users} != {u.aor: u for u in expected}:
        return _rewritten(old, expected)
    return new


def _rewritten(old: str, users: tuple[User, ...]) -> str:
    """Every entry written afresh, after the comment block that opens `old`."""
    header: list[str] = []
    for line in old.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        header.append(line)
    while header and not header[-1].strip():
        header.pop()
    parts = ["\n".join(header) + "\n"] if header else []
    parts += [format_user(u) for u in users]
    return "\n".join(parts)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` (a symlink's target) with `text` atomically; OSError on failure,
    with nothing left behind. Keeps the old file's mode and, where allowed, its owner."""
    target = Path(os.path.realpath(path))
    try:
        st: os.stat_result | None = target.stat()
    except FileNotFoundError:
        st = None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            os.fchmod(f.fileno(), NEW_FILE_MODE if st is None else stat.S_IMODE(st.st_mode))
            if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                with contextlib.suppress(PermissionError):
                    os.fchown(f.fileno(), st.st_uid, st.st_gid)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

"""`cpim-gateway user add|passwd|remove|list`: the registrar's user file from the shell.

The file is found through the gateway's configuration (`-c gateway.toml`:
`registrar.users_file`, and the AOR's domain must be in `sip.hosted_domains`) or named
directly (`--file users.toml`). Only HA1 hashes are stored (RFC 7616 §3.4.2: H(username
":" realm ":" password), MD5 and/or SHA-256, RFC 8760). The password is asked twice on the
terminal, or read as one line from stdin with `--password-stdin`; it is never an argument,
so it stays out of `ps` and shell history.

Edits go through gateway/registrar/userfile.py (one table changed, atomic replace, mode
kept). A running gateway reads the file again on SIGHUP (`systemctl reload cpim-gateway`).

Exit status: 0 done; 1 refused (unknown user for passwd/remove, an AOR already present
for add, passwords that differ or are empty, the file cannot be written); 2 bad input
(usage, configuration, a malformed user file, a name the file's grammar refuses, a
domain not hosted, no terminal and no `--password-stdin`). Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO, TypeVar

from gateway.config import ConfigError, read_config
from gateway.registrar.userfile import (
    add_user,
    parse_text,
    remove_user,
    replace_user,
    write_atomically,
)
from gateway.registrar.users import (
    ALGORITHMS,
    User,
    UserDirectory,
    UsersFileError,
    hash_password,
    parse_aor,
    read_avatar,
)

__all__ = ["EXIT_INPUT", "EXIT_REFUSED", "UserCommandError", "configure", "run"]

EXIT_REFUSED = 1
EXIT_INPUT = 2
_T = TypeVar("_T")
RELOAD_HINT = "a running gateway uses it after SIGHUP (systemctl reload cpim-gateway)"


class UserCommandError(Exception):
    """A one-line error and the exit status it means."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """The user file to edit, and the domains it may hold (None: any)."""

    path: Path
    hosted: frozenset[str] | None


def configure(user: argparse.ArgumentParser) -> None:
    """The four subcommands of the CLI's `user` command."""
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--config",
        "-c",
        type=Path,
        help="gateway configuration: its registrar.users_file and sip.hosted_domains",
    )
    group.add_argument("--file", "-f", type=Path, help="the user file itself")
    secret = argparse.ArgumentParser(add_help=False)
    secret.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line from stdin (default: ask twice on the terminal)",
    )
    secret.add_argument(
        "--hashes",
        type=_hashes,
        help="comma-separated, among md5,sha-256 (add: like the realm's other users, else "
        "both; passwd: the ones the user has)",
    )
    cmds = user.add_subparsers(dest="user_command", required=True)
    add = cmds.add_parser("add", parents=[where, secret], help="add a user")
    add.add_argument("aor", metavar="USER@DOMAIN")
    add.add_argument("--realm", help="Digest realm (default: the domain)")
    add.add_argument("--username", help="Digest username (default: the user part)")
    add.add_argument(
        "--avatar",
        type=Path,
        metavar="FILE",
        help="XEP-0153 avatar: a PNG, JPEG, GIF or WebP of at most 64 KiB (stored as an "
        "absolute path)",
    )
    pw = cmds.add_parser("passwd", parents=[where, secret], help="set a user's password")
    pw.add_argument("aor", metavar="USER@DOMAIN")
    rm = cmds.add_parser("remove", parents=[where], help="remove a user")
    rm.add_argument("aor", metavar="USER@DOMAIN")
    cmds.add_parser("list", parents=[where], help="list the users (no hashes)")


def _hashes(text: str) -> tuple[str, ...]:
    names = {n.strip().upper() for n in text.split(",") if n.strip()}
    if not names or not names <= set(ALGORITHMS):
        raise argparse.ArgumentTypeError(f"{text!r}: give md5, sha-256 or both")
    return tuple(a for a in ALGORITHMS if a in names)


def run(
    args: argparse.Namespace, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run one `user` subcommand; the exit status (errors printed as one line)."""
    out = stdout or sys.stdout
    try:
        target = _target(args)
        if args.user_command == "list":
            _list(_load(target.path, missing_ok=False)[1], out)
            return 0
        aor = _aor(args.aor, target)
        text, users = _load(target.path, missing_ok=args.user_command == "add")
        if args.user_command in ("remove", "passwd") and users.by_aor(aor) is None:
            raise UserCommandError(EXIT_REFUSED, f"{target.path}: no user {aor}")
        if args.user_command == "remove":
            new = _edit(remove_user, text, aor)
            done = f"removed {aor} from {target.path}"
        elif args.user_command == "add":
            user = _new_user(args, aor, users, stdin or sys.stdin)
            new = _edit(add_user, text, user)
            done = f"added {aor} ({', '.join(user.algorithms)}) to {target.path}"
        else:
            old = users.by_aor(aor)
            assert old is not None
            password = _password(args.password_stdin, stdin or sys.stdin)
            algorithms = args.hashes or old.algorithms
            user = hash_password(
                aor, old.realm, password, username=old.username, algorithms=algorithms
            )
            user = replace(user, display_name=old.display_name, xmpp=old.xmpp, avatar=old.avatar)
            new = _edit(replace_user, text, user)
            done = f"new password for {aor} ({', '.join(user.algorithms)}) in {target.path}"
        try:
            write_atomically(target.path, new)
        except OSError as exc:
            raise UserCommandError(
                EXIT_REFUSED, f"cannot write {target.path}: {exc.strerror or exc}"
            ) from None
    except UserCommandError as exc:
        print(f"cpim-gateway: {exc}", file=sys.stderr)
        return exc.status
    print(f"{done}; {RELOAD_HINT}", file=out)
    return 0


def _target(args: argparse.Namespace) -> Target:
    if args.file is not None:
        return Target(args.file, None)
    try:
        cfg = read_config(args.config)
    except ConfigError as exc:
        raise UserCommandError(EXIT_INPUT, f"{args.config}: {exc}") from None
    if cfg.registrar.users_file is None:
        raise UserCommandError(
            EXIT_INPUT, f"{args.config}: registrar.users_file is not set (or use --file)"
        )
    return Target(cfg.registrar.users_file, frozenset(cfg.sip.hosted_domains))


def _aor(text: str, target: Target) -> str:
    try:
        aor = parse_aor(text)
    except ValueError:
        raise UserCommandError(
            EXIT_INPUT, f"{text!r} is not user@domain (no '@', ':', ';' or blanks in the user)"
        ) from None
    domain = aor.rpartition("@")[2]
    if target.hosted is not None and domain not in target.hosted:
        hosted = ", ".join(sorted(target.hosted)) or "none"
        raise UserCommandError(
            EXIT_INPUT,
            f"{domain} is not in sip.hosted_domains ({hosted}): {aor} could not register",
        )
    return aor


def _load(path: Path, *, missing_ok: bool) -> tuple[str, UserDirectory]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return "", UserDirectory()
        raise UserCommandError(EXIT_INPUT, f"cannot read {path}: no such file") from None
    except UnicodeDecodeError:
        raise UserCommandError(EXIT_INPUT, f"{path} is not UTF-8") from None
    except OSError as exc:
        raise UserCommandError(EXIT_INPUT, f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return text, parse_text(text, str(path))
    except UsersFileError as exc:
        raise UserCommandError(EXIT_INPUT, _located(path, exc)) from None


def _located(path: Path, exc: UsersFileError) -> str:
    return f"{path}: {exc}" if exc.path else str(exc)


def _edit(edit: Callable[[str, _T], str], text: str, arg: _T) -> str:
    try:
        return edit(text, arg)
    except UsersFileError as exc:
        raise UserCommandError(EXIT_REFUSED, str(exc)) from None


def _list(users: UserDirectory, out: TextIO) -> None:
    rows = [(u.aor, u.username, u.realm, ",".join(u.algorithms)) for u in users.users]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    for aor, username, realm, algs in rows:
        print(
            f"{aor:<{widths[0]}}  username={username:<{widths[1]}}  "
            f"realm={realm:<{widths[2]}}  hashes={algs}".rstrip(),
            file=out,
        )


def _new_user(args: argparse.Namespace, aor: str, users: UserDirectory, stdin: TextIO) -> User:
    if users.by_aor(aor) is not None:
        raise UserCommandError(EXIT_REFUSED, f"{aor} already exists (passwd changes a password)")
    realm = args.realm or aor.rpartition("@")[2]
    algorithms = args.hashes or _realm_hashes(users, realm)
    avatar = None
    if args.avatar is not None:  # checked now, as the gateway will read it
        path = args.avatar.expanduser().absolute()
        try:
            read_avatar(path, "--avatar")
        except UsersFileError as exc:
            raise UserCommandError(EXIT_REFUSED, f"{exc}; nothing changed") from None
        avatar = str(path)
    password = _password(args.password_stdin, stdin)
    user = hash_password(
        aor, realm, password, username=args.username or None, algorithms=algorithms
    )
    return replace(user, avatar=avatar)


def _realm_hashes(users: UserDirectory, realm: str) -> tuple[str, ...]:
    """The hashes the realm's users all have alike, so the challenge offers the same
    algorithms for every user (docs/security.md); both when the realm has none or mixes."""
    seen = {u.algorithms for u in users.users if u.realm == realm}
    return seen.pop() if len(seen) == 1 else ALGORITHMS


def _password(from_stdin: bool, stdin: TextIO) -> str:
    if from_stdin:
        password = stdin.readline().rstrip("\r\n")
    elif not stdin.isatty():
        raise UserCommandError(
            EXIT_INPUT,
            "no terminal to ask for the password on: give it on stdin with --password-stdin",
        )
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UserCommandError(EXIT_REFUSED, "the passwords differ; nothing changed")
    if not password:
        raise UserCommandError(EXIT_REFUSED, "empty password; nothing changed")
    return password

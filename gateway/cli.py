"""The `cpim-gateway` command line: run, check-config, user (gateway/registrar/usercmd.py),
db (the store's schema: `db status`, `db upgrade`; docs/operations.md "Database"),
lists (users' XCAP documents: gateway/xcap/command.py, docs/xcap.md).

Configuration errors are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.config import Config, ConfigError, read_config
from gateway.eventloop import LoopChoiceError, loop_factory
from gateway.logs import LOG_LEVEL_NAMES, setup_logging
from gateway.registrar import usercmd
from gateway.registrar.users import UsersFileError, read_users

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpim-gateway", description="CPIM gateway between SIP/SIMPLE and XMPP."
    )
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("--config", "-c", required=True, type=Path, help="TOML configuration file")
    run.add_argument("--log-level", choices=LOG_LEVEL_NAMES, help="overrides gateway.log_level")
    run.add_argument("--log-format", choices=("text", "json"), help="overrides gateway.log_format")
    chk = sub.add_parser("check-config", help="validate a configuration file and summarise it")
    chk.add_argument("config", type=Path)
    usercmd.configure(
        sub.add_parser("user", help="manage the registrar's user file (HA1 hashes only)")
    )
    db = sub.add_parser("db", help="the store's schema: status, upgrade")
    db.add_argument("action", choices=("status", "upgrade"))
    db.add_argument("--config", "-c", required=True, type=Path, help="TOML configuration file")
    lists = sub.add_parser("lists", help="a user's resource-lists / pres-rules document")
    lists.add_argument("action", choices=("get", "put", "delete"))
    lists.add_argument("aor", help="the owner, sip:user@domain or user@domain")
    lists.add_argument("auid", help="resource-lists or pres-rules")
    lists.add_argument("file", nargs="?", type=Path, help="put: the document (default: stdin)")
    lists.add_argument("--config", "-c", required=True, type=Path, help="TOML configuration")
    return p


EXIT_STORE = 1


def db_command(cfg: Config, action: str) -> int:
    """`db status`: the schema, read only. `db upgrade`: apply the pending migrations
    (what the gateway does at start), then the status. Exit 1 on a store error."""
    from gateway.store import configured
    from gateway.store.api import StoreError

    try:
        if action == "upgrade":
            configured.open_configured(cfg.store, cfg.gateway.state_dir).close()
        found = configured.status(cfg.store, cfg.gateway.state_dir)
    except StoreError as exc:
        print(f"cpim-gateway: store: {exc}", file=sys.stderr)
        return EXIT_STORE
    print("\n".join(found.lines()))
    return 0


def summarise(cfg: Config) -> list[str]:
    lines = [f"configuration {cfg.source or ''} is valid".replace("  ", " ")]
    for c in cfg.xmpp.components:
        lines.append(
            f"component  {c.domain} ({c.addressing.value})"
            f" via {cfg.xmpp.server}:{cfg.xmpp.port_of(c)}"
        )
    for lst in cfg.sip.listeners:
        lines.append(f"listener   sip {lst.transport.value} {lst.address}:{lst.port}")
    for d in cfg.sip.hosted_domains:
        lines.append(f"hosted     {d} (registrar)")
    for d in cfg.sip.served_xmpp_domains:
        lines.append(f"served     {d} (XMPP domain reachable from SIP)")
    for r in cfg.sip.routes:
        lines.append(f"route      {r.domain} -> {r.target}")
    if cfg.sip.outbound_proxy:
        lines.append(f"proxy      {cfg.sip.outbound_proxy}")
    dns = ", ".join(f"{h}:{p}" for h, p in cfg.dns.servers) or "none (static routes only)"
    lines.append(f"dns        {dns}")
    if cfg.admin.enabled:
        lines.append(f"admin      http://{cfg.admin.address}:{cfg.admin.port}/")
    if cfg.xcap.enabled:
        scheme = "https" if cfg.xcap.tls else "http"
        lines.append(f"xcap       {scheme}://{cfg.xcap.host}:{cfg.xcap.port}{cfg.xcap.root}")
    lines.append(f"state      {cfg.gateway.state_dir}")
    if cfg.store.backend != "sqlite":
        from gateway.store.migrations import SCHEMA_VERSION  # no driver import

        lines.append(f"store      {cfg.store.backend} (schema version {SCHEMA_VERSION})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "user":
        return usercmd.run(args)
    path: Path = args.config
    try:
        cfg = read_config(path)
    except ConfigError as exc:
        print(f"cpim-gateway: {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "db":
        return db_command(cfg, args.action)
    if args.command == "lists":
        from gateway.xcap import command  # loaded with its command only

        return command.run(cfg, args)
    if args.command == "check-config":
        lines = summarise(cfg)
        users_file = cfg.registrar.users_file
        if users_file is not None:  # what the registrar reads at start (avatars included)
            try:
                users = read_users(users_file)
            except UsersFileError as exc:
                print(f"cpim-gateway: registrar.users_file: {users_file}: {exc}", file=sys.stderr)
                return EXIT_CONFIG
            pictures = sum(1 for u in users.users if users.avatar(u.aor) is not None)
            lines.append(f"users      {len(users)} in {users_file} ({pictures} with an avatar)")
        print("\n".join(lines))
        return 0
    setup_logging(
        args.log_level or cfg.gateway.log_level, args.log_format or cfg.gateway.log_format
    )
    from gateway.app import run  # imported late: check-config stays light

    try:
        factory = loop_factory(cfg.runtime.event_loop)
    except LoopChoiceError as exc:
        print(f"cpim-gateway: {path}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(run(cfg))
    except KeyboardInterrupt:  # a second Ctrl-C while draining
        return 130

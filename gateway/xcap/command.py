"""`cpim-gateway lists get|put|delete <aor> <auid> [file]`: a user's XCAP document
(``index``) straight in the configured store, validated like an XCAP PUT (docs/xcap.md).

A running gateway reads pres-rules from the store at each decision, so a change made here
applies to the next subscription; its change callbacks (the RLS refreshing lists,
settling pending requests) run only for writes through XCAP or the admin API.
"""

from __future__ import annotations

import argparse
import sys

from gateway.config import Config
from gateway.store.api import StoreError
from gateway.xcap.errors import XcapError
from gateway.xcap.service import XcapDocuments, owner_aor

__all__ = ["run"]

EXIT_FAILED = 1


def run(cfg: Config, args: argparse.Namespace) -> int:
    from gateway.store import configured

    try:
        aor = owner_aor(args.aor)
        store = configured.open_configured(cfg.store, cfg.gateway.state_dir)
    except (XcapError, StoreError) as exc:
        print(f"cpim-gateway: lists: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        documents = XcapDocuments(store, max_bytes=cfg.xcap.max_document_size)
        if args.auid not in documents.usages:
            print(f"cpim-gateway: lists: no application usage {args.auid!r}", file=sys.stderr)
            return EXIT_FAILED
        if args.action == "get":
            found = documents.document(args.auid, aor)
            if found is None:
                print(f"cpim-gateway: lists: {aor} has no {args.auid} document", file=sys.stderr)
                return EXIT_FAILED
            sys.stdout.buffer.write(found.body)
            return 0
        if args.action == "put":
            body = args.file.read_bytes() if args.file else sys.stdin.buffer.read()
            reply = documents.put(aor, args.auid, body, actor="cli")
        else:
            reply = documents.delete(aor, args.auid, actor="cli")
    except (OSError, StoreError) as exc:
        print(f"cpim-gateway: lists: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    if reply.status >= 300:
        reason = reply.body.decode("utf-8", "replace").strip()
        print(f"cpim-gateway: lists: {reply.status} {reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.action} {args.auid} of {aor}: {reply.status} {reply.etag or ''}".rstrip())
    return 0

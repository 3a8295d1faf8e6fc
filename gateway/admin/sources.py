"""What the admin HTTP server reads and may act on, passed in by the composition root.

Shared by the JSON API (server.py) and the operator console (console.py); never a global.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.fates import FateRing
from gateway.logs import WireTrace
from gateway.xcap.service import XcapDocuments

# A listing: rows (dataclasses or mappings), computed on demand, sync or async.
Listing = Callable[[], Iterable[Any] | Awaitable[Iterable[Any]]]


@dataclass(frozen=True)
class PendingAuthorization:
    """An XMPP user's request to see a hosted SIP user's presence, waiting for that user's
    `/allow` or `/deny` (docs/presence.md); `decide` settles it the same way."""

    aor: str
    watcher: str
    sip_uri: str


@dataclass(frozen=True)
class AdminSources:
    """The registry, the listings, the wire-trace switch and the console's inputs:
    `fates` (the pager's ring), `pending` and `decide` (hosted-user authorizations,
    `Hosted.pending` / `Hosted.decide`), `drain` (the SIGTERM path: drain, then stop),
    `documents` (the users' XCAP documents, `/documents/...`)."""

    registry: CollectorRegistry | None = None
    listings: Mapping[str, Listing] = field(default_factory=dict)
    trace: WireTrace | None = None
    fates: FateRing | None = None
    pending: Callable[[], list[PendingAuthorization]] | None = None
    decide: Callable[[str, str, str], bool] | None = None
    drain: Callable[[], None] | None = None
    documents: XcapDocuments | None = None  # users' XCAP documents (docs/xcap.md)


def row(item: Any) -> Any:
    if dataclasses.is_dataclass(item) and not isinstance(item, type):
        return dataclasses.asdict(item)
    if isinstance(item, Mapping):
        return dict(item)
    return item


async def rows(provider: Listing) -> list[Any]:
    produced = provider()
    items = await produced if inspect.isawaitable(produced) else produced
    return [row(item) for item in items]


def json_default(value: object) -> object:
    if isinstance(value, bytes):  # e.g. a subscription's last PIDF document
        return value.decode("utf-8", "replace")
    return str(value)


def trace_wanted(wanted: object, state: Mapping[str, bool]) -> dict[str, bool] | None:
    """A wire-trace switch request (`{"sip": true, "xmpp": false}`), or None when malformed."""
    if (
        not isinstance(wanted, dict)
        or not wanted
        or any(k not in state or not isinstance(v, bool) for k, v in wanted.items())
    ):
        return None
    return dict(wanted)

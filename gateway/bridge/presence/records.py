"""The presence subscriptions as the store keeps them: built, told apart and written here.

Every kind is a `SubscriptionRecord` keyed by (Call-ID, local tag):

* our notifier dialogs (`notifier_record`): S2X (a SIP user watches an XMPP user, event
  `presence`) and winfo (a hosted user watches its watchers, event `presence.winfo`),
  both direction "s2x";
* our subscriber dialogs (`subscriber_record`): X2S, direction "x2s";
* hosted watchers (`hosted_record`): an XMPP user's authorization to a SIP user of our
  registrar, direction "x2s" with Call-ID `hosted:<watcher>`, no dialog, no expiry.

`write` is the one way the presence parts call the store: a failed write is logged
and the subscription lives on in memory (the store is what a restart knows, not what runs).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway.logs import event
from gateway.sip.dialog import Dialog, DialogId
from gateway.sip.headers import NameAddr, parse_event, parse_name_addr
from gateway.sip.notifier import Notifier, NState, PackageConfig
from gateway.sip.subscriber import Subscriber
from gateway.sip.subscription import StateDocument
from gateway.sip.uri import parse_uri
from gateway.store.api import StoreError, SubscriptionRecord
from mappings.jid import Jid
from mappings.pidf import MEDIA_TYPE as PIDF

__all__ = [
    "FOREVER",
    "HOSTED_CALL_ID_PREFIX",
    "WINFO_EVENT",
    "hosted_key",
    "hosted_record",
    "is_hosted_record",
    "is_presence_record",
    "is_winfo_record",
    "notifier_record",
    "subscriber_record",
    "write",
]

WINFO_EVENT = "presence.winfo"  # RFC 3857 §4.1
HOSTED_CALL_ID_PREFIX = "hosted:"
FOREVER = 253402300799.0  # 9999-12-31: an authorization has no expiry of its own


def write(log: logging.Logger, fn: Callable[..., Any], *args: Any) -> None:
    """`fn(*args)` on the store; a `StoreError` is logged on the caller's `log`, not raised."""
    try:
        fn(*args)
    except StoreError as exc:
        event(log, logging.ERROR, "presence store write failed", error=str(exc))


def notifier_record(
    notifier: Notifier, *, target: str | None = None, authorized: bool = False
) -> SubscriptionRecord:
    """One of our notifier dialogs (RFC 6665 §4.2): `target` is what the watcher watches
    (default: the dialog's local URI, the SUBSCRIBE's To); `authorized` the RFC 6121
    authorization the watcher holds (`from`)."""
    dialog = notifier.dialog
    doc = notifier.document
    return SubscriptionRecord(
        direction="s2x",
        watcher=dialog.remote_uri_text(),
        target=str(dialog.local.uri) if target is None else target,
        call_id=dialog.id.call_id,
        local_tag=dialog.id.local_tag,
        remote_tag=dialog.id.remote_tag,
        event=str(notifier.event),
        route_set=tuple(str(r) for r in dialog.route_set),
        remote_target=dialog.remote_target_text(),
        local_cseq=dialog.local_cseq or 0,
        remote_cseq=dialog.remote_cseq,
        state=notifier.state.value,
        expires_at=notifier.expires_at,
        last_document=None if doc is None else doc.body,
        content_type=notifier.content_type,
        xmpp_authorization="from" if authorized else "none",
    )


def restore_notifier(
    rec: SubscriptionRecord,
    *,
    local: NameAddr,
    content_type: str,
    package: PackageConfig,
    local_target: NameAddr,
    document: StateDocument | None = None,
) -> Notifier:
    """The notifier dialog a record of `notifier_record` stands for (the inverse, at
    restore); `local` is our URI in the dialog, `document` the last state sent."""
    if rec.remote_target is None:
        raise ValueError(f"record {rec.call_id} without a remote target")
    dialog = Dialog(
        id=DialogId(rec.call_id, rec.local_tag, rec.remote_tag or ""),
        local=local,
        remote=NameAddr(parse_uri(rec.watcher)),
        remote_target=parse_uri(rec.remote_target),
        route_set=tuple(parse_name_addr(r) for r in rec.route_set),
        local_cseq=rec.local_cseq or None,
        remote_cseq=rec.remote_cseq,
        local_target=local_target,
    )
    return Notifier(
        dialog=dialog,
        event=parse_event(rec.event),
        content_type=content_type,
        package=package,
        state=NState(rec.state),
        expires_at=rec.expires_at,
        document=document,
    )


def subscriber_record(
    sub: Subscriber, *, watcher: Jid, document: bytes | None
) -> SubscriptionRecord:
    """One of our subscriber dialogs (RFC 6665 §4.1), before or after it formed: `watcher`
    the XMPP user, `document` the last PIDF it was shown."""
    dialog = sub.dialog
    call_id, local_tag = sub.key
    return SubscriptionRecord(
        direction="x2s",
        watcher=str(watcher),
        target=str(sub.target),
        call_id=call_id,
        local_tag=local_tag,
        remote_tag=None if dialog is None else dialog.id.remote_tag,
        route_set=() if dialog is None else tuple(str(r) for r in dialog.route_set),
        remote_target=None if dialog is None else str(dialog.remote_target),
        local_cseq=(dialog.local_cseq or 0) if dialog is not None else sub.cseq,
        remote_cseq=None if dialog is None else dialog.remote_cseq,
        state=sub.state.value,
        expires_at=sub.expires_at or 0.0,
        last_document=document,
        content_type=PIDF if document is not None else None,
        xmpp_authorization="to" if sub.authorized else "none",
    )


def hosted_key(watcher: Jid, aor: str) -> tuple[str, str]:
    return f"{HOSTED_CALL_ID_PREFIX}{watcher}", aor


def hosted_record(watcher: Jid, aor: str, status: str) -> SubscriptionRecord:
    """An XMPP user's authorization (`pending` / `active`) to watch a hosted SIP user."""
    call_id, local_tag = hosted_key(watcher, aor)
    return SubscriptionRecord(
        direction="x2s",
        watcher=str(watcher),
        target=aor,
        call_id=call_id,
        local_tag=local_tag,
        state=status,
        expires_at=FOREVER,
        xmpp_authorization="to" if status == "active" else "none",
    )


def is_hosted_record(rec: SubscriptionRecord) -> bool:
    return rec.direction == "x2s" and rec.call_id.startswith(HOSTED_CALL_ID_PREFIX)


def is_presence_record(rec: SubscriptionRecord) -> bool:
    """Presence's own records (presence, presence.winfo); other event packages' records
    (the reg event, gateway/bridge/regevent/) share the table and are left to them."""
    return rec.event.split(";")[0].strip().lower() in ("presence", WINFO_EVENT)


def is_winfo_record(rec: SubscriptionRecord) -> bool:
    return rec.direction == "s2x" and rec.event.split(";")[0].strip().lower() == WINFO_EVENT

"""List subscriptions as the store keeps them (no table of their own).

A list dialog is one `SubscriptionRecord`: direction "s2x", the list URI as target, the
RFC 6665 dialog fields as every notifier record (`presence.records.notifier_record`),
`content_type` `LIST_RECORD_TYPE` (how `is_list_record` tells them apart from S2X and
winfo records), and in `last_document` the list itself as JSON (`ListData`): the list
URI, our From of the dialog, the owner, whether it came in the request, the next RLMI
version, the pacing, the Linphone dialect and the members. Pure: values in, values out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from gateway.bridge.presence.records import notifier_record
from gateway.sip.notifier import Notifier
from gateway.store.api import SubscriptionRecord
from mappings.resourcelists import DisplayName, Entry

__all__ = ["LIST_RECORD_TYPE", "ListData", "is_list_record", "list_record", "read_list_data"]

LIST_RECORD_TYPE: Final = "application/vnd.cpim-gateway.list-subscription+json"


@dataclass(frozen=True)
class ListData:
    list_uri: str
    local: str  # the SUBSCRIBE's To: our From in the dialog's NOTIFYs
    owner: str  # canonical AOR of the subscriber
    contained: bool  # a request-contained list (RFC 5367)
    version: int  # RLMI version of the next NOTIFY
    interval: float  # least seconds between NOTIFYs (rate.py)
    max_rate: str | None  # reflected in Subscription-State (RFC 6446 §5.2)
    linphone: bool  # liblinphone's dialect (policy.linphone_dialect)
    members: tuple[Entry, ...]


def is_list_record(rec: SubscriptionRecord) -> bool:
    return rec.direction == "s2x" and rec.content_type == LIST_RECORD_TYPE


def list_record(notifier: Notifier, data: ListData) -> SubscriptionRecord:
    base = notifier_record(notifier, target=data.list_uri, authorized=True)
    doc = {
        "list": data.list_uri,
        "local": data.local,
        "owner": data.owner,
        "contained": data.contained,
        "version": data.version,
        "interval": data.interval,
        "max_rate": data.max_rate,
        "linphone": data.linphone,
        "members": [
            [e.uri, None if e.display_name is None else e.display_name.text] for e in data.members
        ],
    }
    return SubscriptionRecord(
        direction="s2x",
        watcher=base.watcher,
        target=data.list_uri,
        call_id=base.call_id,
        local_tag=base.local_tag,
        remote_tag=base.remote_tag,
        event=base.event,
        route_set=base.route_set,
        remote_target=base.remote_target,
        local_cseq=base.local_cseq,
        remote_cseq=base.remote_cseq,
        state=base.state,
        expires_at=base.expires_at,
        last_document=json.dumps(doc, separators=(",", ":")).encode(),
        content_type=LIST_RECORD_TYPE,
        xmpp_authorization="none",
    )


def read_list_data(rec: SubscriptionRecord) -> ListData:
    """The list of a record; ValueError / KeyError / TypeError when it is unusable."""
    doc = json.loads((rec.last_document or b"").decode())
    if not isinstance(doc, dict):
        raise ValueError(f"list record {rec.call_id} holds no object")
    members = tuple(
        Entry(str(uri), None if name is None else DisplayName(str(name)))
        for uri, name in doc["members"]
    )
    return ListData(
        list_uri=str(doc["list"]),
        local=str(doc.get("local") or f"<{doc['list']}>"),
        owner=str(doc["owner"]),
        contained=bool(doc["contained"]),
        version=int(doc["version"]),
        interval=float(doc["interval"]),
        max_rate=None if doc.get("max_rate") is None else str(doc["max_rate"]),
        linphone=bool(doc.get("linphone", False)),
        members=members,
    )

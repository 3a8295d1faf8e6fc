"""Which SUBSCRIBEs are list subscriptions, and what is refused (RFC 4662 §4, RFC 5367).

Pure: reads a `SipRequest`, raises `ListRequestError` (a `MappingError`: the SIP
dispatcher's error boundary answers with its status and headers). Limits and loops come
from `mappings.resourcelists` (413 past the size or member count, 403 past the nesting
depth or on a loop, 400 for a malformed body or hostile XML).

* RFC 4662 §4.1: a SUBSCRIBE to a list URI without `Supported: eventlist` cannot proceed:
  421 with `Require: eventlist`.
* RFC 5367 §3: a request-contained list comes with `Require: recipient-list-subscribe`
  and a body of type `application/resource-lists+xml` (RFC 5367 §4, the default and only
  format here) whose disposition is `recipient-list` (RFC 5363 §4.1); another type: 415
  with Accept; another disposition or no body: 400.
* RFC 5367 §5.1: a resource-lists body in a subsequent (in-dialog) SUBSCRIBE: 415.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from gateway.sip.message import SipRequest
from mappings.errors import MappingError
from mappings.resourcelists import (
    MEDIA_TYPE as RESOURCE_LISTS,
)
from mappings.resourcelists import (
    Entry,
    ListLimits,
    document_resolver,
    expand,
    parse_resource_lists,
)

__all__ = [
    "EVENTLIST",
    "RECIPIENT_LIST_SUBSCRIBE",
    "RESOURCE_LISTS",
    "ListRequestError",
    "check_in_dialog",
    "is_request_contained",
    "linphone_dialect",
    "read_request_list",
    "require_eventlist",
    "supports_eventlist",
]

EVENTLIST: Final = "eventlist"  # RFC 4662 §8.1
RECIPIENT_LIST_SUBSCRIBE: Final = "recipient-list-subscribe"  # RFC 5367 §9
RECIPIENT_LIST: Final = "recipient-list"  # RFC 5363 §9.1 disposition type


class ListRequestError(MappingError):
    """A list SUBSCRIBE refused: `sip_status` and the `headers` that go with it."""

    def __init__(self, reason: str, status: int, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(reason, sip_status=status, xmpp_condition="bad-request")
        self.headers = tuple(headers)


def _tokens(values: Sequence[str]) -> set[str]:
    return {v.strip().lower() for v in values}


def supports_eventlist(req: SipRequest) -> bool:
    return EVENTLIST in _tokens(req.supported)


def is_request_contained(req: SipRequest) -> bool:
    return RECIPIENT_LIST_SUBSCRIBE in _tokens(req.require)


def require_eventlist(req: SipRequest) -> None:
    """RFC 4662 §4.1: the list cannot be served without the extension (421)."""
    if not supports_eventlist(req):
        raise ListRequestError("list SUBSCRIBE without Supported: eventlist", 421,
                               (("Require", EVENTLIST),))  # fmt: skip


def _disposition(req: SipRequest) -> str | None:
    raw = req.headers.get("Content-Disposition")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower()


def read_request_list(req: SipRequest, limits: ListLimits, owner: str) -> tuple[Entry, ...]:
    """The members of an RFC 5367 request-contained list, flattened by `expand` (references
    resolve inside the same document, as the list of `owner`; the unresolved ones are
    dropped, RFC 5367 §4 lets the server discard them)."""
    ctype = req.content_type
    if not req.body or ctype is None:
        raise ListRequestError("recipient-list-subscribe without a list body", 400)
    if ctype.mime != RESOURCE_LISTS:
        raise ListRequestError(f"list body of type {ctype.mime}", 415,
                               (("Accept", RESOURCE_LISTS),))  # fmt: skip
    disposition = _disposition(req)
    if disposition is not None and disposition != RECIPIENT_LIST:
        raise ListRequestError(f"list body with disposition {disposition}", 400)
    doc = parse_resource_lists(req.body, limits)
    resolver = document_resolver(doc, f"resource-lists/users/{owner}/index")
    return expand(doc, resolver, limits).entries


_LINPHONE = re.compile(r"linphone", re.IGNORECASE)


def linphone_dialect(req: SipRequest) -> bool:
    """A SUBSCRIBE from liblinphone (its User-Agent names it: "Linphonec/5.1.65",
    "LinphoneAndroid/...", "Linphone Desktop/..."). liblinphone 5.1 reads list NOTIFYs
    only with `Event: Presence` (it compares the package name to "Presence" byte by
    byte) and finds a part only when its `Content-Id` equals the RLMI cid without angle
    brackets; docs/lists.md, "Linphone"."""
    agent = req.headers.get("User-Agent")
    return agent is not None and _LINPHONE.search(agent) is not None


def check_in_dialog(req: SipRequest) -> None:
    """RFC 5367 §5.1: no list semantics in a subsequent SUBSCRIBE (415)."""
    ctype = req.content_type
    if req.body and ctype is not None and ctype.mime == RESOURCE_LISTS:
        raise ListRequestError("resource-lists body in a subsequent SUBSCRIBE", 415)

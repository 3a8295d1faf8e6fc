"""The display names SIP contacts show in their requests (issue 22: the vCard's FN). Pure.

`SeenNames.saw` is called for every MESSAGE the trust gate accepted
(`bridge/dispatch.message_handler`) with the sender's AOR and whether its source is a
trusted peer. The name kept for that contact is:

* the display-name of a P-Asserted-Identity naming the same AOR, only when the request
  came from a trusted peer (RFC 3325 §5: the header is honoured only inside the trust
  domain; from anyone else it is ignored, as the trust gate ignores it);
* otherwise the display-name of the From header;
* a request showing no name leaves the last one seen in place.

Names are peer input: `mappings.vcard.clean_display_name` (no control characters, at most
64 characters) runs before anything is kept, and nothing here is logged. The table is a
`gateway.memo.Memo` (bounded, forgotten all at once when full), keyed by the contact's
``user@host`` (user unescaped, host lower-cased) so that the vCard's lookup by AOR finds
it whatever the escaping or case of the From URI. `SeenNames` itself is a `DisplayNames`.
"""

from __future__ import annotations

from gateway.bridge.pager.sip_message import uri_address
from gateway.memo import Memo
from gateway.sip.errors import RemoteProtocolError
from gateway.sip.headers import NameAddr, parse_name_addr_list
from gateway.sip.message import SipRequest
from mappings.errors import MappingError
from mappings.vcard import clean_display_name

__all__ = ["NAMES_LIMIT", "SeenNames", "contact_key"]

NAMES_LIMIT = 10_000


def contact_key(uri: str) -> str | None:
    """``user@host`` of a sip:/im:/pres:/tel: URI (user unescaped, host lower case); None
    for what names no SIP user (sips: included: never bridged, RFC 7247 §8)."""
    try:
        address = uri_address(uri)
    except (MappingError, RemoteProtocolError, ValueError):
        return None
    if address.user is None:
        return None
    return f"{address.user}@{(address.domain or '').lower()}"


class SeenNames:
    """The last display name each SIP contact showed, bounded; callable as `DisplayNames`."""

    def __init__(self, limit: int = NAMES_LIMIT) -> None:
        self._names: Memo[str, str] = Memo(limit)

    def saw(self, req: SipRequest, aor: str, trusted: bool) -> None:
        """Remember the name `req` shows for its sender `aor` (see the module docstring)."""
        key = contact_key(aor)
        if key is None:
            return
        name = None
        if trusted:
            name = _name_for(key, _asserted(req))
        if name is None:
            try:
                sender = req.from_
            except RemoteProtocolError:
                sender = None
            name = _name_for(key, () if sender is None else (sender,))
        if name is not None and self._names.peek(key) != name:
            self._names.put(key, name)

    def __call__(self, aor: str) -> str | None:
        key = contact_key(aor)
        return None if key is None else self._names.peek(key)

    def __len__(self) -> int:
        return len(self._names)


def _asserted(req: SipRequest) -> list[NameAddr]:
    """The P-Asserted-Identity values (RFC 3325 §9.1: one or two name-addrs)."""
    out: list[NameAddr] = []
    for value in req.headers.get_all("P-Asserted-Identity"):
        try:
            out.extend(parse_name_addr_list(value))
        except (RemoteProtocolError, ValueError):
            continue  # a malformed assertion asserts nothing
    return out


def _name_for(key: str, values: tuple[NameAddr, ...] | list[NameAddr]) -> str | None:
    for value in values:
        if contact_key(str(value.uri)) == key:
            name = clean_display_name(value.display_name)
            if name is not None:
                return name
    return None

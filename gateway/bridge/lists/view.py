"""RLMI state of one list subscription (RFC 4662 §5): full state first, then partial.

`ListView` holds the members of a list (in list order), what is known of each (a
`MemberState`: the virtual subscription's instance state, its reason, the member's PIDF)
and the RLMI `version`. `full(boundary)` and `partial(boundary)` build the next NOTIFY
body (`mappings.rlmi.build_list_body`: multipart/related, the RLMI part first):

* version starts at 0 and grows by one with each body built (RFC 4662 §5.2), so a
  subscriber can detect a lost NOTIFY;
* a full body lists every member; a partial one only the members changed since the last
  body (RFC 4662 §5.6.2); nothing changed: no partial body;
* a member with nothing known has no `<instance>` (RFC 4662 §4.5); `pending` and
  `terminated` instances carry no part (`terminated` carries its reason, §5.5); an
  `active` one has its document as a part with a Content-ID unique in the body.

Instance ids are stable per member (a hash of its URI), Content-IDs are
`<instance>.<version>@<domain>`, so they never repeat within a subscription. Pure: the
boundary is the caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from mappings.pidf import MEDIA_TYPE as PIDF
from mappings.resourcelists import Entry
from mappings.rlmi import BodyPart, Instance, ListBody, Name, Resource, RlmiList, build_list_body

__all__ = ["UNKNOWN", "ListView", "MemberState", "instance_id"]

State = Literal["active", "pending", "terminated"]


@dataclass(frozen=True, slots=True)
class MemberState:
    """What the RLS knows of one member: `state` None means nothing yet (no instance)."""

    state: State | None
    reason: str | None = None  # for terminated (RFC 6665 §4.1.3 reasons)
    document: bytes | None = None  # the member's state document, for active
    content_type: str = PIDF

    def __post_init__(self) -> None:
        if self.state == "active" and not self.document:
            raise ValueError("an active member needs its document")
        if self.state == "terminated" and not self.reason:
            raise ValueError("a terminated member needs a reason")


UNKNOWN = MemberState(None)


def instance_id(uri: str) -> str:
    return "i" + hashlib.sha256(uri.encode()).hexdigest()[:12]


class ListView:
    """The members of one list subscription, their states and the RLMI version."""

    __slots__ = ("_bare", "_changed", "_ids", "cid_domain", "members", "states", "uri", "version")

    def __init__(
        self,
        uri: str,
        members: Iterable[Entry],
        *,
        version: int = 0,
        cid_domain: str = "rls.invalid",
        bare_content_ids: bool = False,
    ) -> None:
        self._bare = bare_content_ids
        self.uri = uri
        self.members: tuple[Entry, ...] = tuple(members)
        self.states: dict[str, MemberState] = {e.uri: UNKNOWN for e in self.members}
        self._ids = {e.uri: instance_id(e.uri) for e in self.members}
        self.version = version  # of the next body
        self.cid_domain = cid_domain
        self._changed: dict[str, None] = {}  # ordered set of changed member URIs

    @property
    def dirty(self) -> bool:
        """Something changed since the last body."""
        return bool(self._changed)

    def update(self, uri: str, state: MemberState) -> bool:
        """Record `uri`'s new state; True when it differs from what was known."""
        old = self.states.get(uri)
        if old is None or old == state:
            return False
        self.states[uri] = state
        self._changed[uri] = None
        return True

    def replace_members(self, members: Sequence[Entry]) -> None:
        """The list changed (its source said so): keep the states of members that stay;
        the next body must be a full one (the caller sends `full`)."""
        self.members = tuple(members)
        self.states = {e.uri: self.states.get(e.uri, UNKNOWN) for e in self.members}
        self._ids = {e.uri: instance_id(e.uri) for e in self.members}
        self._changed.clear()

    def full(self, boundary: str, *, commit: bool = True) -> ListBody:
        """Every member. `commit=False`: the body may not be sent (a SUBSCRIBE the
        notifier may still refuse); `commit()` once it was."""
        return self._body(self.members, True, boundary, commit)

    @property
    def bare_content_ids(self) -> bool:
        """Parts named `Content-Id: cid` without brackets (liblinphone's reading,
        `mappings.rlmi.build_list_body`)."""
        return self._bare

    def commit(self) -> None:
        """The body built with `commit=False` went out: next version, nothing changed."""
        self.version += 1
        self._changed.clear()

    def partial(self, boundary: str) -> ListBody | None:
        if not self._changed:
            return None
        by_uri = {e.uri: e for e in self.members}
        changed = [by_uri[u] for u in self._changed if u in by_uri]
        return self._body(changed, False, boundary)

    def _body(
        self, entries: Sequence[Entry], full: bool, boundary: str, commit: bool = True
    ) -> ListBody:
        version = self.version
        resources: list[Resource] = []
        parts: list[BodyPart] = []
        for entry in entries:
            st = self.states[entry.uri]
            names = () if entry.display_name is None else (
                Name(entry.display_name.text, entry.display_name.lang),)  # fmt: skip
            instances: tuple[Instance, ...] = ()
            if st.state is not None:
                iid = self._ids[entry.uri]
                cid = None
                if st.state == "active" and st.document:
                    cid = f"{iid}.{version}@{self.cid_domain}"
                    parts.append(BodyPart(cid, st.content_type, st.document))
                reason = st.reason if st.state == "terminated" else None
                instances = (Instance(iid, st.state, reason, cid),)
            resources.append(Resource(entry.uri, names, instances))
        rlmi = RlmiList(self.uri, version, full, resources=tuple(resources))
        body = build_list_body(
            rlmi,
            parts,
            root_cid=f"rlmi.{version}@{self.cid_domain}",
            boundary=boundary,
            bare_content_ids=self._bare,
        )
        if commit:
            self.commit()
        return body

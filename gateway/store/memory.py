"""In-memory `Store` for unit tests of pure code and for running without a state directory.

Same semantics as the SQLite store (atomic per-AOR replacement, `expire_before` removes
records whose `expires_at` is strictly before `now`), nothing survives `close()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from gateway.cluster.lease import claim
from gateway.store.api import (
    Binding,
    Expired,
    Lease,
    Publication,
    StoredMessage,
    StoreError,
    SubscriptionRecord,
    XcapDocument,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._bindings: dict[str, tuple[Binding, ...]] = {}
        self._subs: dict[tuple[str, str], SubscriptionRecord] = {}
        self._pubs: dict[tuple[str, str], tuple[Publication, ...]] = {}
        self._messages: dict[str, StoredMessage] = {}  # insertion order = store order
        self._xcap: dict[tuple[str, str, str], XcapDocument] = {}
        self._leases: dict[str, Lease] = {}
        self._closed = False

    def _check(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    # -- bindings
    def bindings(self, aor: str) -> tuple[Binding, ...]:
        self._check()
        return self._bindings.get(aor, ())

    def set_bindings(self, aor: str, bindings: Iterable[Binding]) -> None:
        self._check()
        items = tuple(bindings)
        if any(b.aor != aor for b in items):
            raise StoreError(f"binding for another AOR in set_bindings({aor!r})")
        if len({b.contact for b in items}) != len(items):
            raise StoreError(f"duplicate contact in set_bindings({aor!r})")
        if items:
            self._bindings[aor] = items
        else:
            self._bindings.pop(aor, None)

    def all_bindings(self) -> Iterator[Binding]:
        self._check()
        return iter([b for items in self._bindings.values() for b in items])

    # -- subscriptions
    def put_subscription(self, record: SubscriptionRecord) -> None:
        self._check()
        self._subs[record.key] = record

    def put_subscriptions(self, records: Iterable[SubscriptionRecord]) -> None:
        self._check()
        self._subs.update((r.key, r) for r in records)

    def get_subscription(self, call_id: str, local_tag: str) -> SubscriptionRecord | None:
        self._check()
        return self._subs.get((call_id, local_tag))

    def delete_subscription(self, call_id: str, local_tag: str) -> None:
        self._check()
        self._subs.pop((call_id, local_tag), None)

    def subscriptions(
        self, *, watcher: str | None = None, target: str | None = None
    ) -> tuple[SubscriptionRecord, ...]:
        self._check()
        return tuple(
            r
            for r in self._subs.values()
            if (watcher is None or r.watcher == watcher) and (target is None or r.target == target)
        )

    def all_subscriptions(self) -> Iterator[SubscriptionRecord]:
        self._check()
        return iter(list(self._subs.values()))

    # -- publications
    def publications(self, aor: str, event: str | None = None) -> tuple[Publication, ...]:
        self._check()
        return tuple(
            p
            for (a, e), items in self._pubs.items()
            if a == aor and event in (None, e)
            for p in items
        )

    def set_publications(self, aor: str, event: str, publications: Iterable[Publication]) -> None:
        self._check()
        items = tuple(publications)
        if any(p.aor != aor or p.event != event for p in items):
            raise StoreError(f"publication for another AOR/event in set_publications({aor!r})")
        if len({p.etag for p in items}) != len(items):
            raise StoreError(f"duplicate entity-tag in set_publications({aor!r})")
        if items:
            self._pubs[(aor, event)] = items
        else:
            self._pubs.pop((aor, event), None)

    def all_publications(self) -> Iterator[Publication]:
        self._check()
        return iter([p for items in self._pubs.values() for p in items])

    # -- stored messages
    def put_message(self, message: StoredMessage) -> bool:
        self._check()
        if message.message_id in self._messages:
            return False
        self._messages[message.message_id] = message
        return True

    def messages(self, aor: str) -> tuple[StoredMessage, ...]:
        self._check()
        return tuple(m for m in self._messages.values() if m.aor == aor)

    def delete_message(self, message_id: str) -> None:
        self._check()
        self._messages.pop(message_id, None)

    def all_messages(self) -> Iterator[StoredMessage]:
        self._check()
        return iter(list(self._messages.values()))

    # -- XCAP documents
    def xcap_document(self, auid: str, aor: str, name: str) -> XcapDocument | None:
        self._check()
        return self._xcap.get((auid, aor, name))

    def put_xcap_document(self, document: XcapDocument) -> None:
        self._check()
        self._xcap[document.key] = document

    def delete_xcap_document(self, auid: str, aor: str, name: str) -> bool:
        self._check()
        return self._xcap.pop((auid, aor, name), None) is not None

    def xcap_documents(
        self, *, aor: str | None = None, auid: str | None = None
    ) -> tuple[XcapDocument, ...]:
        self._check()
        found = (
            d
            for d in self._xcap.values()
            if (aor is None or d.aor == aor) and (auid is None or d.auid == auid)
        )
        return tuple(sorted(found, key=lambda d: d.key))

    # -- housekeeping
    # -- leases
    def claim_lease(self, name: str, owner: str, now: float, ttl: float) -> Lease:
        self._check()
        current = self._leases.get(name)
        got = claim(current, name, owner, now, ttl)
        if got is not None:
            self._leases[name] = got
            return got
        assert current is not None  # claim refuses only a live lease of another owner
        return current

    def release_lease(self, name: str, owner: str) -> None:
        self._check()
        if (lease := self._leases.get(name)) is not None and lease.owner == owner:
            del self._leases[name]

    def expire_before(self, now: float) -> Expired:
        self._check()
        gone_b: list[Binding] = []
        for aor, items in list(self._bindings.items()):
            keep = tuple(b for b in items if b.expires_at >= now)
            gone_b += [b for b in items if b.expires_at < now]
            self.set_bindings(aor, keep)
        gone_s = [r for r in self._subs.values() if r.expires_at < now]
        for r in gone_s:
            del self._subs[r.key]
        gone_p: list[Publication] = []
        for (aor, event), pubs in list(self._pubs.items()):
            gone_p += [p for p in pubs if p.expires_at < now]
            self.set_publications(aor, event, (p for p in pubs if p.expires_at >= now))
        return Expired(tuple(gone_b), tuple(gone_s), tuple(gone_p))

    def close(self) -> None:
        self._closed = True

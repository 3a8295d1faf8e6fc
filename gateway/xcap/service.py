"""The XCAP documents in the store: one place that reads, validates, writes and announces
them, for the HTTP server (server.py), the operators (CLI, admin API) and the consumers
(the pres-rules decision for hosted users, the resource-list server's `ListSource`).

A write goes through the pure core (`core.handle`), is committed to the store, then the
change callbacks run, then the caller answers: nothing is acknowledged before it is
persisted. Store failures raise `StoreError` (the HTTP server answers 503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.logs import event
from gateway.memo import Memo
from gateway.registrar.users import normalise_aor
from gateway.store.api import Store, XcapDocument
from gateway.xcap.caps import caps_document
from gateway.xcap.core import NO_PRECONDITIONS, Preconditions, Reply, Stored, etag_of, handle
from gateway.xcap.errors import XcapError
from gateway.xcap.uri import DocumentSelector, XcapUri
from gateway.xcap.usages import CAPS_AUID, PRES_RULES, Usage, usages
from mappings.presrules import Ruleset, SubHandling, decide, parse_pres_rules
from mappings.xmlsafe import FormatError

__all__ = ["DocumentChanged", "XcapDocuments", "owner_aor"]

log = logging.getLogger(__name__)

DocumentChanged = Callable[[str, str, str], None]  # (auid, owner AOR, document name)
DEFAULT_DOCUMENT = "index"  # RFC 4826 §3.7, RFC 5025 §9.7


def owner_aor(xui: str) -> str:
    """The canonical AOR (``sip:user@domain``) an XUI names (RFC 4825 §4: the XUI of a
    SIP user is its AOR); a bare ``user@domain`` is accepted."""
    text = xui.removeprefix("sip:")
    if "@" not in text or ":" in text or ";" in text:
        raise XcapError(404, f"{xui!r} is not a user of this server")
    return "sip:" + normalise_aor(text)


class XcapDocuments:
    def __init__(
        self, store: Store, *, max_bytes: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.clock = clock
        self.usages: dict[str, Usage] = usages()
        self.caps = caps_document(self.usages.values())
        self.default_ns = {auid: u.default_ns for auid, u in self.usages.items()}
        self._listeners: list[DocumentChanged] = []
        self._rules: Memo[str, Ruleset] = Memo(4096)  # etag -> parsed pres-rules

    def on_change(self, callback: DocumentChanged) -> None:
        """`callback(auid, aor, name)` after a document was written or deleted."""
        self._listeners.append(callback)

    # ------------------------------------------------------------ reading

    def document(self, auid: str, aor: str, name: str = DEFAULT_DOCUMENT) -> XcapDocument | None:
        return self.store.xcap_document(auid, aor, name)

    def _current(self, selector: DocumentSelector, aor: str | None) -> Stored | None:
        if aor is None:  # the global tree holds xcap-caps alone
            if selector.auid == CAPS_AUID and selector.name == DEFAULT_DOCUMENT:
                return Stored(self.caps, etag_of(self.caps))
            return None
        found = self.store.xcap_document(selector.auid, aor, selector.name)
        return None if found is None else Stored(found.body, found.etag)

    # ------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        uri: XcapUri,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        preconditions: Preconditions = NO_PRECONDITIONS,
        actor: str = "xcap",
    ) -> Reply:
        """One XCAP request on the document `uri` names (its XUI already authorized)."""
        sel = uri.document
        aor = None if sel.xui is None else owner_aor(sel.xui)
        if aor is None and method in ("PUT", "DELETE"):
            return Reply(405, b"global documents are read only\n", "text/plain; charset=utf-8")
        reply = handle(
            method,
            uri,
            self._current(sel, aor),
            self.usages[sel.auid],
            body=body,
            content_type=content_type,
            preconditions=preconditions,
            max_bytes=self.max_bytes,
        )
        if aor is not None and reply.writes:
            self._commit(sel, aor, reply, actor)
        return reply

    def _commit(self, sel: DocumentSelector, aor: str, reply: Reply, actor: str) -> None:
        if reply.store is not None:
            assert reply.etag is not None
            doc = XcapDocument(sel.auid, aor, sel.name, reply.store, reply.etag, self.clock())
            self.store.put_xcap_document(doc)
            what = "xcap document written"
        else:
            self.store.delete_xcap_document(sel.auid, aor, sel.name)
            what = "xcap document deleted"
        event(log, logging.INFO, what, auid=sel.auid, aor=aor, name=sel.name, by=actor)
        for listener in self._listeners:
            try:
                listener(sel.auid, aor, sel.name)
            except Exception:  # one consumer's failure must not undo a committed write
                log.exception("xcap change listener failed")

    def put(
        self, aor: str, auid: str, body: bytes, *, name: str = DEFAULT_DOCUMENT, actor: str
    ) -> Reply:
        """A whole-document PUT by an operator (CLI, admin API): same validation."""
        usage = self.usages.get(auid)
        if usage is None:
            return Reply(404, f"no application usage {auid!r}\n".encode())
        uri = XcapUri(DocumentSelector(auid, owner_aor(aor), name))
        return self.request("PUT", uri, body=body, content_type=usage.mime, actor=actor)

    def delete(self, aor: str, auid: str, *, name: str = DEFAULT_DOCUMENT, actor: str) -> Reply:
        if auid not in self.usages:
            return Reply(404, f"no application usage {auid!r}\n".encode())
        uri = XcapUri(DocumentSelector(auid, owner_aor(aor), name))
        return self.request("DELETE", uri, actor=actor)

    # ------------------------------------------------------------ pres-rules

    def watcher_decision(self, aor: str, watcher_uri: str) -> SubHandling | None:
        """RFC 5025 §3.2.1 for `watcher_uri` asking to watch hosted user `aor`: the
        user's pres-rules document decides; None when the user has no usable document
        (the caller keeps its own policy, docs/presence.md)."""
        doc = self.store.xcap_document(PRES_RULES, aor, DEFAULT_DOCUMENT)
        if doc is None:
            return None
        try:
            rules = self._rules.get(doc.etag, lambda _etag: parse_pres_rules(doc.body))
        except FormatError as exc:  # validated when written; a bad row is not a verdict
            event(log, logging.WARNING, "unusable pres-rules", aor=aor, error=str(exc))
            return None
        verdict = decide(watcher_uri, rules, now=datetime.fromtimestamp(self.clock(), UTC))
        fields = {"aor": aor, "watcher": watcher_uri, "verdict": verdict}
        event(log, logging.INFO, "pres-rules decision", **fields)
        return verdict

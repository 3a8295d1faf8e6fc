"""Hosted users' pres-rules (RFC 5025) applied to the watchers already there.

A new request is decided in `Hosted.on_subscribe` through its injected `rules`. When the
hosted user writes a new pres-rules document (XCAP, CLI, admin API), `settle` applies it
to the requests already known (RFC 5025 §3.2.1: the rules decide the subscription state,
not only its start): a pending request the rules now `allow` is approved; a request,
pending or approved, they `block` or `polite-block` is ended as `/deny` ends it;
`confirm` or no document leaves everything as it is (docs/presence.md).
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.bridge.presence.hosted import Hosted

__all__ = ["settle"]


def settle(hosted: Hosted, aor: str, rules: Callable[[str, str], str | None]) -> int:
    """Apply `aor`'s rules to its watchers; the number of watchers settled."""
    settled = 0
    for entry in hosted.watchers(aor):
        verdict = rules(aor, entry.sip_uri)
        if verdict == "allow" and entry.status == "pending":
            settled += hosted.decide(aor, entry.sip_uri, "allow")
        elif verdict in ("block", "polite-block"):
            settled += hosted.decide(aor, entry.sip_uri, "deny")
    return settled

"""Drive the pure RFC 3263 plan (gateway.sip.locate.LocatePlan) with real lookups.

Every query the plan has ready is issued at once (NAPTR alone, then the SRV stage, then
the A/AAAA of every SRV target), so a resolution costs about three round trips and a dead
DNS server costs one lookup lifetime: the first timeout aborts the whole resolution. A
SERVFAIL on one query only empties that answer (a broken AAAA must not hide a good A); if
no target is left the failure decides the error.
"""

from __future__ import annotations

import random

from gateway.resolver.errors import ResolutionError
from gateway.resolver.lookup import DnsFailure, Lookup, gather
from gateway.sip.locate import LocatePlan, Query, Target

__all__ = ["drive_plan"]


async def drive_plan(
    plan: LocatePlan, lookup: Lookup | None, rng: random.Random, what: str
) -> list[Target]:
    """Run `plan` to completion; its targets in failover order, or ResolutionError.

    `lookup` None means DNS is disabled: only plans that need no query succeed.
    """
    failures: list[DnsFailure] = []
    while True:
        batch: list[Query] = []
        while (q := plan.next_query()) is not None:
            batch.append(q)
        if not batch:
            break
        if lookup is None:
            raise ResolutionError(
                "disabled", f"{what}: DNS is disabled (no [dns] servers) and no static route"
            )
        results = await gather(lookup, [(q.name, q.rdtype) for q in batch])
        for q, res in zip(batch, results, strict=True):
            if isinstance(res, DnsFailure):
                if res.kind == "timeout":
                    raise ResolutionError("timeout", f"{what}: no answer from DNS ({res})")
                failures.append(res)
                plan.feed(q, [])
            else:
                plan.feed(q, list(res.records))
    targets = [t for t in plan.targets(rng) if t.address is not None]
    if targets:
        return targets
    if failures:
        raise ResolutionError("server-failure", f"{what}: DNS failure ({failures[0]})")
    raise ResolutionError("not-found", f"{what}: no SIP server found in DNS")

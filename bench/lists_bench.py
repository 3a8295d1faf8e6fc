"""The resource list server at scale (issue 24), in process, with its baseline in the run.

Setup (not timed): U hosted SIP users w<i>@sip.localhost and C XMPP contacts
c<j>@localhost; every (user, contact) pair has an authorized S2X watch holding the
contact's presence (`S2x.follow` + `subscribed` + an available presence), as after a
long-running gateway learned them. NOTIFYs go to a sink standing for the endpoint: each
is "sent" and answered 200 at once (`PresenceContext.send_nowait`), so the figures are
the gateway's own work (building RLMI, PIDF parts and SIP requests, the RFC 6665
machines, the store), not the network's.

* `rls`: each user sends one RFC 5367 SUBSCRIBE holding its C contacts; the figure is
  the time from the first SUBSCRIBE to the last of the U initial full-state NOTIFYs (each
  with C resources and C PIDF parts) and the RSS those U list subscriptions add. Then one
  contact changes presence (the XMPP server sends the change once per watcher: U
  stanzas) and the time to the last of the U partial NOTIFYs (one resource each).
* `single` (the baseline, the existing path): each user sends C single-resource presence
  SUBSCRIBEs (RFC 3856), one per contact: U x C dialogs and U x C NOTIFYs carrying the
  same states; then the same contact change, U NOTIFYs.

Each mode runs in its own child process (so the RSS figures are its own).

    python -m bench.lists_bench [-u 500] [-c 200] [--no-json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import Row, dump_results, print_table

__all__ = ["main", "run", "run_child"]

COMP = "sip.localhost"
XMPP = "localhost"


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        pages = int(f.read().split()[1])
    import resource

    return pages * resource.getpagesize() / 1e6


class _Links:
    def __init__(self, comp: Any) -> None:
        self.comp = comp
        self.sent = 0

    def send(self, domain: str, stanza: Any) -> bool:
        self.sent += 1
        return True

    async def send_confirmed(self, domain: str, stanza: Any, timeout: float | None = None) -> None:
        self.sent += 1

    def is_up(self, domain: str) -> bool:
        return True

    def component(self, domain: str) -> Any:
        return self.comp


class _Incoming:
    __slots__ = ("request", "responses", "to_tag", "transport")

    def __init__(self, request: Any, tag: str) -> None:
        self.request = request
        self.to_tag = tag
        self.transport = "udp"
        self.responses: list[Any] = []

    def reply(self, status: int, reason: str | None = None, **_: Any) -> bool:
        raise RuntimeError(f"refused with {status}")

    def respond(self, response: Any) -> bool:
        self.responses.append(response.status)
        return True


def _subscribe(user: int, call_id: str, uri: str, body: bytes, listed: bool) -> Any:
    from gateway.sip.message import Headers, SipRequest
    from gateway.sip.uri import parse_uri

    headers = [
        ("Via", f"SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{call_id}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:w{user}@{COMP}>;tag=t{call_id}"),
        ("To", f"<{uri}>"),
        ("Call-ID", call_id),
        ("CSeq", "1 SUBSCRIBE"),
        ("Contact", f"<sip:w{user}@127.0.0.1:5070>"),
        ("Event", "presence"),
        ("Expires", "3600"),
    ]
    if listed:
        headers += [
            ("Accept", "application/pidf+xml, application/rlmi+xml, multipart/related"),
            ("Supported", "eventlist"),
            ("Require", "recipient-list-subscribe"),
            ("Content-Type", "application/resource-lists+xml"),
            ("Content-Disposition", "recipient-list"),
        ]
    return SipRequest.from_parts("SUBSCRIBE", parse_uri(uri), Headers(headers), body)


def run_child(mode: str, users: int, contacts: int) -> dict[str, Any]:
    from gateway.bridge.lists.service import ListServer, ListsPolicy
    from gateway.bridge.presence.context import PresenceConfig, domain_maps
    from gateway.bridge.presence.service import PresenceService
    from gateway.config import ComponentConfig
    from gateway.sip.message import make_response
    from gateway.store.memory import MemoryStore
    from gateway.xmpp.component import GatewayComponent
    from mappings.jid import parse_jid
    from mappings.presence import XmppPresence
    from mappings.resourcelists import NS

    clock = [1000.0]
    comp = GatewayComponent(ComponentConfig(COMP, "secret"), server="127.0.0.1", port=1)
    links = _Links(comp)
    svc = PresenceService(
        PresenceConfig(contact="sip:presence@127.0.0.1:5060", notify_interval=0.0),
        endpoint=object(),  # type: ignore[arg-type]
        resolver=object(),  # type: ignore[arg-type]
        links=links,
        store=MemoryStore(),  # type: ignore[arg-type]
        maps=domain_maps((ComponentConfig(COMP, "secret"),), (XMPP,)),
        clock=lambda: clock[0],
    )
    notifies = [0]
    last_at = [0.0]

    def sink(request: Any, done: Callable[[Any, Any], None]) -> bool:
        notifies[0] += 1
        last_at[0] = time.perf_counter()
        done(make_response(request, 200), None)
        return True

    svc.ctx.send_nowait = sink  # type: ignore[method-assign]
    rls = ListServer(
        svc.ctx, svc.s2x, policy=ListsPolicy(min_interval=0.0, max_per_user=4, max_entries=1000)
    )
    svc.extend(rls, rls.timers())
    watchers = [parse_jid(f"w{i}@{COMP}") for i in range(users)]
    contact_jids = [parse_jid(f"c{j}@{XMPP}") for j in range(contacts)]
    dm = svc.ctx.maps[COMP]

    def keep(_watch: Any, _ended: Any) -> None:
        return None

    for w in watchers:  # setup: every watch authorized, with presence
        for c in contact_jids:
            svc.s2x.follow(w, c, dm, keep)
            svc.s2x.on_subscribed(c, w)
            svc.s2x.on_presence(c.with_resource("r"), w, XmppPresence(resource="r", available=True))
    gc.collect()
    rss0 = _rss_mb()
    entries = "".join(f'<entry uri="sip:c{j}@{XMPP}"/>' for j in range(contacts))
    body = (f'<resource-lists xmlns="{NS}"><list>{entries}</list></resource-lists>').encode()
    requests: list[Any] = []
    if mode == "rls":
        requests = [_subscribe(i, f"l{i}", f"sip:rls@{COMP}", body, True) for i in range(users)]
    else:
        requests = [
            _subscribe(i, f"s{i}.{j}", f"sip:c{j}@{XMPP}", b"", False)
            for i in range(users)
            for j in range(contacts)
        ]

    async def initial() -> float:
        start = time.perf_counter()
        for n, req in enumerate(requests):
            result = svc.handle_subscribe(_Incoming(req, f"g{n}"))
            if result is not None:
                await result
        return last_at[0] - start

    loop = asyncio.new_event_loop()
    cpu0 = time.process_time()
    initial_s = loop.run_until_complete(initial())
    initial_cpu = time.process_time() - cpu0
    initial_notifies = notifies[0]
    gc.collect()
    rss1 = _rss_mb()

    clock[0] += 10.0
    before = notifies[0]
    change = XmppPresence(resource="r", available=True, show="away", statuses=(("busy", None),))
    start = time.perf_counter()
    for w in watchers:  # c0's server sends the change to every watcher
        svc.s2x.on_presence(contact_jids[0].with_resource("r"), w, change)
    fanout_s = last_at[0] - start
    fanout_notifies = notifies[0] - before
    loop.close()
    return {
        "mode": mode,
        "users": users,
        "contacts": contacts,
        "initial_s": initial_s,
        "initial_cpu_s": initial_cpu,
        "initial_notifies": initial_notifies,
        "rss_setup_mb": rss0,
        "rss_added_mb": rss1 - rss0,
        "fanout_s": fanout_s,
        "fanout_notifies": fanout_notifies,
    }


def _child(mode: str, users: int, contacts: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.lists_bench",
            "--child",
            mode,
            "-u",
            str(users),
            "-c",
            str(contacts),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(users: int = 500, contacts: int = 200) -> list[Row]:
    """Both modes, the baseline first; the rows of the table."""
    single = _child("single", users, contacts)
    rls = _child("rls", users, contacts)
    rows = []
    for res in (single, rls):
        name = "single SUBSCRIBEs (baseline)" if res is single else "one list SUBSCRIBE each"
        resources = res["users"] * res["contacts"]
        rows.append(
            Row(
                "lists",
                f"initial: {name}",
                rate=resources / res["initial_s"],
                max_ms=res["initial_s"] * 1000,
                cpu_per_1k=res["initial_cpu_s"] / resources * 1000,
                rss_mb=res["rss_added_mb"],
                ratio=single["initial_s"] / res["initial_s"],
                extra={"notifies": res["initial_notifies"], "resources": resources},
            )
        )
        rows.append(
            Row(
                "lists",
                f"fan-out of one change: {name}",
                rate=res["fanout_notifies"] / res["fanout_s"],
                max_ms=res["fanout_s"] * 1000,
                ratio=single["fanout_s"] / res["fanout_s"],
                extra={"notifies": res["fanout_notifies"]},
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-u", "--users", type=int, default=500)
    parser.add_argument("-c", "--contacts", type=int, default=200)
    parser.add_argument("--child", choices=("rls", "single"))
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.users, args.contacts)))
        return 0
    rows = run(args.users, args.contacts)
    print_table(rows)
    if not args.no_json:
        dump_results("lists", rows, {"users": args.users, "contacts": args.contacts})
    return 0


if __name__ == "__main__":
    sys.exit(main())

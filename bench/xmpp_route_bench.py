"""The component's receive path for <message/>, old tree against this one (issue 25).

N message stanzas go through a `GatewayComponent` on an in-memory transport, the way the
socket delivers them: `data_received` (stream parser) -> "in" filters (address check, the
direct message route) -> the bridge handler (a `CoroutineCallback` inside the error
boundary, as `PagerBridge.attach` registers it), and the event loop runs the handler
tasks. Each tree is measured in its own subprocess (`PYTHONPATH=<tree>`), in the same run:

* `old` (only with `--old DIR`): another checkout, e.g. `git worktree add DIR 0f3422f`
  for the tree before issue 25 (slixmpp's private lists, a subclass of `XMLPullParser`);
* `new`: this tree (recorded public registrations, a public `XMLPullParser` wrapped);
* `new-matching`: this tree with the handler registered the ordinary way (slixmpp matches
  every stanza against every handler): what the direct route saves.

Figures are CPU µs per stanza (this process's CPU time, one thread), the median of
`--repeat` rounds of `-n` stanzas each.

    python -m bench.xmpp_route_bench [-n 20000] [--repeat 5] [--old DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
DOMAIN = "sip.localhost"
USERS = 50  # distinct senders and recipients: the JID memo sees repeats, as in real traffic


def _stanzas(n: int) -> list[bytes]:
    return [
        (
            f'<message type="chat" to="u{i % USERS}@{DOMAIN}" from="j{i % USERS}@localhost/r"'
            f' id="m{i}"><body>hello {i} &amp; bye</body>'
            '<active xmlns="http://jabber.org/protocol/chatstates"/></message>'
        ).encode()
        for i in range(n)
    ]


def _worker(n: int, repeat: int, direct: bool) -> dict[str, Any]:
    """Runs inside the subprocess: only `gateway` (from PYTHONPATH) and slixmpp."""
    import asyncio

    from slixmpp.test import mocksocket
    from slixmpp.xmlstream.handler import CoroutineCallback
    from slixmpp.xmlstream.matcher import StanzaPath

    from gateway.config import Addressing, ComponentConfig
    from gateway.xmpp.boundary import boundary
    from gateway.xmpp.component import GatewayComponent

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    comp = GatewayComponent(
        ComponentConfig(DOMAIN, "secret", Addressing.MIRRORED), server="127.0.0.1", port=1
    )
    comp.connection_made(mocksocket.TestTransport(comp))  # type: ignore[no-untyped-call,arg-type]
    comp.session_bind_event.set()
    comp.data_received(comp.stream_header)
    seen = [0]

    async def handler(msg: Any) -> None:
        seen[0] += 1

    cb = CoroutineCallback("cpim-pager", StanzaPath("message"), boundary(handler))
    if direct:
        comp.route_messages(cb)
    else:
        comp.register_handler(cb)
    stanzas = _stanzas(n)

    async def settle() -> None:
        while seen[0] < expected:
            await asyncio.sleep(0)

    rounds = []
    expected = 0
    for _ in range(repeat + 1):  # the first round warms the memos and the caches
        expected += n
        start = time.process_time()
        for raw in stanzas:
            comp.data_received(raw)
        loop.run_until_complete(settle())
        rounds.append((time.process_time() - start) / n * 1e6)
    loop.close()
    import gateway

    return {
        "us_per_stanza": statistics.median(rounds[1:]),
        "rounds": rounds[1:],
        "n": n,
        "tree": str(Path(gateway.__file__).resolve().parents[1]),
    }


def _measure(tree: Path, n: int, repeat: int, direct: bool) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", f"-n{n}", f"-r{repeat}"]
    if not direct:
        cmd.append("--matching")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20_000)
    ap.add_argument("-r", "--repeat", type=int, default=5)
    ap.add_argument("--old", type=Path, default=None, help="another checkout to compare")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--matching", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.n, args.repeat, direct=not args.matching)))
        return 0
    cases = [("new", HERE, True), ("new-matching", HERE, False)]
    if args.old is not None:
        cases.insert(0, ("old", args.old, True))
    results = {name: _measure(tree, args.n, args.repeat, direct) for name, tree, direct in cases}
    print(f"receive path, {args.n} <message/> per round, median of {args.repeat} rounds")
    print(f"{'case':<14}{'us/stanza':>10}  {'tree':<16}rounds")
    for name, r in results.items():
        rounds = " ".join(f"{x:.1f}" for x in r["rounds"])
        print(f"{name:<14}{r['us_per_stanza']:>10.1f}  {r['tree']:<16}{rounds}")
    new = results["new"]["us_per_stanza"]
    if "old" in results:
        old = results["old"]["us_per_stanza"]
        print(f"new vs old: {new - old:+.1f} us/stanza ({(new / old - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

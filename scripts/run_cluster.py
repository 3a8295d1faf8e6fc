"""`make run-cluster`: PostgreSQL, ejabberd, Kamailio's dispatcher and two gateway
instances on loopback, in the foreground until Ctrl-C (issue 21, docs/cluster.md).

The same pieces as tests/integration/test_cluster.py, on free loopback ports chosen at
start: a throwaway PostgreSQL 15 cluster (initdb under /tmp), an ejabberd node with one
component listener per instance (the shared domain `sip.localhost` and the instance's
confirm_domain), deploy/kamailio/dispatcher.cfg in front on 127.0.0.2, and two gateways
`a` and `b` sharing the store. Printed at start: where to point the clients.
"""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.dispatcher import Dispatcher  # noqa: E402
from tests.harness.ejabberd import EjabberdServer  # noqa: E402
from tests.harness.gateway_proc import GatewayProcess  # noqa: E402
from tests.harness.ports import free_port  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.integration.test_cluster import (  # noqa: E402
    COMPONENT,
    SECRET,
    confirm_domain,
    instance_config,
)

NAMES = ("a", "b")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cpim-cluster-"))
    stopping = False

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    pg = PostgresServer().start()
    ej = EjabberdServer(
        work / "ejabberd",
        components={COMPONENT: SECRET},
        extra_listeners=[{COMPONENT: SECRET, confirm_domain(n): SECRET} for n in NAMES],
    )
    gateways: list[GatewayProcess] = []
    dispatcher: Dispatcher | None = None
    try:
        ej.start()
        for user in ("juliet", "nurse"):
            ej.add_user(user, user)
        dsn = pg.create_database()
        ports = {n: free_port() for n in NAMES}
        for n in NAMES:
            gw = GatewayProcess(
                instance_config(n, ports[n], ej, dsn, work / f"state-{n}", free_port()),
                work / f"gw-{n}",
                log_level="info",
                env={"PYTHONPATH": str(ROOT)},  # this checkout's gateway
            )
            gateways.append(gw.start())
        dispatcher = Dispatcher(work / "kamailio", list(ports.values())).start()
        print(
            f"""
  CPIM gateway cluster on loopback (issue 21, docs/cluster.md). Ctrl-C stops everything.

  XMPP client:  juliet@localhost / juliet (or nurse / nurse), server 127.0.0.1:{ej.c2s_port}
  SIP client:   any user @{COMPONENT}, registrar/proxy {dispatcher.address}:{dispatcher.port}
                (udp; Kamailio's dispatcher picks an instance by Call-ID)
  Instances:    a on 127.0.0.1:{ports["a"]}, b on 127.0.0.1:{ports["b"]} (kill one: b serves)
  Store:        {dsn}
  Logs:         {work}/gw-a/gateway.log, {work}/gw-b/gateway.log, {work}/kamailio/kamailio.log
""",
            flush=True,
        )
        while not stopping:
            time.sleep(0.5)
    finally:
        for gw in gateways:
            if gw.running:
                gw.terminate()
        if dispatcher is not None:
            dispatcher.stop()
        ej.stop()
        pg.close()
        print("cluster stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Kamailio's msrp module as an RFC 4976 relay on loopback (issue 18).

The configuration below follows the module's README (Example 1.18, connection map):
AUTH is challenged with HTTP Digest by the auth module (`pv_www_authenticate` against a
fixed password), a successful AUTH is answered by `msrp_cmap_save()` with a Use-Path
naming the relay and a fresh session id; a SEND or REPORT with more hops is answered 200
(hop by hop, RFC 4976 §6) and relayed to the next hop; one for the last hop is relayed on
the connection saved at AUTH (`msrp_cmap_lookup`), else 481. SIP is refused.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.harness import require_binary, stop_group
from tests.harness.ports import free_port

ADDRESS = "127.0.0.2"
REALM = "relay.test"

CONFIG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
tcp_accept_no_cl=yes
tcp_connection_lifetime=300
listen=tcp:{address}:{port}

loadmodule "sl.so"
loadmodule "kex.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "msrp.so"

modparam("auth", "nonce_count", 1)
modparam("auth", "qop", "auth")
modparam("msrp", "cmap_size", 8)
modparam("msrp", "use_path_addr", "{address}:{port}")

request_route {{
    sl_send_reply("403", "No SIP Here");
    exit;
}}

reply_route {{
    drop;
}}

event_route[msrp:frame-in] {{
    xlog("L_INFO", "MSRPFRAME $msrp(method) nexthops=$msrp(nexthops) sessid=$msrp(sessid)\\n");
    msrp_reply_flags("1");
    if (msrp_is_reply()) {{
        msrp_relay();
        exit;
    }}
    if ($msrp(method) == "AUTH") {{
        if ($msrp(nexthops) > 0) {{
            msrp_relay();
            exit;
        }}
        if (!pv_www_authenticate("{realm}", "{password}", "0", "$msrp(method)")) {{
            if (auth_get_www_authenticate("{realm}", "1", "$var(wauth)")) {{
                xlog("L_INFO", "MSRPAUTH challenge\\n");
                msrp_reply("401", "Unauthorized", "$var(wauth)");
            }} else {{
                msrp_reply("500", "Server Error");
            }}
            exit;
        }}
        xlog("L_INFO", "MSRPAUTH accepted $au\\n");
        msrp_cmap_save();
        exit;
    }}
    if ($msrp(method) == "SEND" || $msrp(method) == "REPORT") {{
        if ($msrp(nexthops) > 1) {{
            if ($msrp(method) != "REPORT") {{
                msrp_reply("200", "OK");
            }}
            msrp_relay();
            exit;
        }}
        if (msrp_cmap_lookup()) {{
            if ($msrp(method) != "REPORT") {{
                msrp_reply("200", "OK");
            }}
            xlog("L_INFO", "MSRPRELAY $msrp(method) to saved connection\\n");
            msrp_relay_flags("1");
            msrp_relay();
        }} else {{
            msrp_reply("481", "Session-does-not-exist");
        }}
        exit;
    }}
    msrp_reply("501", "Request-method-not-understood");
}}
"""


@dataclass
class KamailioRelay:
    proc: subprocess.Popen[bytes]
    address: str
    port: int
    password: str
    log_path: Path

    @property
    def uri(self) -> str:
        return f"msrp://{self.address}:{self.port};tcp"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        stop_group(self.proc, 10)


def _modules() -> Path:
    found = sorted(Path("/usr/lib").glob("*/kamailio/modules"))
    return found[0] if found else Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


def _listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((address, port)) == 0


def start_relay(work: Path, password: str = "relay-secret") -> KamailioRelay:
    """Kamailio in the foreground as an MSRP relay on ADDRESS (skips/fails without it)."""
    binary = require_binary("kamailio")
    if not (_modules() / "msrp.so").exists():
        raise AssertionError(f"no msrp.so in {_modules()} (Debian's kamailio ships it)")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg = work / "msrp-relay.cfg"
    cfg.write_text(CONFIG.format(address=ADDRESS, port=port, realm=REALM, password=password))
    log_path = work / "kamailio-msrp.log"
    args = [
        binary,
        *("-DD", "-E", "-f", str(cfg)),
        *("-P", str(work / "kamailio.pid"), "-Y", str(work), "-w", str(work)),
        *("-L", str(_modules()), "-m", "32", "-M", "8"),
    ]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=work,
            start_new_session=True,
        )  # fmt: skip
    relay = KamailioRelay(proc, ADDRESS, port, password, log_path)
    deadline = time.monotonic() + 30
    while not _listening(ADDRESS, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            relay.stop()
            raise AssertionError(f"kamailio did not start:\n{relay.log_text()[-3000:]}")
        time.sleep(0.05)
    return relay

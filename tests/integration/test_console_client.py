"""Issue 22, as a user does it: a console XMPP client adds a SIP contact through the
gateway's XEP-0100 prompt and sees the contact's name.

Real peers: poezio 0.14 (Debian 12) in a tmux session, logged in to the session Prosody
on loopback as juliet; the gateway PROCESS with a user file that gives romeo the display
name "Romeo Montague" (auto-approval of hosted watchers on).

Why poezio: Debian 12's profanity 0.13 fetches vCards but cannot send a jabber:iq:gateway
request; poezio's `/rawxml` sends one and shows the answer, `/add` subscribes, and its
bundled `vcard` plugin (`/vcard <jid>`) shows the vCard's FN as "Name".

Steps, each checked on the captured screen (polling with a deadline; the screen is in
the error on failure):
1. `/rawxml` a jabber:iq:gateway set with ``sip:romeo@sip.localhost``: the answer's
   <jid/> is ``romeo@sip.localhost`` (the translated JID);
2. `/add romeo@sip.localhost`: the contact is in the roster (subscription approved);
3. `/vcard romeo@sip.localhost`: the card shows the name "Romeo Montague" and the SIP
   URI as the phone number a CUSAX client calls.

Client files live in a temporary HOME (XDG config, data and cache dirs there); the
session Prosody offers no TLS, so poezio connects in plain text on loopback
(`force_encryption = false`), and no certificate question can come up. poezio refuses to
run as root: under root (CI containers) it runs as `nobody` (setpriv), with that HOME
outside pytest's private temporary tree and owned by `nobody`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.harness import LOOPBACK, require_binary
from tests.harness.gateway_proc import GatewayProcess
from tests.harness.ports import free_port
from tests.harness.prosody import ProsodyServer
from tests.harness.tmux import TmuxSession
from tests.integration.conftest import Account
from tests.integration.test_contact_card import COMPONENT, LIMIT, ROMEO, config

pytestmark = pytest.mark.integration

PROMPT_IQ = (
    f"<iq type='set' to='{COMPONENT}' id='prompt1'><query xmlns='jabber:iq:gateway'>"
    f"<prompt>sip:{ROMEO}</prompt></query></iq>"
)


def poezio_home(home: Path, acct: Account, prosody: ProsodyServer) -> dict[str, str]:
    """A HOME with poezio's config; the environment to run poezio in."""
    conf_dir = home / ".config" / "poezio"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "poezio.cfg").write_text(
        "[Poezio]\n"
        f"jid = {acct.jid}\n"
        f"password = {acct.password}\n"
        f"custom_host = {LOOPBACK}\n"
        f"custom_port = {prosody.c2s_port}\n"
        "resource = console\n"
        "force_encryption = false\n"
        "ignore_certificate = true\n"
        "plugins_autoload = vcard\n"
        "roster_show_offline = true\n"
        "enable_avatars = false\n"
        "use_bookmarks_method = local\n"
        "save_status = false\n"
        "use_log = false\n",
        encoding="utf-8",
    )
    (conf_dir / "poezio.cfg").chmod(0o600)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }


def unprivileged(argv: list[str], home: Path) -> list[str]:
    """`argv` as is, or under root run as `nobody` owning `home` (poezio refuses root)."""
    if os.geteuid() != 0:
        return argv
    nobody = pwd.getpwnam("nobody")
    for path in (home, *home.rglob("*")):
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    setpriv = require_binary("setpriv", package="util-linux")
    ids = [f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    return [setpriv, *ids, *argv]


async def test_poezio_adds_a_sip_contact_through_the_prompt_and_sees_its_name(
    prosody: ProsodyServer, xmpp_account: object, tmp_path: Path
) -> None:
    require_binary("tmux")
    poezio = require_binary("poezio")
    gw = GatewayProcess(config(prosody, tmp_path, free_port()), tmp_path / "gw", log_level="info")
    gw.start()
    home: Path | None = None
    try:
        gw.wait_for_log(rf"xmpp link {re.escape(COMPONENT)} up", timeout=LIMIT)
        acct: Account = xmpp_account("juliet")  # type: ignore[operator]
        home = Path(tempfile.mkdtemp(prefix="poezio-home-"))
        env = poezio_home(home, acct, prosody)
        argv = unprivileged([poezio], home)
        with TmuxSession(argv, env=env, cwd=str(home)) as term:
            term.wait_for(r"Authentication success", LIMIT)

            # 1. XEP-0100 §6.3: the prompt, answered with the JID to add
            term.type(f"/rawxml {PROMPT_IQ}")
            term.wait_for(rf"<jid>{re.escape(ROMEO)}</jid>", LIMIT)

            # 2. add it: the gateway approves (auto_approve_hosted) and the roster shows it
            term.type("/clear")  # the info buffer (it names romeo in the IQ answer)
            term.wait_for(r"^(?![\s\S]*romeo@)", LIMIT)
            term.type(f"/add {ROMEO}")
            gw.wait_for_log(r"hosted watcher approved", timeout=LIMIT)
            term.wait_for(rf"{re.escape(ROMEO)} accepted your contact proposal", LIMIT)
            term.wait_for(rf"\|\s+{re.escape(ROMEO)}\s", LIMIT)  # its roster line

            # 3. the contact's name, from its vCard (FN)
            term.type(f"/vcard {ROMEO}")
            term.wait_for(rf"vCard of {re.escape(ROMEO)}", LIMIT)  # the plugin's form tab
            term.wait_for(r"Name\s+Romeo Montague\s", LIMIT)  # FN: the user file's name
            term.wait_for(rf"Number\s+sip:{re.escape(ROMEO)}\s", LIMIT)  # RFC 7081 §3.1
    finally:
        if gw.running:
            gw.terminate()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)

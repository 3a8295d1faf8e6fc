#!/usr/bin/env bash
# `make run`: Prosody + the gateway on loopback, in the foreground until Ctrl-C.
# All state lives in .state/demo/ inside the checkout (git-ignored).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state="$root/.state/demo"
venv="$root/.venv"
mkdir -p "$state/prosody/data" "$state/gateway"
bash "$root/scripts/demo-certs.sh" >/dev/null
# The browser demo's JsSIP bundle (pinned; a no-op when built). Without npm the rest
# of the demo still runs; the page then says the bundle is missing.
bash "$root/scripts/web-build.sh" 2>/dev/null \
    || echo "make run: could not build the browser demo's JsSIP bundle (scripts/web-build.sh); the rest runs" >&2

run_as_root=false
[ "$(id -u)" = 0 ] && run_as_root=true
cfg="$state/prosody/prosody.cfg.lua"
sed -e "s|@STATE@|$state|g" -e "s|@RUN_AS_ROOT@|$run_as_root|g" \
    "$root/deploy/demo/prosody.cfg.lua" > "$cfg"

for port in 5222 5347 5060 5061 5066 8080; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "make run: 127.0.0.1:$port is already in use; stop whatever holds it first." >&2
        exit 1
    fi
done

# Demo XMPP accounts, each with its own name as password.
for user in juliet nurse; do
    prosodyctl --config "$cfg" register "$user" localhost "$user" >/dev/null
done

prosody_pid=
gateway_pid=
cleanup() {
    trap - INT TERM EXIT
    [ -n "$gateway_pid" ] && kill -TERM "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null
    if [ -n "$prosody_pid" ]; then
        kill -TERM "$prosody_pid" 2>/dev/null || true
        wait "$prosody_pid" 2>/dev/null || true
    fi
    echo "demo stopped."
}
trap cleanup INT TERM EXIT

prosody --config "$cfg" -F >>"$state/prosody/stdout.log" 2>&1 &
prosody_pid=$!
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/5347) 2>/dev/null && break
    kill -0 "$prosody_pid" 2>/dev/null || { echo "Prosody failed to start; see $state/prosody/prosody.log" >&2; exit 1; }
    sleep 0.1
done

cat <<TXT

  CPIM gateway demo (Prosody + gateway on loopback). Ctrl-C stops both.

  XMPP client:  juliet@localhost / juliet   (or nurse@localhost / nurse)
                server 127.0.0.1 port 5222 (STARTTLS optional, self-signed)
  SIP client:   romeo@sip.localhost / romeo (or mercutio@sip.localhost / mercutio)
                registrar/proxy 127.0.0.1:5060 (udp, tcp) or 127.0.0.1:5061 (tls),
                ws://127.0.0.1:5066/ (SIP over WebSocket, for browsers)
  From SIP, write to sip:juliet@localhost; from XMPP, to romeo@sip.localhost.
  Browser demo: http://127.0.0.1:8080/web/   (JsSIP as romeo over ws://127.0.0.1:5066/)
  Admin API:    http://127.0.0.1:8080/healthz  /readyz
  Logs:         $state/prosody/prosody.log and this terminal

TXT
"$venv/bin/cpim-gateway" run --config "$root/deploy/demo/gateway.toml" &
gateway_pid=$!
wait "$gateway_pid" || true
gateway_pid=

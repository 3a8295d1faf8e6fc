#!/usr/bin/env bash
# Install what the test suite needs, and only what is missing (idempotent).
#
#   apt:  the peers the integration tests run (Prosody, sipp, ejabberd, dnsmasq,
#         baresip, linphone-cli, chromium for the browser tests), openssl and
#         iproute2; python3-venv if no venv module works; nodejs and npm when
#         no npm is on PATH; the console XMPP client poezio, driven through
#         tmux (setpriv, from util-linux, runs it as nobody under root);
#         prometheus for promtool (the alert rules and the Grafana dashboard);
#         postgresql (15 on Debian 12) for the PostgreSQL store's tests, which run
#         their own server (tests/harness/postgres.py: initdb + postgres, as the
#         `postgres` user under root).
#   pip:  this package with its test extras, editable, into .venv.
#   npm:  tests/js (JsSIP, the SIP-over-WebSocket peer): `npm ci` from its lock file;
#         the browser demo's JsSIP bundle (scripts/web-build.sh, pinned by
#         web/package-lock.json).
#
# Non-interactive (DEBIAN_FRONTEND=noninteractive). The distro services of the
# XMPP servers (and PostgreSQL) are never left running: a temporary policy-rc.d forbids starting
# them during installation, and afterwards they are stopped and disabled (with
# systemctl when systemd is PID 1, with service/update-rc.d otherwise), so that
# ports 5222/5269/5280/5347 stay free and the tests run their own instances.
#
# Environment: PYTHON (interpreter for the venv, default python3),
#              VENV (default .venv), SKIP_APT=1 (pip part only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(prosody sip-tester ejabberd dnsmasq-base baresip linphone-cli openssl iproute2 make kamailio chromium)
# nodejs and npm (tests/js: JsSIP under Node; web/: the demo's bundle) are added in
# install_apt when no npm is on PATH: a node that ships its own npm is kept.
APT_PACKAGES+=(poezio tmux util-linux)  # tests/integration/test_console_client.py
# promtool (checks and unit-tests deploy/prometheus/cpim-gateway-rules.yml and the Grafana
# dashboard's queries: tests/integration/test_grafana_metrics.py) ships in `prometheus`
# (19 MB); its server is never left running (SERVICES).
APT_PACKAGES+=(prometheus)
# The PostgreSQL store (issue 21): tests/harness/postgres.py runs initdb and postgres from
# /usr/lib/postgresql/15/bin on a free loopback port; the distro cluster is never left
# running (SERVICES), so port 5432 stays free.
APT_PACKAGES+=(postgresql)
# tests/integration/test_xcap.py: XCAP over HTTP Digest with a second, independent client
APT_PACKAGES+=(curl)
# The mypyc build of the hot pure modules (issue 27; scripts/build-compiled.sh, run by
# `make test`): a C compiler, and the Python headers when the interpreter lacks them
# (python3-dev, added in install_apt).
APT_PACKAGES+=(gcc)
SERVICES=(prosody ejabberd kamailio prometheus postgresql)

log() { printf 'install-deps: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        log "need root for: $*"
        return 1
    fi
}

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

has_candidate() {
    local cand
    cand="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    [ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# -- apt ------------------------------------------------------------------------

POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
OUR_POLICY=0

forbid_service_starts() {
    # invoke-rc.d asks policy-rc.d; exit status 101 means "action forbidden".
    if [ -e "$POLICY" ]; then
        POLICY_BACKUP="$(mktemp)"
        as_root cp -p "$POLICY" "$POLICY_BACKUP"
    fi
    printf '#!/bin/sh\n# written by scripts/install-deps.sh\nexit 101\n' | as_root tee "$POLICY" >/dev/null
    as_root chmod 755 "$POLICY"
    OUR_POLICY=1
}

restore_policy() {
    [ "$OUR_POLICY" -eq 1 ] || return 0
    if [ -n "$POLICY_BACKUP" ]; then
        as_root cp -p "$POLICY_BACKUP" "$POLICY"
        rm -f "$POLICY_BACKUP"
    else
        as_root rm -f "$POLICY"
    fi
    OUR_POLICY=0
}

stop_distro_services() {
    local svc
    for svc in "${SERVICES[@]}"; do
        installed "$svc" || continue
        if [ -d /run/systemd/system ]; then
            as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
        else
            if [ -x "/etc/init.d/$svc" ]; then
                as_root service "$svc" stop >/dev/null 2>&1 || true
            fi
            if command -v update-rc.d >/dev/null 2>&1; then
                as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
            fi
        fi
    done
}

install_apt() {
    local missing=() pkg
    local wanted=("${APT_PACKAGES[@]}")
    if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        wanted+=(python3-venv)
        command -v "$PYTHON" >/dev/null 2>&1 || wanted+=(python3)
    fi
    "$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.isfile(os.path.join(
        sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1 || wanted+=(python3-dev)
    # A node that ships its own npm (e.g. a nodejs build from elsewhere) is kept.
    command -v npm >/dev/null 2>&1 || wanted+=(nodejs npm)
    for pkg in "${wanted[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        log "apt: all of ${wanted[*]} already installed"
        stop_distro_services
        return 0
    fi
    log "apt: installing ${missing[*]}"
    local need_update=0
    for pkg in "${missing[@]}"; do
        has_candidate "$pkg" || need_update=1
    done
    if [ "$need_update" -eq 1 ]; then
        as_root apt-get update -q
    fi
    trap restore_policy EXIT
    forbid_service_starts
    if ! as_root apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        log "apt: install failed; refreshing the package lists once and retrying"
        as_root apt-get update -q
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    restore_policy
    trap - EXIT
    stop_distro_services
    case " ${missing[*]} " in
        *" ejabberd "*) stop_idle_epmd ;;
    esac
}

stop_idle_epmd() {
    # ejabberd's postinst runs `ejabberdctl status`, whose erl starts an epmd daemon
    # that stays behind. The tests never use epmd (ERL_DIST_PORT), so stop it when
    # no Erlang node is registered with it. Socket-activated epmd (systemd) is left alone.
    [ -d /run/systemd/system ] && return 0
    command -v epmd >/dev/null 2>&1 || return 0
    local names
    names="$(epmd -names 2>/dev/null)" || return 0
    if ! grep -q '^name ' <<<"$names"; then
        epmd -kill >/dev/null 2>&1 || true
        log "stopped the idle epmd daemon left by ejabberd's postinst"
    fi
}

# -- venv + pip -----------------------------------------------------------------

install_python() {
    if ! "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1; then
        log "venv: creating $VENV with $PYTHON"
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    # Reinstall only when pyproject.toml changed since the last successful install.
    local stamp="$VENV/.install-deps.sha256" sum
    sum="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] \
        && "$VENV/bin/python" -c 'import gateway, pytest, slixmpp' >/dev/null 2>&1; then
        log "pip: $VENV up to date"
        return 0
    fi
    log "pip: installing -e '.[test]' into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test]"
    printf '%s\n' "$sum" >"$stamp"
}

# -- npm (tests/js) ------------------------------------------------------------

install_npm() {
    # Pinned by tests/js/package-lock.json; install scripts are not run (none is needed:
    # the optional native helpers of the `websocket` package fall back to JavaScript).
    local dir="$ROOT/tests/js" stamp="$ROOT/tests/js/node_modules/.install-deps.sha256" sum
    command -v npm >/dev/null 2>&1 || { log "npm: not installed, tests/js skipped"; return 0; }
    sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then
        log "npm: tests/js up to date"
        return 0
    fi
    log "npm: npm ci in tests/js"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    printf '%s\n' "$sum" >"$stamp"
}

main() {
    if [ "${SKIP_APT:-0}" != "1" ]; then
        install_apt
    fi
    install_python
    install_npm
    if command -v npm >/dev/null 2>&1; then
        bash "$ROOT/scripts/web-build.sh"
    else
        log "npm: not installed, the browser demo's JsSIP bundle skipped"
    fi
    log "done"
}

# Sourcing the script (for testing its functions) does not run it.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi

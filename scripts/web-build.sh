#!/usr/bin/env bash
# Build the browser demo's JsSIP bundle: web/demo/vendor/jssip.min.js.
#
# JsSIP and esbuild come from npm at the versions pinned in web/package-lock.json
# (`npm ci`, install scripts off); the npm package of JsSIP ships CommonJS only, so
# esbuild bundles it into one browser script. The gateway serves it from
# `[admin] web_root` (web/demo); the page never loads code from elsewhere.
# Idempotent: does nothing when the bundle is newer than the lockfile.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/web"
BUNDLE="$WEB/demo/vendor/jssip.min.js"
log() { printf 'web-build: %s\n' "$*" >&2; }

if [ -s "$BUNDLE" ] && [ "$BUNDLE" -nt "$WEB/package-lock.json" ] \
    && [ "$BUNDLE" -nt "$WEB/package.json" ]; then
    log "$BUNDLE up to date"
    exit 0
fi
command -v npm >/dev/null 2>&1 || { log "npm is missing (apt-get install nodejs npm)"; exit 1; }
log "npm ci in $WEB"
(cd "$WEB" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
(cd "$WEB" && npm run --silent build)
log "built $BUNDLE"

#!/usr/bin/env bash
# Build Kamailio's xmpp module with the one-line fix of issue 27 (kamailio issue #4154:
# Debian's xmpp.so crashes on Prosody's stream header, because xstream.c's attribute
# loop dereferences the NULL that ends expat's attribute array) from Debian's source
# package, against the installed kamailio, into build/kamailio/modules/xmpp.so.
#
#   bash scripts/build-kamailio-xmpp.sh        # prints the path of xmpp.so on success
#
# Idempotent and cached: once build/kamailio/modules/xmpp.so exists for the installed
# kamailio version, it only prints the path. Touches Debian's files only through apt:
# one new sources file (deb-src lines, /etc/apt/sources.list.d/cpim-deb-src.sources)
# and the build dependencies, never /usr/lib/.../kamailio/modules.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$ROOT/build/kamailio"
SO="$OUT/modules/xmpp.so"
STAMP="$OUT/version"

if ! command -v kamailio >/dev/null 2>&1; then
    echo "build-kamailio-xmpp: kamailio is not installed (scripts/install-deps.sh)" >&2
    exit 2
fi
VERSION="$(dpkg-query -W -f='${Version}' kamailio)"
if [[ -f "$SO" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
    echo "$SO"
    exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# deb-src lines for Debian 12, in a file of their own, so nothing else changes.
SRC_LIST=/etc/apt/sources.list.d/cpim-deb-src.sources
if ! apt-get source --print-uris kamailio >/dev/null 2>&1; then
    $SUDO tee "$SRC_LIST" >/dev/null <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    $SUDO apt-get update -qq
fi

# The minimal build set for this one module: a C toolchain, bison/flex for the core's
# config generation, expat for the module itself.
NEED=()
for pkg in build-essential dpkg-dev bison flex libexpat1-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || NEED+=("$pkg")
done
if ((${#NEED[@]})); then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${NEED[@]}"
fi

WORK="$OUT/src"
mkdir -p "$WORK" "$OUT/modules"
cd "$WORK"
UPSTREAM="${VERSION%%-*}"
TREE="$(ls -d kamailio-"$UPSTREAM"*/ 2>/dev/null | head -1 || true)"
if [[ -z "$TREE" ]]; then
    apt-get source -qq "kamailio=$VERSION" >/dev/null
    TREE="$(ls -d kamailio-"$UPSTREAM"*/ | head -1)"
fi
cd "$TREE"

# The fix: expat ends the attribute array with NULL; the loop tested *atts[i].
XSTREAM=src/modules/xmpp/xstream.c
if grep -q "while (\*(atts\[i\]) != '\\\\0')" "$XSTREAM"; then
    sed -i "s/while (\*(atts\[i\]) != '\\\\0')/while (atts[i] != NULL)/" "$XSTREAM"
fi
grep -q "while (atts\[i\] != NULL)" "$XSTREAM" || {
    echo "build-kamailio-xmpp: the fix did not apply to $XSTREAM" >&2
    exit 1
}

# Only the core's generated config and this one module.
make -C src cfg include_modules="xmpp" >/dev/null
make -C src/modules/xmpp -j2 >/dev/null
cp src/modules/xmpp/xmpp.so "$SO"
echo "$VERSION" >"$STAMP"
echo "$SO"

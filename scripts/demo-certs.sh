#!/usr/bin/env bash
# Self-signed certificate for the loopback demo (localhost, sip.localhost,
# 127.0.0.1), made once into .state/demo/tls/. Idempotent.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="$root/.state/demo/tls"
if [ -s "$dir/demo.crt" ] && [ -s "$dir/demo.key" ]; then exit 0; fi
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
    -subj "/CN=sip.localhost" \
    -addext "subjectAltName=DNS:localhost,DNS:sip.localhost,IP:127.0.0.1" \
    -keyout "$dir/demo.key.tmp" -out "$dir/demo.crt.tmp" 2>/dev/null
chmod 600 "$dir/demo.key.tmp"
mv "$dir/demo.key.tmp" "$dir/demo.key"
mv "$dir/demo.crt.tmp" "$dir/demo.crt"
echo "demo certificate: $dir/demo.crt"

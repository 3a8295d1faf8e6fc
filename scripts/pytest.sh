#!/usr/bin/env bash
# Run pytest from the venv; "no tests ran" (exit 5) is a failure, not a pass.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
"$root/.venv/bin/pytest" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest ran no tests: failing" >&2
    exit 1
fi
exit "$rc"

#!/usr/bin/env bash
# The unit tests of the mypyc-compiled modules (issue 27), run against the compiled build:
# build/mypyc (scripts/build-compiled.sh, incremental) first on the path, pytest's
# importlib mode (its default would put the checkout, and so the pure sources, first),
# and CPIM_EXPECT_COMPILED=1, under which tests/unit/test_compiled_build.py fails unless
# every module of gateway.compiled.MODULES comes from a compiled extension.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${CPIM_MYPYC_DEST:-$ROOT/build/mypyc}"
cd "$ROOT"
CPIM_MYPYC_DEST="$DEST" bash scripts/build-compiled.sh
# The unit tests whose subject is a compiled module (parser, headers, URIs, messages,
# serializer, validation, UA checks, transactions, the user-agent core, the memo, the
# neutral model, JIDs, addresses, CPIM), plus the guard.
TESTS=(
    test_compiled_build
    test_sip_parser test_sip_headers test_sip_uri test_sip_message_fast
    test_sip_validate test_sip_ua_properties test_rfc4475 test_sip_grammar_properties
    test_sip_properties test_fuzz_sip test_parser_names_memo test_build_message
    test_sip_transactions test_transaction_compact test_useragent test_client_fastpaths
    test_memo test_model test_jid test_addresses test_address_properties test_cpim
)
paths=()
for name in "${TESTS[@]}"; do
    paths+=("tests/unit/$name.py")
done
CPIM_EXPECT_COMPILED=1 PYTHONPATH="$DEST:$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
    bash scripts/pytest.sh -q -p no:cacheprovider --import-mode=importlib "$@" "${paths[@]}"

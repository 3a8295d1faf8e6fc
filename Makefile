# The two commands of the README: `make run` and `make test`.
# Both install what is missing first (apt packages as root, the venv with pip).

SHELL := /bin/bash
VENV  ?= .venv
PY    := $(VENV)/bin/python

.PHONY: run run-cluster test deps lint unit integration bench bench-parser clean-state compiled test-compiled

deps:
	bash scripts/install-deps.sh

## make run: Prosody + gateway on loopback (the embedded demo), until Ctrl-C.
run: deps
	bash scripts/run-demo.sh

## make run-cluster: PostgreSQL, ejabberd, Kamailio's dispatcher and two gateway
## instances on loopback (docs/cluster.md), until Ctrl-C.
run-cluster: deps
	$(PY) scripts/run_cluster.py

## make test: the whole suite, unit and integration, plus ruff and mypy.
test: deps
	bash scripts/demo-certs.sh >/dev/null
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	bash scripts/pytest.sh
	bash scripts/test-compiled.sh

## make compiled: the optional mypyc build of the hot pure modules into build/mypyc
## (docs/performance.md, "mypyc (issue 27)"); test-compiled: their unit tests against it.
compiled: deps
	bash scripts/build-compiled.sh

test-compiled: deps
	bash scripts/test-compiled.sh

unit: deps
	bash scripts/pytest.sh -m "unit or component"

integration: deps
	bash scripts/pytest.sh -m "integration"

lint: deps
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

## make bench: every benchmark scenario (bench/README.md); bench-parser: the parser alone.
bench: deps
	$(PY) -m bench.run

bench-parser: deps
	$(PY) -m bench.run parser

clean-state:
	rm -rf .state

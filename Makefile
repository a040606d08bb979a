# teslemetry-pipeline — every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install system-deps jars spark-jars postgres browser run test test-fast test-fault test-cluster lint typecheck bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

system-deps:
	@bash deploy/ensure-system-deps.sh

jars: install system-deps
	@$(BIN)/tpipe broker --resolve-only >/dev/null

## the lake read by Spark: Iceberg's Spark runtime and the JDBC drivers (deploy/spark/pom.xml) into .cache/spark
spark-jars: install system-deps
	@$(BIN)/python -m tests.support.spark >/dev/null

postgres:
	@bash deploy/postgres/ensure-postgres.sh

## Debian's chromium for the console's browser tests (Playwright drives /usr/bin/chromium)
browser:
	@bash deploy/ensure-chromium.sh

## make run: local Kafka broker + receiver + workers + the console, with embedded defaults (state in ./var)
run: jars
	$(BIN)/tpipe run

## make test: the whole suite against a real broker (and real SQLite/PostgreSQL)
test: jars spark-jars postgres browser
	$(BIN)/pytest -q

test-fault: jars
	$(BIN)/pytest -q -m fault

## make test-cluster: the tests on a real 3-node Kafka cluster (they are part of make test too)
test-cluster: jars postgres
	$(BIN)/pytest -q -m cluster -s

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: jars
	$(BIN)/python -m bench.run

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

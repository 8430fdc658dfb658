# One place for the project's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test unit integration bench lint clean

$(BIN)/cityscore: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/cityscore

# The whole system on this machine: local Kafka, SQLite, ingest, scorer, notifier and
# simulated departments. Installs Java and Maven from Debian first if missing. Ctrl-C stops it.
demo:
	bash deploy/debian-packages.sh demo
	$(MAKE) install
	$(BIN)/cityscore demo

# The whole suite. Kafka and PostgreSQL come from KAFKA_BOOTSTRAP_SERVERS /
# DATABASE_URL when set, testcontainers when Docker answers, else local servers
# that the test fixtures start themselves (deploy/kafka, deploy/postgres).
# Plugins are named rather than autoloaded: pytest rewrites the modules of every
# autoloaded plugin, and rewriting schemathesis's trips a CPython 3.11 compiler bug.
PYTEST := PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/pytest -p pytest_timeout

test:
	bash deploy/debian-packages.sh test
	$(MAKE) install
	$(PYTEST) -q

unit: install
	$(PYTEST) -q tests/unit

integration: install
	$(PYTEST) -q tests/integration

bench: install
	$(BIN)/python bench/bench_score.py

clean:
	rm -rf $(VENV) bench/out .pytest_cache

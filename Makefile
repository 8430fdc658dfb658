# One place for the project's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install lock demo test unit integration e2e deploy-check bench lint clean

# Exactly the versions in requirements.lock, each checked against its hashes (the Dockerfile
# installs the same pins); then the project itself, whose dependencies are all in the lock.
$(BIN)/cityscore: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $@

install: $(BIN)/cityscore

# After changing pyproject.toml's dependencies: pins what is new and keeps every other pin
# (UPGRADE=1 moves everything to the newest versions). For every platform and Python 3.11+,
# the test extra included, with hashes.
lock: install
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml --extra test --generate-hashes --universal --python-version 3.11 \
		$(if $(UPGRADE),--upgrade) --quiet -o requirements.lock

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

e2e: install
	$(PYTEST) -q tests/e2e

deploy-check: install
	$(PYTEST) -q tests/deploy

bench: install
	$(BIN)/python bench/bench_score.py

clean:
	rm -rf $(VENV) bench/out .pytest_cache

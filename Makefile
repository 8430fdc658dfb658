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
# simulated departments. Ctrl-C stops it.
demo: install
	$(BIN)/cityscore demo

# The whole suite. Kafka and PostgreSQL come from KAFKA_BOOTSTRAP_SERVERS /
# DATABASE_URL when set, testcontainers when Docker answers, else local servers
# that the test fixtures start themselves (deploy/kafka, deploy/postgres).
test: install
	$(BIN)/pytest -q

unit: install
	$(BIN)/pytest -q tests/unit

integration: install
	$(BIN)/pytest -q tests/integration

bench: install
	$(BIN)/python bench/bench_score.py

clean:
	rm -rf $(VENV) bench/out .pytest_cache

# The two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench clean services-stop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when the project's dependencies change.
# The demo writes an Iceberg table, so the plain install takes the iceberg extra.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[iceberg]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/trunkline demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

# Services (PostgreSQL, Apache Kafka) are started by pytest session fixtures through
# scripts/services/* (or before, by .ci/run), and stopped by the pid they started.
test: lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed-test
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/trunkline perf hub --json

services-stop:
	-scripts/services/kafka stop
	-scripts/services/postgres stop

clean: services-stop
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

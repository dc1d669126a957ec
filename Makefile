# Developer and CI entry points. `make venv` once, then `make test` / `make lint`.
# Tests that need engines use the local nodes (see tests/conftest.py and docs/nodes.md).

PYTHON ?= python3
VENV := .venv
PYTEST_ARGS ?=

.PHONY: venv test lint

venv: $(VENV)/.installed

# Reinstalls only when the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[all]'
	touch $@

test:
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

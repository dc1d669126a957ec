# Developer and CI entry points: `make demo` runs the OpenSearch path end to end, `make test` the suite,
# `make lint` ruff (lint and format) and mypy (configured in pyproject.toml), `make check-install` the
# plain install (docker/Dockerfile's `pip install .`, no extras) in a fresh venv.
# Tests that need engines use the local nodes (see tests/conftest.py and docs/nodes.md).

PYTHON ?= python3
VENV := .venv
PYTEST_ARGS ?=

.PHONY: venv demo test lint check-install

venv: $(VENV)/.installed

# Reinstalls only when the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[all]'
	touch $@

# The README's first command: a local OpenSearch node, the connector, indexing, setup, a reranked search.
demo: venv
	bash examples/demo.sh

test: venv
	$(VENV)/bin/python -m pytest -q -rs -p no:cacheprovider $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# tests/test_base_install.py (marker `packaging`): every command's help, what runs without an engine, what
# needs an extra exiting 4, the image's command answering /health and /ready.
check-install: venv
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -m packaging tests/test_base_install.py

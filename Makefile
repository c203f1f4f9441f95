# pecgateway: the developer's commands. `make check` is what CI runs (through .ci/run).
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
SCHEMAS_FROM ?= ../shared/corpus/xsd
export PECGATEWAY_TEST_SCHEMAS ?= $(abspath $(SCHEMAS_FROM))

.PHONY: venv test lint typecheck check demo bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(VENV)/bin/ruff check pecgateway tests bench
	$(VENV)/bin/ruff format --check pecgateway tests bench

typecheck: venv
	$(VENV)/bin/mypy

test: venv
	$(PY) -m coverage run -m pytest -q -p no:cacheprovider
	$(PY) -m coverage report --fail-under=85

check: lint typecheck test

bench: venv
	$(PY) bench/run.py

demo: venv
	$(PY) -m pecgateway.sandbox.demo --dir demo --schemas-from "$(SCHEMAS_FROM)"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage demo

# pecgateway: the developer's and the demo's commands. `make check` is what CI runs (through .ci/run).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
SCHEMAS_FROM ?= ../shared/corpus/xsd
STYLESHEETS_FROM ?= ../shared/corpus/other
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := dovecot-imapd dovecot-lmtpd openssl python3-venv
export PECGATEWAY_TEST_SCHEMAS ?= $(abspath $(SCHEMAS_FROM))

.PHONY: system-deps venv test lint typecheck check demo bench clean

# Debian packages the sandbox and the tests need (Dovecot is the sandbox's IMAP server).
system-deps:
	@missing=""; \
	command -v dovecot >/dev/null 2>&1 || missing="$$missing dovecot-imapd dovecot-lmtpd"; \
	command -v openssl >/dev/null 2>&1 || missing="$$missing openssl"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

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

test: system-deps venv
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest -q -p no:cacheprovider
	$(PY) -m coverage combine -q
	$(PY) -m coverage report --fail-under=95

check: lint typecheck test

bench: venv
	$(PY) bench/run.py

demo: system-deps venv
	$(PY) -m pecgateway.sandbox.demo --dir demo --schemas-from "$(SCHEMAS_FROM)" \
	    --stylesheets-from "$(STYLESHEETS_FROM)"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage .coverage.* demo sb *.egg-info

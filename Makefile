# LeadPulse: `make demo` runs the pipeline end to end on a local broker; `make test` runs
# the checks and all tests. Both install what they need (virtualenv, packages, Kafka jars).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test lint unit integration bench setup kafka clean

demo: setup kafka
	$(BIN)/leadpulse demo

test: setup kafka lint
	$(BIN)/pytest -q -p no:cacheprovider tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit tests/agents

integration: setup kafka
	$(BIN)/pytest -q tests/integration

bench: setup kafka
	$(BIN)/python -m bench.core
	$(BIN)/python -m bench.pipeline

setup: $(STAMP)

$(STAMP):
	@if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "LeadPulse needs Python 3.11 (python3.11 on PATH, or PYTHON=/path/to/python3.11 make ...)" >&2; exit 1; fi
	"$(PYTHON)" -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# setuptools' editable install prints a long warning meant for packagers, not for users
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

kafka:
	@deploy/kafka/broker.sh fetch

clean:
	rm -rf $(VENV) .leadpulse deploy/kafka/.data

# LeadPulse: `make demo` runs the pipeline end to end on a local broker; `make test` runs
# the checks and all tests. Both install what they need (virtualenv, packages, Kafka jars).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: demo test lint unit integration bench setup kafka ops-tools browser clean constraints audit

demo: setup kafka
	$(BIN)/leadpulse demo

# In two processes (pytest-xdist), each test file whole in one of them (its module fixtures are
# made once) and each process with its own session broker: most integration tests wait (worker
# start-up, group joins, injected outages), so two of them share 2 cores well.
# TEST_PROCESSES=0 runs them in this process, one after the other.
TEST_PROCESSES ?= 2
test: setup kafka ops-tools browser lint
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_PROCESSES) --dist loadfile tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: setup ops-tools
	$(BIN)/pytest -q tests/unit tests/agents

integration: setup kafka ops-tools browser
	$(BIN)/pytest -q tests/integration

# --compiled: each also measures the compiled core (the build `make setup` made) against the pure code.
bench: setup kafka
	$(BIN)/python -m bench.core --compiled
	$(BIN)/python -m bench.replay --compiled
	$(BIN)/python -m bench.pipeline --compiled --workers 2
	$(BIN)/python -m bench.latency --rates 1000 2000 --seconds 20
	$(BIN)/python -m bench.restore

# The compiled core (leadpulse/core.py): built once per change of the sources where a C
# compiler exists, else one line says that the pure Python core will run, and why.
setup: $(STAMP)
	@$(BIN)/python -m leadpulse.core build

$(STAMP):
	@if [ -z "$(PYTHON)" ] || ! "$(PYTHON)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then \
	  echo "LeadPulse needs Python 3.11 (python3.11 on PATH, or PYTHON=/path/to/python3.11 make ...)" >&2; exit 1; fi
	"$(PYTHON)" -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# setuptools' editable install prints a long warning meant for packagers, not for users
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

# Re-pin every package after a change to pyproject.toml: a fresh resolve, written to constraints.txt.
constraints:
	rm -rf .venv-pin && "$(PYTHON)" -m venv .venv-pin
	.venv-pin/bin/pip install -q -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .venv-pin/bin/pip freeze --exclude-editable; } > constraints.new
	mv constraints.new constraints.txt; rm -rf .venv-pin

# Known vulnerabilities of the pinned packages (pip-audit in its own virtualenv). --strict: a
# package the vulnerability service cannot look up fails the audit instead of passing unchecked.
audit:
	test -x .venv-audit/bin/pip-audit || { "$(PYTHON)" -m venv .venv-audit && .venv-audit/bin/pip install -q pip-audit; }
	.venv-audit/bin/pip-audit --strict --progress-spinner off -r constraints.txt

kafka:
	@deploy/kafka/broker.sh fetch

# promtool and prometheus for the alert rules' tests and the real-scrape test; kubeconform,
# kustomize and Kubernetes' JSON schemas for the manifests' (once per machine and version).
ops-tools:
	@deploy/ops-tools.sh prometheus
	@deploy/ops-tools.sh kubernetes

# The site-tracking tests' browser side: the SDKs pinned in tests/browser/package-lock.json
# (npm ci, redone only when the lock changes) and Debian's Chromium (installed when root).
# Neither is required: without them those tests are skipped with one line saying why.
browser:
	@if ! command -v npm >/dev/null; then echo "npm not found: the browser tests will be skipped"; \
	elif [ ! tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ]; then \
	  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) || echo "npm ci failed: the browser tests will be skipped"; fi
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; } \
	      || echo "apt-get could not install chromium: the browser tests will be skipped"; \
	  else echo "chromium not installed (apt-get install chromium, as root): the browser tests will be skipped"; fi; fi

clean:
	rm -rf $(VENV) .venv-audit .leadpulse deploy/kafka/.data tests/browser/node_modules

# The two commands of the README: `make up` (the whole local stack, platform then ML) and `make test`.
# Both install what is missing into .venv first. Everything else here is a convenience around them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: up down status ui test lint bench install

# what `make up` needs; the test tools (and the whole venv compiled) only for test, lint and bench
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	scripts/install-python-packages $(BIN)/python
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	scripts/install-python-packages $(BIN)/python dev
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

# The stack's processes write the bytecode cache of what they import (the install compiles none of it), even
# where the shell sets PYTHONDONTWRITEBYTECODE: pip would have compiled the venv at install anyway, and the
# checkout's own caches are ignored by git. Without a cache every process compiles its imports, every time.
up: $(STAMP)  ## bring up (or heal) the platform, then the ML location
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/platformctl up

down:  ## stop every service; data stays in the state directory
	$(BIN)/platformctl down

status:
	$(BIN)/platformctl status

ui: $(STAMP)  ## where the Dagster UI answers (`make up` runs it, with the daemon, until `make down`)
	$(BIN)/platformctl ui

test: $(DEV_STAMP)  ## unit, integration (real services) and end-to-end tests
	scripts/system-packages test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# as `make up` runs: the bytecode cache written (else every process they start compiles the code again)
BENCH := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python

bench: $(DEV_STAMP)  ## the benchmarks; the inference one needs Debian's wrk
	scripts/system-packages bench
	$(BENCH) benchmarks/definitions_load.py
	$(BENCH) benchmarks/install_vs_pip.py
	$(BENCH) benchmarks/first_command.py
	$(BENCH) benchmarks/platform_cold_start.py
	$(BENCH) benchmarks/make_up_noop.py
	$(BENCH) benchmarks/inference_vs_mlflow_serve.py
	$(BENCH) benchmarks/drift_vs_evidently.py

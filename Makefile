# Self-documenting Makefile: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3.11
VENV ?= .venv
# torch first, from an exact spec: on this project's machines torch==2.13.0 is a local CPU
# build; a looser spec lets pip download a multi-GB CUDA build. Override elsewhere.
TORCH_SPEC ?= torch==2.13.0
HOST ?= 127.0.0.1
PORT ?= 8000
# The second test pass runs on real engines.
TEST_DATABASE_URL ?= postgres://$(shell id -un)@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0
PYTEST_ARGS ?=
# Each pass spreads its test files over worker processes (pytest-xdist): most tests wait on the
# servers, browsers and training they start, so two workers per pass keep the cores busy. A
# file stays on one worker (its module fixtures, such as a started site, are made once).
# `make test PYTEST_WORKERS=0` runs each pass in one process.
PYTEST_WORKERS ?= 2
PYTEST_XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# pip takes torch (it knows where the local build lies); uv installs the rest, several times
# faster than pip, and keeps the installed torch (TORCH_SPEC is passed again so that no other
# package can pull a different build).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(VENV)/bin/uv pip install --python $(PY) --quiet -e ".[all,dev]" "$(TORCH_SPEC)"
	@touch $@

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: install
install: $(STAMP) ## Create .venv (if missing) and install the project with every extra

.PHONY: run
# The demo runs with DEBUG (and so the settings' public demo key); nothing else does.
# daphne prints its request lines (query strings, so ?token=, included) to stdout: redacted.
run: export DEBUG ?= 1
run: $(STAMP) ## Run the demo site (with its demo agent and job worker) on SQLite at http://$(HOST):$(PORT)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py demo_setup
	@$(PY) manage.py demo_agent --url http://$(HOST):$(PORT) & agent=$$!; \
		$(PY) manage.py db_worker & worker=$$!; \
		trap 'kill $$agent $$worker 2>/dev/null' EXIT INT TERM; \
		$(PY) -m daphne -b $(HOST) -p $(PORT) config.asgi:application | $(PY) -m sessions_app.logs

.PHONY: test
test: $(STAMP) ## Run the whole suite: SQLite + in-memory layer, and beside it PostgreSQL + Redis
	@# The passes share no database, channel layer or port, and each spends much of its time
	@# waiting on servers it started: side by side they take little longer than the second.
	@logs=$$(mktemp -d); \
	echo "The second pass (PostgreSQL + Redis) runs beside this one; its output follows."; \
	( $(MAKE) --no-print-directory test-real >$$logs/real 2>&1; echo $$? >$$logs/rc ) & \
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS); first=$$?; wait; \
	printf '\n=== second pass: PostgreSQL + Redis\n'; cat $$logs/real; second=$$(cat $$logs/rc); \
	rm -rf $$logs; \
	[ $$first -eq 0 ] && [ $$second -eq 0 ] || { echo "failed: first pass $$first, second $$second"; exit 1; }

.PHONY: test-default
test-default: $(STAMP) ## Only the first pass (SQLite + in-memory channel layer)
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

.PHONY: test-real
test-real: $(STAMP) ## Only the second pass (PostgreSQL + Redis; skips if they are not running)
	TEST_ENGINES=real DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		CHANNEL_LAYER_PREFIX=test$$$$ $(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

.PHONY: screenshots
screenshots: $(STAMP) ## Rewrite docs/screenshots/ from the browser tests (needs chromium)
	SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest tests/e2e/test_browser_chat.py tests/e2e/test_browser_mlexec.py

.PHONY: lint
lint: $(STAMP) ## ruff (lint and format check) and mypy (strict on the pure modules)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy sessions_app mlexec_app

.PHONY: format
format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: bench
bench: $(STAMP) ## Run the benchmarks (needs PostgreSQL and Redis); results in bench/README.md
	$(PY) -m pip install --quiet -e ".[bench]"
	$(PY) -m bench

.PHONY: docs
docs: ## Where the documentation is
	@echo "Documentation is Markdown under docs/; start at docs/index.md"

.PHONY: clean
clean: ## Remove the virtual environment and local databases
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm

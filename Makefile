# The README's commands. Each installs what it needs on a fresh machine (uv via pip if absent, then
# `uv sync --frozen` against uv.lock); repeated runs reuse the environment.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_WORKERS ?= 2

.PHONY: setup demo test test-slow test-all lint bench clean

setup: .venv/.synced

.venv/.synced: pyproject.toml uv.lock $(wildcard packages/*/pyproject.toml)
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q uv
	$(UV) sync --frozen
	@touch $@

demo: setup
	$(UV) run --frozen --no-sync nft matrix

# one pytest job per package (scripts/test_jobs.py); `make test JOBS="vision nlg"` runs some of them
test: setup
	PYTEST_WORKERS=$(PYTEST_WORKERS) $(UV) run --frozen --no-sync python scripts/test_jobs.py $(JOBS)

# each task's embedded default against its bar (tests/defaults; about 25 minutes on 2 cores from an empty cache)
test-slow: setup
	$(UV) run --frozen --no-sync pytest -m slow -s -p no:cacheprovider tests/defaults

test-all: setup
	$(UV) run --frozen --no-sync pytest -n $(PYTEST_WORKERS) tests

lint: setup
	$(UV) run --frozen --no-sync ruff check packages tests benchmarks

clean:
	rm -rf .venv .pytest_cache .hypothesis

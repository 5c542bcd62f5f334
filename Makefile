# Everything installs into .venv from the pinned pyproject; each target works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make demo PORT=8100` serves the demo on another port
PORT ?= 8000

.PHONY: demo test lint check-migrations bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kassa demo --port $(PORT)

# The suite on both cores (pytest-xdist): each worker process has its own PostgreSQL
# database and ports; a file's tests stay on one worker, sharing its fixtures.
# `make test PYTEST_WORKERS=0` runs it in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/complexity.py

check-migrations: $(STAMP)
	$(BIN)/python -m kassa.storage.migrate_check

# `make bench` prints one table (kassa beside its ceiling, both databases) and the scaling
# table; `make bench BENCH_ARGS=--quick` is a smoke run. See bench/README.md.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/suite.py $(BENCH_ARGS)

# `make screenshots` writes the browser tests' screenshots into docs/screenshots/ (a plain
# `make test` writes them to pytest's temporary directories); see tests/browser/support.py
.PHONY: screenshots
screenshots: $(STAMP)
	KASSA_SCREENSHOTS=1 $(BIN)/python -m pytest -p no:randomly tests/browser

# `make demo` and `make test` each create .venv when it is missing, install graphmill into it, then run.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch is pinned (==2.13.0, CPU build) in pyproject.toml; pip takes it from this machine's disk.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[test,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/graphmill demo --out out/demo

# The suite runs on TEST_WORKERS pytest-xdist workers (one per core of the 2-core CI machine). --dist loadgroup
# spreads tests one by one but keeps each xdist_group on one worker: the tests of a module sharing a
# module-scoped fixture (grouped by tests/conftest.py) and the "processes" group of tests that must not run
# beside one another. TEST_WORKERS=0 runs everything in one process.
TEST_WORKERS ?= 2
PYTEST_XDIST := -n $(TEST_WORKERS) --dist loadgroup

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_XDIST)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_XDIST) -m 'not slow'

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_io.py

clean:
	rm -rf $(VENV) out .pytest_cache

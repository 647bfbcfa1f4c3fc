# Two commands do all the set-up: `make demo` runs the demo, `make test` runs the checks and tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# torch is pinned and installed first so that pip takes the CPU build instead of a multi-GB CUDA one.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/rsn2 demo

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy

# The fast suite by default; FULL=1 (what CI runs) adds the tests marked slow. The test files are spread
# over one pytest-xdist worker per core (JOBS=1: one process); --durations lists the slowest tests.
JOBS ?= auto
test: lint
	$(BIN)/python -m pytest $(if $(FULL),,-m "not slow") -n $(JOBS) --dist loadfile --durations=25

# Every speed, memory and size ratio of docs/performance.md, measured side by side (about 15 minutes: the wall time ends latest.md).
bench: setup
	$(BIN)/python -m benchmarks --json docs/performance/latest.json --markdown docs/performance/latest.md

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis

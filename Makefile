# Two commands for a new user: `make run` (the whole system) and `make test` (the tests).
# Both create .venv and install the project into it first; nothing is installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test check lint typecheck bench bench-worker wrk scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,embedded]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/activation-dev

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

# The activation endpoint against a bare endpoint and the design's floor, at half load and at
# twice its capacity (bench/run.py; a few minutes). Needs wrk: `make wrk` installs it.
bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "make bench needs wrk: run 'make wrk' (as root)" >&2; exit 2; }
	$(BIN)/python bench/run.py

# The worker's ingest rate: stream entries into PostgreSQL per second.
bench-worker: $(STAMP)
	$(BIN)/python bench/worker_bench.py

# The HTTP load generator of `make bench`, from the distribution's packages (Debian, Ubuntu).
wrk:
	apt-get update -q
	apt-get install -y -q wrk
# The fraud side end to end at scale; options as SCALE_ARGS, e.g.
# make scale SCALE_ARGS="--keys 20000 --days 45"
scale: $(STAMP)
	$(BIN)/python bench/scale.py $(SCALE_ARGS)

clean:
	rm -rf $(VENV) build .dev .pytest_cache .mypy_cache .ruff_cache

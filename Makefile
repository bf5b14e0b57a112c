# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.sectune-installed

.PHONY: setup demo test test-slow lint typecheck bench clean

setup: $(STAMP)

# torch is installed first and pinned so that a CPU machine takes the CPU wheel, not a multi-GB CUDA build.
# pip lists what it collects (no -q, no bars: carriage returns in a log); heartbeat.sh adds a line every 20 s
# while pip installs in silence.
PIP := $(PY) -m pip --disable-pip-version-check
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	scripts/heartbeat.sh $(PIP) install --progress-bar off torch==2.13.0
	scripts/heartbeat.sh $(PIP) install --progress-bar off -e '.[all,dev]'
	$(PY) -m pip check
	touch $(STAMP)

demo: setup
	$(VENV)/bin/sectune demo --out demo-out

test: setup
	$(PY) -m pytest -q -n 2

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: setup
	$(VENV)/bin/mypy

# sectune against its peers, one table of ratios (bench-out/bench.json); run it on a quiet machine.
bench: setup
	$(VENV)/bin/sectune bench --out bench-out

clean:
	rm -rf demo-out .pytest_cache .ruff_cache .mypy_cache

# intformer: the two commands a newcomer needs.
#   make demo   set up, generate the default accelerator and run the digits ViT on it
#   make test   set up, run the whole test suite on Icarus and Verilator

PYTHON ?= python3
VENV   ?= .venv
JOBS   ?= 2
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.intformer-installed

.PHONY: setup demo test test-slow lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,formal]'
	touch $(STAMP)

setup: $(STAMP)
	scripts/ensure-simulators.sh

demo: setup
	$(VENV)/bin/intformer presets
	$(VENV)/bin/intformer generate --preset default --out build/demo
	$(VENV)/bin/intformer run --preset default --images 5

test: setup
	$(PY) -m pytest -n $(JOBS) -m "not slow" --durations=10 tb

test-slow: setup
	$(PY) -m pytest -n $(JOBS) -m slow --durations=10 tb

lint: setup
	$(VENV)/bin/ruff check hw gen sw boards tb scripts

clean:
	rm -rf build

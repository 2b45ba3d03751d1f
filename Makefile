# Two entry points: `make quickstart` (install, then prepare -> train -> evaluate on data/sample)
# and `make test` (install with test tools, then the whole test suite). Both build .venv/ first.
PYTHON ?= python3
VENV ?= .venv
# torch is installed on its own, first: left to pip as a dependency it would pull the multi-GB CUDA
# build onto CPU machines. On a GPU machine: `make quickstart TORCH=torch`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install install-dev quickstart test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	touch $@

install: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[model]"

install-dev: $(VENV)/.torch
	$(BIN)/python -m pip install --quiet -e ".[dev,model]"

quickstart: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/quickstart.sh

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python -m pip install --quiet -e ".[bench]"

clean:
	rm -rf $(VENV) checkpoints/quickstart

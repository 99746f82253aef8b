"""GPU check: every detector trained on weld on a GPU, its scores against the CPU's.

    make gpu-check                      # on a GPU machine (see tests/benchmarks/gpu_check.sh)
    python tests/benchmarks/gpu_check.py --device cpu --detectors padim --limit 12   # dry run

For each detector at its defaults (256² weld images, tests/data/weld):
- fit on DEVICE (seconds), and on the CPU with the same seed (seconds);
- inference parity: the GPU-fitted model's test scores on the GPU against the same
  weights on the CPU (largest relative difference: TF32 and kernel choice are the only
  causes, so it bounds what a GPU-trained model does when a CPU line serves it);
- training parity: image AUROC of the GPU-fitted and the CPU-fitted model, and the
  correlation of their scores (learning on a GPU takes other kernels, so weights differ);
- predict ms/img on DEVICE at batch 1 and batch 32.
It writes one JSON (default results/gpu-check.json) and exits 1 when inference parity is
worse than INFERENCE_RTOL or the two AUROCs differ by more than AUROC_TOLERANCE.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.detectors import DETECTORS, create
from anomalyops.components.detectors.device import resolve_device
from anomalyops.components.evaluation.metrics import auroc

HERE = Path(__file__).resolve().parent
WELD = HERE.parents[1] / "tests" / "data" / "weld"
INFERENCE_RTOL = 1e-2  # same weights, GPU against CPU: relative to the score range
AUROC_TOLERANCE = 0.03  # GPU-fitted against CPU-fitted model, image AUROC
TIMED_IMAGES = 32


def timed_predict(detector, images: np.ndarray, batch: int) -> float:
    """ms per image at BATCH, after one warm-up batch (CUDA kernels load lazily)."""
    detector.predict(images[:batch], batch_size=batch)
    started = time.perf_counter()
    detector.predict(images, batch_size=batch)  # .cpu() inside waits for the GPU
    return round((time.perf_counter() - started) * 1000 / len(images), 2)


def check(kind: str, train, test, device: torch.device) -> dict:
    torch.manual_seed(0)
    started = time.perf_counter()
    on_device = create(kind).to(device).fit(train.images, progress=False)
    fit_device = time.perf_counter() - started
    device_scores = on_device.predict(test.images).scores
    timed = np.concatenate([test.images] * (TIMED_IMAGES // len(test.images) + 1))[:TIMED_IMAGES]
    batch_1, batch_32 = timed_predict(on_device, timed, 1), timed_predict(on_device, timed, 32)
    same_weights = on_device.to("cpu").predict(test.images).scores
    spread = float(np.ptp(same_weights)) or 1.0
    inference_gap = float(np.abs(device_scores - same_weights).max() / spread)
    started = time.perf_counter()
    on_cpu = create(kind).to("cpu").fit(train.images, progress=False)
    fit_cpu = time.perf_counter() - started
    cpu_scores = on_cpu.predict(test.images).scores
    device_auroc, cpu_auroc = auroc(test.labels, device_scores), auroc(test.labels, cpu_scores)
    return {
        "detector": kind,
        "fit_s_device": round(fit_device, 2),
        "fit_s_cpu": round(fit_cpu, 2),
        "predict_ms_per_image_batch1": batch_1,
        "predict_ms_per_image_batch32": batch_32,
        "inference_max_relative_gap": inference_gap,
        "image_auroc_device_fit": round(device_auroc, 4),
        "image_auroc_cpu_fit": round(cpu_auroc, 4),
        "score_correlation_device_vs_cpu_fit": round(
            float(np.corrcoef(device_scores, cpu_scores)[0, 1]), 4
        ),
        "passed": inference_gap <= INFERENCE_RTOL
        and abs(device_auroc - cpu_auroc) <= AUROC_TOLERANCE,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=HERE, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None  # a copied tree without .git


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data", type=Path, default=WELD)
    parser.add_argument("--detectors", default=",".join(sorted(DETECTORS)))
    parser.add_argument("--limit", type=int, help="at most this many train and test images")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gpu-check.json")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    kinds = args.detectors.split(",")
    unknown = sorted(set(kinds) - set(DETECTORS))
    if unknown:
        parser.error(f"unknown detectors {unknown}; known: {', '.join(sorted(DETECTORS))}")
    dataset = FolderDataset(args.data)
    train = dataset.load_train((256, 256), progress=False)
    test = dataset.load_test((256, 256), progress=False)
    if args.limit:
        train.images = train.images[: args.limit]
        keep = np.r_[np.flatnonzero(test.labels == 0)[: args.limit // 2],
                     np.flatnonzero(test.labels == 1)[: args.limit // 2]]  # fmt: skip
        test.images, test.labels = test.images[keep], test.labels[keep]
    rows = []
    for kind in kinds:
        rows.append(check(kind, train, test, device))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu_threads": torch.get_num_threads(),
        "data": str(args.data),
        "train_images": len(train.images),
        "test_images": len(test.images),
        "inference_rtol": INFERENCE_RTOL,
        "auroc_tolerance": AUROC_TOLERANCE,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(row["passed"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

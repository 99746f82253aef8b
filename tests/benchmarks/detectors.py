"""Accuracy, speed and memory of each detector on every real dataset in ../shared/data.

    python tests/benchmarks/detectors.py [--datasets weld,bottle] [--out DIR]

Prints a table and writes results/detectors.json and results/detectors.md. Timings on
these 2-core machines vary by ±50 % run to run: compare rows from one run only.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path

import torch

from anomalyops.components.datasets import FolderDataset
from anomalyops.components.detectors import create
from anomalyops.components.metrics import aupro, auroc

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1].parent / "shared" / "data"
DATASETS = {
    "bottle": DATA / "mvtec_ad" / "bottle",
    "tile": DATA / "magnetic_tile" / "tile",
    "weld": DATA / "battery_weld" / "weld",
}
# (detector, settings); the full bank (ratio 1.0) is skipped on tile: ~585 k entries
# would take ~3 s per image to search on this CPU.
RUNS = [
    ("patchcore", {"coreset_ratio": 0.01}),
    ("patchcore", {"coreset_ratio": 0.1}),
    ("patchcore", {"coreset_ratio": 1.0}),
    ("padim", {}),
]


def state_mb(detector) -> float:
    """Size of what the detector learnt (bank or Gaussians), excluding the backbone."""
    state = detector.model.state_dict()
    learnt = [t for name, t in state.items() if not name.startswith("backbone.")]
    return sum(t.numel() * t.element_size() for t in learnt) / 1e6


def run_one(name: str, kind: str, settings: dict, train, test) -> dict:
    detector = create(kind, **settings)
    started = time.perf_counter()
    detector.fit(train.images, progress=False)
    fit_s = time.perf_counter() - started
    detector.predict(test.images[:2])  # warm-up
    started = time.perf_counter()
    prediction = detector.predict(test.images)
    ms_per_image = 1000 * (time.perf_counter() - started) / len(test.images)
    row = {
        "dataset": name,
        "detector": f"{kind} {settings['coreset_ratio']:.0%}" if settings else kind,
        "image_auroc": auroc(test.labels, prediction.scores),
        "pixel_auroc": None,
        "aupro": None,
        "fit_s": fit_s,
        "ms_per_image": ms_per_image,
        "state_mb": state_mb(detector),
        "train_images": len(train.images),
        "test_images": len(test.images),
    }
    if test.masks is not None:
        known = test.pixel_labelled
        row["pixel_auroc"] = auroc(test.masks[known], prediction.maps[known])
        row["aupro"] = aupro(test.masks[known], prediction.maps[known])
    return row


def markdown(rows: list[dict]) -> str:
    def cell(value, digits=3):
        return "–" if value is None else f"{value:.{digits}f}"

    lines = [
        "| dataset | detector | image AUROC | pixel AUROC | AUPRO | fit s | ms/img | state MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['detector']} | {cell(r['image_auroc'])} | "
            f"{cell(r['pixel_auroc'])} | {cell(r['aupro'])} | {cell(r['fit_s'], 1)} | "
            f"{cell(r['ms_per_image'], 0)} | {cell(r['state_mb'], 1)} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        dataset = FolderDataset(DATASETS[name])
        train = dataset.load_train((256, 256), progress=False)
        test = dataset.load_test((256, 256), progress=False)
        for kind, settings in RUNS:
            if name == "tile" and settings.get("coreset_ratio") == 1.0:
                continue
            row = run_one(name, kind, settings, train, test)
            rows.append(row)
            print(markdown([row]).splitlines()[-1], flush=True)
    table = markdown(rows)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "backbone": "efficientnet_lite0",
        "input_size": [256, 256],
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "date": time.strftime("%Y-%m-%d"),
    }
    (args.out / "detectors.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out / "detectors.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

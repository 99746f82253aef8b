"""Accuracy, speed and memory of each detector on every real dataset in ../shared/data.

    python tests/benchmarks/detectors.py [--datasets weld,bottle] [--out DIR]

Prints a table and writes results/detectors-<dataset>.json per dataset (so one dataset
can be measured again alone) and results/detectors.md from all of them. Timings on these
2-core machines vary by ±50 % run to run: compare rows from one run only.
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
# Unevenly lit tiles: the same detectors with per-image intensity standardisation.
EXTRA = {
    "tile": [
        ("patchcore", {"coreset_ratio": 0.1, "standardise": True}),
        ("padim", {"standardise": True}),
    ]
}


def label(kind: str, settings: dict) -> str:
    parts = [kind]
    if "coreset_ratio" in settings:
        parts.append(f"{settings['coreset_ratio']:.0%}")
    if settings.get("standardise"):
        parts.append("standardised")
    return " ".join(parts)


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
        "detector": label(kind, settings),
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
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "backbone": "efficientnet_lite0",
        "input_size": [256, 256],
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    for name in args.datasets.split(","):
        dataset = FolderDataset(DATASETS[name])
        train = dataset.load_train((256, 256), progress=False)
        test = dataset.load_test((256, 256), progress=False)
        rows = []
        for kind, settings in RUNS + EXTRA.get(name, []):
            if name == "tile" and settings.get("coreset_ratio") == 1.0:
                continue
            rows.append(run_one(name, kind, settings, train, test))
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)
        meta["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = json.dumps({"meta": meta, "rows": rows}, indent=2)
        (args.out / f"detectors-{name}.json").write_text(result)
    every = [
        row
        for name in DATASETS
        if (args.out / f"detectors-{name}.json").is_file()
        for row in json.loads((args.out / f"detectors-{name}.json").read_text())["rows"]
    ]
    table = markdown(every)
    print("\n" + table)
    (args.out / "detectors.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

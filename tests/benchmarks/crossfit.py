"""Cross-fitting's shortcut against what it stands for, and what it costs.

    python tests/benchmarks/crossfit.py [--datasets weld,transistor,bottle]

`anomalyops fit` scores each of K folds of train/good against the bank rows that came
from the other folds (PatchCore.out_of_fold), instead of fitting K more coresets. Per
dataset, at the defaults: the out-of-fold scores both ways, the 1 % threshold each gives,
their correlation and mean ratio, and the seconds of the plain fit, the shortcut and the
K refits. Writes results/crossfit.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.detectors import create
from anomalyops.components.detectors.auto import auto_settings
from anomalyops.components.training.folds import session_folds
from anomalyops.components.training.thresholds import calibrate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detectors import DATASETS  # noqa: E402  (the same five datasets)


def run_one(name: str) -> dict:
    dataset = FolderDataset(DATASETS[name])
    settings = auto_settings("patchcore", [s.path for s in dataset.train_samples()], {})
    detector = create("patchcore", **settings)
    images = dataset.load_train(detector.config.input_size, progress=False).images
    folds = session_folds(len(images))
    started = time.perf_counter()
    detector.fit(images, progress=False)
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    masked = detector.out_of_fold(images, folds, progress=False).scores
    masked_s = time.perf_counter() - started
    refit = np.empty_like(masked)
    started = time.perf_counter()
    for fold in folds:
        others = create("patchcore", **settings).fit(np.delete(images, fold, 0), progress=False)
        refit[fold] = others.predict(images[fold]).scores
    refit_s = time.perf_counter() - started
    return {
        "dataset": name,
        "images": len(images),
        "folds": len(folds),
        "threshold_masked": calibrate(masked, 0.01).threshold,
        "threshold_refit": calibrate(refit, 0.01).threshold,
        "correlation": float(np.corrcoef(masked, refit)[0, 1]),
        "mean_ratio": float(np.mean(masked / refit)),
        "fit_s": fit_s,
        "cross_fit_masked_s": masked_s,
        "cross_fit_refit_s": refit_s,
        "load_average": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="weld,transistor,bottle")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "crossfit.json")
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        rows.append(run_one(name))
        r = rows[-1]
        print(f"{name}: threshold {r['threshold_masked']:.3f} (shortcut) / "
              f"{r['threshold_refit']:.3f} (refits), corr {r['correlation']:.3f}, ratio "
              f"{r['mean_ratio']:.3f}; fit {r['fit_s']:.1f} s + {r['cross_fit_masked_s']:.1f} s "
              f"(refits {r['cross_fit_refit_s']:.1f} s)", flush=True)  # fmt: skip
    meta = {"date": time.strftime("%Y-%m-%d"), "target_fpr": 0.01}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

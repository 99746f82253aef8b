"""Cross-fitting's shortcut against what it stands for, and what it costs.

    python tests/benchmarks/crossfit.py [--datasets weld,transistor,bottle]

From REFIT_BELOW images on, `anomalyops fit` scores each of K folds of train/good against
the bank rows that came from the other folds (PatchCore.cross_fit), instead of fitting K
more coresets; below, each fold gets the coreset of the other folds' patches. Per dataset,
at the defaults: the out-of-fold scores of the shortcut (forced at every size), of what
ships and of K true refits, the 1 % threshold each gives, the shortcut's correlation and
mean ratio to the refits, the six largest shipped scores beside Tukey's far-out fence,
and the seconds of the plain fit, the cross-fitting beyond it both ways, and the K refits.
Writes results/crossfit.json.
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
from anomalyops.components.detectors.patchcore import detector as patchcore
from anomalyops.components.training.folds import session_folds
from anomalyops.components.training.thresholds import calibrate

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detectors import DATASETS  # noqa: E402  (the same five datasets)


def cross_fit(settings: dict, images: np.ndarray, folds: list, refit_below: int) -> tuple:
    """Out-of-fold scores and seconds of PatchCore.cross_fit (fit included) with folds
    refitted below REFIT_BELOW images."""
    shipped = patchcore.REFIT_BELOW
    patchcore.REFIT_BELOW = refit_below
    try:
        started = time.perf_counter()
        scores = create("patchcore", **settings).cross_fit(images, folds, progress=False).scores
        return scores, time.perf_counter() - started
    finally:
        patchcore.REFIT_BELOW = shipped


def far_out_fence(scores: np.ndarray) -> float:
    """Tukey's far-out fence, Q3 + 3 IQR: a score above it stands apart from the rest
    (whether the largest out-of-fold score is one odd image or a session's level)."""
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q3 + 3 * (q3 - q1))


def run_one(name: str) -> dict:
    dataset = FolderDataset(DATASETS[name])
    settings = auto_settings("patchcore", [s.path for s in dataset.train_samples()], {})
    config = create("patchcore", **settings).config
    split = dataset.load_train(config.input_size, progress=False, keep_aspect=config.keep_aspect)
    images = split.images
    folds = session_folds(len(images))
    started = time.perf_counter()
    create("patchcore", **settings).fit(images, progress=False)
    fit_s = time.perf_counter() - started
    masked, masked_s = cross_fit(settings, images, folds, 0)
    shipped, shipped_s = cross_fit(settings, images, folds, patchcore.REFIT_BELOW)
    refit = np.empty_like(masked)
    started = time.perf_counter()
    for fold in folds:
        others = create("patchcore", **settings).fit(np.delete(images, fold, 0), progress=False)
        refit[fold] = others.predict(images[fold]).scores
    refit_s = time.perf_counter() - started
    top = [(Path(split.paths[i]).name, float(shipped[i])) for i in np.argsort(shipped)[::-1][:6]]
    return {
        "dataset": name,
        "images": len(images),
        "folds": len(folds),
        "refit_below": patchcore.REFIT_BELOW,
        "threshold_masked": calibrate(masked, 0.01).threshold,
        "threshold_shipped": calibrate(shipped, 0.01).threshold,
        "threshold_refit": calibrate(refit, 0.01).threshold,
        "top_shipped": top,
        "far_out_fence": far_out_fence(shipped),
        "correlation": float(np.corrcoef(masked, refit)[0, 1]),
        "mean_ratio": float(np.mean(masked / refit)),
        "fit_s": fit_s,
        "cross_fit_masked_s": masked_s - fit_s,
        "cross_fit_shipped_s": shipped_s - fit_s,
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
              f"{r['threshold_shipped']:.3f} (shipped) / {r['threshold_refit']:.3f} (refits), "
              f"corr {r['correlation']:.3f}, ratio {r['mean_ratio']:.3f}; fit {r['fit_s']:.1f} s "
              f"+ {r['cross_fit_masked_s']:.1f} s shortcut, {r['cross_fit_shipped_s']:.1f} s "
              f"shipped (refits {r['cross_fit_refit_s']:.1f} s)", flush=True)  # fmt: skip
    meta = {"date": time.strftime("%Y-%m-%d"), "target_fpr": 0.01}
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

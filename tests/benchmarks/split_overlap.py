"""How many test/good images are train/good images again: what a test-good FPR means.

    python tests/benchmarks/split_overlap.py [--datasets weld,bottle]

A test/good image that is a crop of a train/good image (same width, a band of its rows)
or the same picture is scored by a bank that holds it: it cannot raise a false alarm,
so a test split full of them says little about the next session's good parts, which is
what the out-of-fold threshold (components/training/folds.py) is set for. Per dataset:
each test/good image's closest train/good image of its width (mean absolute grey-level
difference at native resolution, at the best vertical offset of the shorter in the
taller), how many are pixel-identical (difference below 0.5 grey levels), and the capture
sessions (file-name prefix before the first `-`, where names have one) of train/good,
test/good and the defective test images. Writes results/split-overlap.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detectors import DATASETS  # noqa: E402  (the same five datasets)

IDENTICAL = 0.5  # mean absolute difference, grey levels: below it the pixels are the same


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float32)


def best_band(test: np.ndarray, train: np.ndarray) -> float:
    """Smallest mean absolute difference of the shorter image against any band of rows
    of the taller one (infinite for images of two widths: no crop of one another)."""
    if test.shape[1] != train.shape[1]:
        return float("inf")
    short, tall = sorted((test, train), key=len)
    rows = len(short)
    return min(
        float(np.abs(tall[offset : offset + rows] - short).mean())
        for offset in range(len(tall) - rows + 1)
    )


def session(path: Path) -> str | None:
    return path.stem.split("-", 1)[0] if "-" in path.stem else None


def overlap(root: Path) -> dict:
    train_paths = sorted((root / "train" / "good").iterdir())
    test_root = root / "test"
    good_paths = sorted((test_root / "good").iterdir())
    defect_paths = sorted(p for d in test_root.iterdir() if d.name != "good" for p in d.iterdir())
    train = [grey(p) for p in train_paths]
    closest = []
    for path in good_paths:
        image = grey(path)
        gaps = [best_band(image, other) for other in train]
        best = int(np.argmin(gaps))
        gap = gaps[best] if np.isfinite(gaps[best]) else None  # None: no train image of its width
        closest.append({"test": path.name, "train": train_paths[best].name, "gap": gap})
    compared = [c["gap"] for c in closest if c["gap"] is not None]
    identical = [c for c in closest if c["gap"] is not None and c["gap"] < IDENTICAL]
    sessions = {
        split: dict(sorted(Counter(session(p) for p in paths).items(), key=str))
        for split, paths in (("train_good", train_paths), ("test_good", good_paths),
                             ("test_defective", defect_paths))
    }  # fmt: skip
    return {
        "train_good": len(train_paths),
        "test_good": len(good_paths),
        "identical": len(identical),
        "identical_pairs": [(c["test"], c["train"]) for c in identical],
        "median_gap": float(np.median(compared)) if compared else None,
        "sessions": sessions,
        "closest": closest,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    results = {"date": time.strftime("%Y-%m-%d"), "identical_below": IDENTICAL, "datasets": {}}
    for name in args.datasets.split(","):
        row = overlap(DATASETS[name])
        results["datasets"][name] = row
        gap = "none" if row["median_gap"] is None else f"{row['median_gap']:.1f}"
        print(
            f"{name}: {row['identical']}/{row['test_good']} test/good identical to a "
            f"train/good band, median gap {gap} grey levels; sessions {row['sessions']}"
        )
    out = HERE / "results" / "split-overlap.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

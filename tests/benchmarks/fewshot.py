"""Few-shot image AUROC: k = 1, 2, 4, 8, 16 good images against the full training set.

    python tests/benchmarks/fewshot.py [--datasets weld,bottle] [--test-cap 100]

For each dataset in ../shared/data, k training images are drawn at random (3 draws,
seeds 0-2), a new PatchCore bank is built from their augmented views exactly as
`anomalyops adapt` builds a new variant (components/training/fewshot.py), and image AUROC is
measured on the test split; the median of the 3 draws is reported. Full-shot is the
default PatchCore (10 % coreset) on all of train/good, read from
results/detectors-<dataset>.json where the detector benchmark measured it, else fitted
here. The test split is capped (stratified, seed 0) to keep the run bounded on 2 shared
cores. Writes results/fewshot.json and results/fewshot.md after every dataset, so an
interrupted run keeps what it finished.

The backbone is the same for every k and draw, so the test images' patch features are
extracted once per dataset and each bank only searches them (an image's score is its
largest nearest-neighbour distance, as `predict` computes it); the first bank of each
dataset is checked against `predict` on a few test images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from detectors import DATASETS  # the benchmark datasets, one list (run as a script)

from anomalyops.components.data.augment import Augmentation
from anomalyops.components.data.datasets import FolderDataset, load_split
from anomalyops.components.detectors import create
from anomalyops.components.detectors.patchcore.search import nearest_distance
from anomalyops.components.evaluation.metrics import auroc
from anomalyops.components.training.fewshot import FEWSHOT_CORESET, extend_bank

HERE = Path(__file__).resolve().parent
SHOTS = (1, 2, 4, 8, 16)
DRAWS = 3
SIZE = (256, 256)  # the default detector's input: macaroni1's 1500×1000 is downscaled
# Published anchors, MVTec AD category averages (other data: context, not a comparison).
ANCHORS = {"WinCLIP+": {1: 93.1, 2: 94.4, 4: 95.2}, "AnomalyDINO": {1: 96.6}}


def capped_test(root: Path, cap: int):
    """The test split, at most CAP images, good/defective proportions kept (seed 0)."""
    samples = FolderDataset(root).test_samples()
    if len(samples) > cap:
        rng = np.random.default_rng(0)
        labels = np.asarray([s.label for s in samples])
        keep = []
        for label in (0, 1):
            where = np.flatnonzero(labels == label)
            take = max(1, round(cap * len(where) / len(samples)))
            keep.extend(rng.choice(where, take, replace=False))
        samples = [samples[i] for i in sorted(keep)]
    return load_split(samples, SIZE, "skip", progress=False)


def full_shot(name: str, root: Path, test) -> tuple[float, str]:
    saved = HERE / "results" / f"detectors-{name}.json"
    if saved.is_file():
        for row in json.loads(saved.read_text())["rows"]:
            if row["variant"] == "default":
                return row["image_auroc"], f"{saved.name} (full test split)"
    train = FolderDataset(root).load_train(SIZE, "skip", progress=False)
    detector = create("patchcore").fit(train.images, progress=False)
    return auroc(test.labels, detector.predict(test.images).scores), "fitted here"


def test_patches(detector, images: np.ndarray) -> np.ndarray:
    """N×P×D patch features of IMAGES: what every bank of one dataset searches."""
    patches = detector._patches(images, progress=False).numpy()
    return patches.reshape(len(images), -1, patches.shape[1])


def scores(detector, patches: np.ndarray) -> np.ndarray:
    """Image scores as `predict` gives them: each image's largest patch distance to the bank."""
    n, p, d = patches.shape
    return nearest_distance(detector.index, patches.reshape(-1, d), n).reshape(n, p).max(axis=1)


def run(name: str, root: Path, cap: int, saved=lambda row: None) -> dict:
    """One dataset's row; SAVED(row) after every k, so an interrupted run keeps its part."""
    train = FolderDataset(root).load_train(SIZE, "skip", progress=False)
    test = capped_test(root, cap)
    row = {"dataset": name, "train_images": len(train.images), "test_images": len(test.images)}
    row["full_shot"], row["full_shot_source"] = full_shot(name, root, test)
    started = time.perf_counter()
    patches = test_patches(create("patchcore"), test.images)
    row["feature_seconds"] = round(time.perf_counter() - started, 1)
    for k in SHOTS:
        values, k_started = [], time.perf_counter()
        for draw in range(DRAWS):
            chosen = np.random.default_rng(draw).choice(len(train.images), k, replace=False)
            detector = create("patchcore")
            extend_bank(detector, train.images[chosen], Augmentation(), FEWSHOT_CORESET, draw)
            found = scores(detector, patches)
            if k == SHOTS[0] and draw == 0:  # the shortcut scores what predict scores
                direct = detector.predict(test.images[:4]).scores
                np.testing.assert_allclose(found[:4], direct, rtol=1e-4, atol=1e-3)
            values.append(auroc(test.labels, found))
        row[f"k{k}"] = float(np.median(values))
        row[f"k{k}_draws"] = values
        row[f"k{k}_seconds"] = round(time.perf_counter() - k_started, 1)
        print(f"{name} k={k}: median {row[f'k{k}']:.3f} of {np.round(values, 3).tolist()} "
              f"({row[f'k{k}_seconds']} s)", flush=True)  # fmt: skip
        saved(row)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def markdown(rows: list[dict]) -> str:
    head = "| dataset | " + " | ".join(f"k={k}" for k in SHOTS) + " | full-shot |"
    lines = [head, "|---|" + "---:|" * (len(SHOTS) + 1)]
    for row in rows:  # "–": not measured (an interrupted run)
        cells = " | ".join(f"{100 * row[f'k{k}']:.1f}" if f"k{k}" in row else "–" for k in SHOTS)
        lines.append(f"| {row['dataset']} | {cells} | {100 * row['full_shot']:.1f} |")
    if len(rows) > 1:
        mean = " | ".join(
            f"{100 * np.mean([r[f'k{k}'] for r in rows if f'k{k}' in r]):.1f}" for k in SHOTS
        )
        full = 100 * np.mean([r["full_shot"] for r in rows])
        lines.append(f"| **mean of ours** | {mean} | {full:.1f} |")
    for method, values in ANCHORS.items():
        cells = " | ".join(f"{values[k]:.1f}" if k in values else "–" for k in SHOTS)
        lines.append(f"| {method} (MVTec AD avg, published) | {cells} | – |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--test-cap", type=int, default=100)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    started, rows = time.perf_counter(), []
    for name in args.datasets.split(","):
        rows.append(run(name, DATASETS[name], args.test_cap,
                        lambda row: save([*rows, row], args, started)))  # fmt: skip
        save(rows, args, started)


def save(rows: list[dict], args: argparse.Namespace, started: float) -> None:
    """Write the results so far (json + markdown table)."""
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "input_size": list(SIZE),
        "augmentation": Augmentation().to_dict(),
        "coreset_ratio": FEWSHOT_CORESET,
        "draws": DRAWS,
        "test_cap": args.test_cap,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average": list(os.getloadavg()),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fewshot.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    table = markdown(rows)
    (out / "fewshot.md").write_text(table)
    print(table)
    print(f"wall time {meta['wall_seconds']} s; results in {out / 'fewshot.json'}")


if __name__ == "__main__":
    main()

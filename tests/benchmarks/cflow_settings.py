"""How CFLOW-AD's defaults were chosen: validation data only (train/good), test for show.

    python tests/benchmarks/cflow_settings.py [--datasets bottle,weld] [--variants a,b]

Per dataset, settings as `anomalyops fit` decides them (auto_settings: standardisation
on for weld), then: train/good split 80/20 (seeded); fit on the 80 %, score the held-out 20 %
as they are and with CutPaste defects pasted on (components/data/synthetic.paste_defects,
three seeds). Validation image AUROC: clean vs pasted; pixel AUROC on the pasted masks.
Both anomaly maps are read from the one fit: `lik` (the paper's: shifted likelihoods
summed over scales, subtracted from their count, what the model exports) and `nll`
(per-dimension negative log-likelihoods summed). Test image AUROC is printed for
information only (never chosen on). Fit seconds: wall and this process's CPU seconds,
with the load average, since these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.data.synthetic import paste_defects
from anomalyops.components.detectors import create
from anomalyops.components.detectors.auto import auto_settings
from anomalyops.components.evaluation.metrics import auroc

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATASETS = {
    "bottle": DATA / "mvtec_ad" / "bottle",
    "weld": DATA / "battery_weld" / "weld",
    "transistor": DATA / "mvtec_ad" / "transistor",
    "tile": DATA / "magnetic_tile" / "tile",
}
VARIANTS = {
    "default": {},
    "strides3": {"strides": (4, 8, 16)},
    "steps300": {"steps": 300},
    "steps2000": {"steps": 2000},
    "lr2e-4": {"learning_rate": 2e-4},
    "lr2e-3": {"learning_rate": 2e-3},
    "positions256": {"positions": 256, "steps": 2000},  # the default's vectors, half per step
    "half": {"positions": 256},  # half the training compute
    "blocks4": {"coupling_blocks": 4},
}


@torch.inference_mode()
def both_maps(detector, images: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scores and maps of IMAGES under both map definitions: {name: (scores, maps)}."""
    model, out = detector.model, {"lik": [], "nll": []}
    for start in range(0, len(images), 4):
        batch = torch.from_numpy(images[start : start + 4])
        likelihood, nll = 0, 0
        for flow, features in zip(model.flows, model.backbone(batch), strict=True):
            log_p = flow.map(features) - flow.shift
            likelihood = likelihood + model.anomaly_map(torch.exp(log_p))
            nll = nll - model.anomaly_map(log_p)
        out["lik"].append((len(model.flows) - likelihood)[:, 0].numpy())
        out["nll"].append(nll[:, 0].numpy())
    return {k: (np.concatenate(v).reshape(len(images), -1).max(1), np.concatenate(v))
            for k, v in out.items()}  # fmt: skip


def run_one(name: str, variant: str, dataset: FolderDataset) -> dict:
    train = dataset.load_train((256, 256), progress=False).images
    test = dataset.load_test((256, 256), progress=False)
    order = np.random.default_rng(0).permutation(len(train))
    held, fit = train[order[: len(train) // 5]], train[order[len(train) // 5 :]]
    paths = [sample.path for sample in dataset.train_samples()]
    detector = create("cflow", **auto_settings("cflow", paths, VARIANTS[variant]))
    wall, cpu = time.perf_counter(), time.process_time()
    detector.fit(fit, progress=False)
    row = {"dataset": name, "variant": variant, "fit_images": len(fit),
           "fit_s": time.perf_counter() - wall, "fit_cpu_s": time.process_time() - cpu,
           "load": os.getloadavg()[0], "steps": detector.log.steps,
           "stopped": detector.log.stopped, "standardise": detector.config.standardise,
           "val_nll": detector.log.validation}  # fmt: skip
    pasted = [paste_defects(held, seed=seed) for seed in (1, 2, 3)]
    clean = both_maps(detector, held)
    defective = [both_maps(detector, images) for images, _ in pasted]
    masks = np.concatenate([np.zeros_like(pasted[0][1]), *(m for _, m in pasted)])
    labels = np.r_[np.zeros(len(held)), np.ones(3 * len(held))]
    started = time.perf_counter()
    on_test = both_maps(detector, test.images)
    row["ms_per_image"] = 1000 * (time.perf_counter() - started) / len(test.images)
    for kind in ("lik", "nll"):
        scores = np.concatenate([clean[kind][0], *(d[kind][0] for d in defective)])
        maps = np.concatenate([clean[kind][1], *(d[kind][1] for d in defective)])
        row[f"val_image_{kind}"] = auroc(labels, scores)
        row[f"val_pixel_{kind}"] = auroc(masks, maps)
        row[f"test_image_{kind}"] = auroc(test.labels, on_test[kind][0])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", default="bottle,weld")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for name in args.datasets.split(","):
        for variant in args.variants.split(","):
            row = run_one(name, variant, FolderDataset(DATASETS[name]))
            print(json.dumps(row), flush=True)
            rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "cflow-settings.jsonl", "a") as log:
        log.writelines(json.dumps(row) + "\n" for row in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

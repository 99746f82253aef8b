"""PatchCore at a 10 % bank: exact against HNSW search, predict time and recall.

    python tests/benchmarks/search.py [--dataset bottle] [--ratio 0.1]

The bank (two-stage coreset of all train/good patches) is shared by both searches, so
the rows differ only in search; a third row times the exported graph's exact blocked
search in torch, what a CPU Triton would run. Prints a table and writes
results/search-<dataset>.json.
Timings on these shared 2-core machines vary ±50 %; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.detectors import create
from anomalyops.components.detectors.patchcore.search import (
    build_index,
    nearest_distance,
    recall_at_1,
)
from anomalyops.components.evaluation.metrics import auroc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detectors import DATASETS  # noqa: E402


def timed(function, repeats: int = 3) -> tuple[float, object]:
    """Median seconds of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return float(np.median(times)), result


@torch.inference_mode()
def graph_scores_of(detector, images: np.ndarray) -> np.ndarray:
    """Image scores from the torch graph that gets exported (what Triton runs on a CPU)."""
    batches = np.array_split(images, max(1, len(images) // detector.batch_size))
    return np.concatenate([detector.model(torch.from_numpy(b)).score.numpy() for b in batches])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="bottle")
    parser.add_argument("--ratio", type=float, default=0.1)
    args = parser.parse_args()
    dataset = FolderDataset(DATASETS[args.dataset])
    train = dataset.load_train((256, 256), progress=False)
    test = dataset.load_test((256, 256), progress=False)
    exact = create("patchcore", coreset_ratio=args.ratio, search="exact")
    started = time.perf_counter()
    exact.fit(train.images, progress=False)
    fit_s = time.perf_counter() - started
    hnsw = create("patchcore", coreset_ratio=args.ratio, search="hnsw")
    hnsw.model.memory_bank, hnsw.fitted = exact.model.memory_bank, True
    bank = exact.model.memory_bank.numpy()
    with torch.inference_mode():
        embedding = exact.model.embed(torch.from_numpy(test.images))
    queries = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]).numpy()
    rows = []
    for name, detector in (("exact", exact), ("hnsw", hnsw)):
        build_s, index = timed(lambda d=detector: build_index(bank, d.config.search), 1)
        detector._index = index
        search_s, _ = timed(lambda i=index: nearest_distance(i, queries, len(test.images)))
        predict_s, prediction = timed(lambda d=detector: d.predict(test.images), 2)
        rows.append(
            {
                "search": name,
                "bank": len(bank),
                "index_build_s": build_s,
                "search_ms_per_image": 1000 * search_s / len(test.images),
                "predict_ms_per_image": 1000 * predict_s / len(test.images),
                "image_auroc": auroc(test.labels, prediction.scores),
            }
        )
    rows[1]["recall"] = recall_at_1(bank, queries, hnsw.index)
    graph_s, graph_scores = timed(lambda: graph_scores_of(exact, test.images), 1)
    rows.append(
        {
            "search": "exported graph (exact, blocked running minimum)",
            "bank": len(bank),
            "predict_ms_per_image": 1000 * graph_s / len(test.images),
            "image_auroc": auroc(test.labels, graph_scores),
        }
    )
    result = {
        "dataset": args.dataset,
        "ratio": args.ratio,
        "fit_s": fit_s,
        "test_images": len(test.images),
        "load_average": os.getloadavg()[0],
        "rows": rows,
    }
    print(json.dumps(result, indent=2))
    (HERE / "results" / f"search-{args.dataset}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

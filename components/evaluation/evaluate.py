"""The evaluate step: metrics on the test split and an HTML report to look at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anomalyops.components.data.datasets import FolderDataset, OnError, Sample
from anomalyops.components.evaluation.metrics import auroc, f1_at, pixel_metrics
from anomalyops.components.hashing import files_sha256
from anomalyops.components.reports.report import write_report
from anomalyops.components.training.model_dir import check_writable_file, write_file
from anomalyops.components.training.train import load_trained

METRICS_FILE = "metrics.json"


def image_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float | int | None]:
    """Image AUROC, and F1, false-positive and miss rates at THRESHOLD (None where undefined)."""
    flagged = scores > threshold
    return {
        "test_images": len(labels),
        "test_defective": int(labels.sum()),
        "image_auroc": auroc(labels, scores) if 0 < labels.sum() < len(labels) else None,
        "image_f1": f1_at(labels, scores, threshold),
        "false_positive_rate": float(flagged[labels == 0].mean()) if (labels == 0).any() else None,
        "miss_rate": float((~flagged[labels == 1]).mean()) if (labels == 1).any() else None,
    }


def evaluate(
    model_dir: str | Path,
    data: str | Path,
    report: str | Path | None = None,
    on_error: OnError = "skip",
    progress: bool = True,
    device: str = "auto",
) -> dict[str, float | int | None]:
    """Image AUROC, and pixel AUROC and AUPRO where masks exist; F1 and rates at threshold.

    Outputs are checked before any work. `test_skipped` counts unreadable test images
    left out, and `eval_dataset_sha256` hashes the images actually evaluated: the
    promotion gate compares only versions measured on the identical set.
    """
    check_writable_file(Path(model_dir) / METRICS_FILE, "metrics file")
    if report is not None:
        check_writable_file(report, "--report")
    detector, thresholds = load_trained(model_dir, device)
    config = detector.config
    test = FolderDataset(data).load_test(config.input_size, on_error, progress, config.keep_aspect)
    prediction = detector.predict(test.images, progress=progress)
    threshold = thresholds["image"]["threshold"]
    labels, scores = test.labels, prediction.scores
    metrics = image_metrics(labels, scores, threshold) | {
        "pixel_auroc": None,
        "aupro": None,
        "test_skipped": len(test.skipped),
        "eval_dataset_sha256": evaluated_set_sha256(data, test.samples),
    }
    if test.masks is not None:
        known = test.pixel_labelled
        masks, maps = test.masks[known], prediction.maps[known]
        if masks.any():
            content = None if test.boxes is None else test.content[known]
            metrics |= pixel_metrics(masks, maps, content)
    write_file(Path(model_dir) / METRICS_FILE, json.dumps(metrics, indent=2), "metrics file")
    if report is not None:
        notes = [f"skipped: {s}" for s in test.skipped]
        write_report(
            report,
            f"{detector.kind} on {Path(data).name}",
            {k: v for k, v in metrics.items() if v is not None} | {"image threshold": threshold},
            test.images,
            prediction.maps,
            scores,
            labels,
            test.paths,
            threshold,
            notes,
        )
    return metrics


def evaluated_set_sha256(data: str | Path, samples: list[Sample]) -> str:
    """sha256 over the test images (and their masks) that were actually evaluated."""
    paths = [p for s in samples for p in (s.path, s.mask_path) if p is not None]
    return files_sha256(Path(data), sorted(set(paths)))


def as_table(metrics: dict[str, float | int | None]) -> str:
    """A readable console summary."""
    rows = [
        (k, "n/a" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
        for k, v in metrics.items()
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

"""Synthetic drift inputs shared by the drift step and CLI tests: a reference like the one
`train` keeps, and prediction-log rows drawn around it (brightness can be shifted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomalyops.serving.contract.reference import Reference
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord


def make_reference(folder: Path, seed: int = 0) -> Reference:
    """Held-out scores around 40 and image statistics around brightness 150, saved in FOLDER."""
    rng = np.random.default_rng(seed)
    reference = Reference(
        scores=list(rng.normal(40, 2, 20)),
        statistics={
            "brightness": list(rng.normal(150, 10, 40)),
            "contrast": list(rng.normal(50, 5, 40)),
            "sharpness": list(np.exp(rng.normal(6, 0.3, 40))),
        },
    )
    folder.mkdir(parents=True, exist_ok=True)
    reference.save(folder)
    return reference


def log_rows(log_db: Path, n: int, version: str, brightness: float = 150.0, seed: int = 1) -> None:
    """N logged weld predictions by model VERSION, drawn like the reference's images."""
    rng = np.random.default_rng(seed)
    with PredictionLog(log_db) as log:
        log.write(
            [
                PredictionRecord(
                    "weld",
                    float(rng.normal(40, 2)),
                    46.0,
                    "good",
                    float(rng.normal(brightness, 10)),
                    float(rng.normal(50, 5)),
                    float(np.exp(rng.normal(6, 0.3))),
                    model_version=version,
                )
                for _ in range(n)
            ]
        )

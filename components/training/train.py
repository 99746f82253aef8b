"""The train step: fit a detector on good images, calibrate thresholds on out-of-fold scores."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from anomalyops.components.data.datasets import DatasetError, FolderDataset, OnError
from anomalyops.components.data.manifest import screen
from anomalyops.components.detectors import Detector, create, load_detector
from anomalyops.components.detectors.auto import auto_settings
from anomalyops.components.detectors.device import resolve_device
from anomalyops.components.json_files import read_json
from anomalyops.components.training.folds import FOLDS, session_folds
from anomalyops.components.training.model_dir import ModelOutput
from anomalyops.components.training.thresholds import Calibration, calibrate, calibrate_pixels
from anomalyops.serving.contract.reference import Reference
from anomalyops.serving.contract.thresholds import check_thresholds
from anomalyops.serving.images.statistics import image_statistics

log = logging.getLogger(__name__)
THRESHOLDS_FILE = "thresholds.json"
TRAINING_FILE = "training.json"
HIGHEST = 5  # good images named in training.json by their out-of-fold score
_LEVEL = {
    "type": "object",
    "required": ["threshold"],
    "properties": {"threshold": {"type": "number"}},
}
THRESHOLDS_SCHEMA = {
    "type": "object",
    "required": ["image", "pixel"],
    "properties": {"image": _LEVEL, "pixel": _LEVEL},
}


@dataclass
class TrainResult:
    model_dir: Path
    detector: Detector
    image_threshold: Calibration
    pixel_threshold: Calibration
    summary: dict = field(default_factory=dict)


def train(
    data: str | Path,
    output: str | Path,
    detector: str = "patchcore",
    settings: dict | None = None,
    calibration_folds: int = FOLDS,
    target_fpr: float = 0.01,
    pixel_fpr: float = 0.001,
    on_error: OnError = "skip",
    progress: bool = True,
    force: bool = False,
    device: str | torch.device = "auto",
) -> TrainResult:
    """Fit on all of train/good, set thresholds on its out-of-fold scores, save all.

    Cross-fitting (components/training/folds.py) scores every good image by a model that
    never saw its capture session, so the threshold rests on n scores, not on a held-out
    fifth, and the model serving keeps every image.

    Settings left out are decided from train/good alone (tiling, standardisation). The
    output is checked before any work and written whole or not at all (ModelOutput); a
    folder holding another model is replaced only with `force`, and never the data.
    """
    target = ModelOutput(output, force, protect=(data,))
    device = resolve_device(device)  # a missing GPU is said before the images are read
    dataset = FolderDataset(data)
    paths = [sample.path for sample in dataset.train_samples()]
    # The validation step's hard image rules: a blank, tiny or far-off frame in train/good
    # would teach the model that dead cameras are normal.
    screened = screen(paths)
    refused = [f"{path}: {why}" for path, why in screened.items()]
    if refused and on_error == "raise":
        raise DatasetError("train/good holds images no part photograph looks like: "
                           + "; ".join(refused))  # fmt: skip
    for reason in refused:
        log.warning("skipped %s", reason)
    excluded = set(screened)
    paths = [path for path in paths if str(path) not in excluded]
    dataset_sha256 = dataset.content_hash()
    model = create(detector, **auto_settings(detector, paths, settings or {})).to(device)
    split = dataset.load_train(model.config.input_size, on_error, progress, excluded,
                               model.config.keep_aspect)  # fmt: skip
    if len(split.images) < 2:
        raise DatasetError(f"need at least 2 good training images, found {len(split.images)}")
    folds = session_folds(len(split.images), calibration_folds)
    started = time.perf_counter()
    held_out = model.cross_fit(split.images, folds, progress=progress)
    fit_seconds = time.perf_counter() - started
    image_cal = calibrate(held_out.scores, target_fpr)
    pixel_cal = calibrate_pixels(held_out.maps, pixel_fpr, content=split.content)
    reference = Reference.measure(
        held_out.scores, [image_statistics(i) for i in split.own_pixels()]
    )
    thresholds = {"image": image_cal.to_dict(), "pixel": pixel_cal.to_dict()}
    summary = {
        "data": str(dataset.root),
        "dataset_sha256": dataset_sha256,
        "detector": detector,
        "train_images": len(split.images),
        "calibration_images": len(split.images),
        "calibration": {"method": "cross-fit", "folds": len(folds), "order": "file name"},
        "highest_held_out": highest_held_out(split.paths, held_out.scores, dataset.root),
        "skipped": refused + split.skipped,
        "fit_seconds": round(fit_seconds, 2),
        "threads": torch.get_num_threads(),  # what fit_seconds was measured with
        "device": str(model.device),
    }
    with target as staging:
        model.save(staging)
        reference.save(staging)
        (staging / THRESHOLDS_FILE).write_text(json.dumps(thresholds, indent=2))
        (staging / TRAINING_FILE).write_text(json.dumps(summary, indent=2))
    log.info("trained %s on %d images in %.1f s", detector, len(split.images), fit_seconds)
    return TrainResult(Path(output), model, image_cal, pixel_cal, summary)


def highest_held_out(
    paths: list[str], scores: np.ndarray, root: Path, count: int = HIGHEST
) -> list[dict]:
    """The good images whose out-of-fold scores rank highest, highest first, with their
    paths under ROOT: below 1 / target images the threshold is the largest of them, so
    one odd or mislabelled part sets a line's sensitivity and is worth a look."""
    order = np.argsort(-np.asarray(scores), kind="stable")[:count]
    return [{"file": Path(paths[i]).relative_to(root).as_posix(), "score": float(scores[i])}
            for i in order]  # fmt: skip


def load_trained(model_dir: str | Path, device: str = "cpu") -> tuple[Detector, dict]:
    """A trained detector (computing on DEVICE) and its calibrated thresholds."""
    model_dir = Path(model_dir)
    path = model_dir / THRESHOLDS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; was {model_dir} written by `anomalyops fit`?")
    thresholds = check_thresholds(read_json(path, THRESHOLDS_SCHEMA), str(path))
    return load_detector(model_dir).to(device), thresholds

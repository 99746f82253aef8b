"""Few-shot adaptation: extend a PatchCore memory bank with k good images of a new state.

Production changes (new supplier, lighting, a turned fixture) while the part stays the
same, so retraining from scratch throws away what the bank knows. Instead each new good
image's augmented views (components/data/augment.py) are added to the champion's bank; a
brand-new variant starts an empty bank from its k shots alone.

Thresholds are recalibrated honestly. The new images are in the bank, so their own
scores say nothing; with k ≥ 2 each is scored leave-one-out (by the bank without the
rows it contributed), with k = 1 by fresh augmented views. Either way the threshold
rests on k images, and the leave-one-out scores share k − 2 of their k − 1 shots, so
they are not independent samples: the Clopper–Pearson bound is stated over k images
and the result is never marked guaranteed. When a champion is extended its bank only
grows, so no image's distance to it rises: the champion's calibrated threshold still
bounds false alarms on the old state, and the new threshold is the larger of the two.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from anomalyops.components.data.augment import Augmentation, views
from anomalyops.components.data.datasets import (
    IMAGE_SUFFIXES,
    DatasetError,
    FolderDataset,
    OnError,
    Sample,
    load_split,
)
from anomalyops.components.detectors import PatchCore, Prediction, create
from anomalyops.components.hashing import file_sha256
from anomalyops.components.training.model_dir import ModelOutput
from anomalyops.components.training.thresholds import calibrate, clopper_pearson_upper
from anomalyops.components.training.train import THRESHOLDS_FILE, TRAINING_FILE, load_trained
from anomalyops.serving.contract.reference import Reference
from anomalyops.serving.images.statistics import image_statistics

log = logging.getLogger(__name__)

ADAPTATION_FILE = "adaptation.json"
# Share of the new views' patches kept. Far above the 1 % of a full fit: a few shots
# give few patches, and a rare normal pattern seen once must survive the coreset.
FEWSHOT_CORESET = 0.1
LEAVE_ONE_OUT, AUGMENTED_VIEWS = "leave-one-out", "augmented views"
DEFAULT_AUGMENTATION = Augmentation()


@dataclass
class AdaptResult:
    model_dir: Path
    detector: PatchCore
    thresholds: dict
    held_out: Prediction  # what the threshold was set on (leave-one-out or unseen views)
    summary: dict = field(default_factory=dict)


def extend_bank(
    detector: PatchCore,
    images: np.ndarray,
    augmentation: Augmentation = DEFAULT_AUGMENTATION,
    coreset_ratio: float = FEWSHOT_CORESET,
    seed: int = 0,
    progress: bool = False,
) -> list[list[slice]]:
    """Add each image's views to the bank (an unfitted detector starts from them).

    Returns the rows each image contributed to each bank (PatchCore.bank_sizes: one per
    scale), for leave-one-out scoring.
    """
    if not isinstance(detector, PatchCore):
        raise ValueError(
            f"few-shot adaptation extends a memory bank: needs patchcore, got {detector.kind}"
        )
    if not 0 < coreset_ratio <= 1:
        raise ValueError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
    detector.config = dataclasses.replace(detector.config, coreset_ratio=coreset_ratio)
    rng = np.random.default_rng(seed)
    blocks = []
    for image in tqdm(images, desc="extend bank", unit="img", disable=not progress):
        start = detector.bank_sizes()
        detector.update(views(image, augmentation, rng), progress=False)
        blocks.append([slice(a, b) for a, b in zip(start, detector.bank_sizes(), strict=True)])
    return blocks


def leave_one_out(detector: PatchCore, images: np.ndarray, blocks: list[list[slice]]) -> Prediction:
    """Each image scored by the banks without the rows it contributed."""
    sizes = detector.bank_sizes()
    scores, maps = [], []
    for image, image_blocks in zip(images, blocks, strict=True):
        own = []
        for size, block in zip(sizes, image_blocks, strict=True):
            rows = np.arange(size)
            own.append((rows >= block.start) & (rows < block.stop))
        prediction = detector.predict_without(image[None], own)
        scores.append(prediction.scores)
        maps.append(prediction.maps)
    return Prediction(np.concatenate(scores), np.concatenate(maps))


def unseen_views(
    detector: PatchCore, image: np.ndarray, augmentation: Augmentation, seed: int
) -> Prediction:
    """Fresh augmented views of IMAGE (other draws than the bank's), scored by the detector."""
    fresh = views(image, augmentation, np.random.default_rng(seed + 1))[1:]
    if len(fresh) == 0:
        raise ValueError("one good image and views=1: nothing to calibrate a threshold on")
    return detector.predict(fresh)


def few_shot_calibration(
    scores: np.ndarray, images: int, method: str, target_fpr: float, base: dict | None
) -> dict:
    """Threshold on the held-out scores, its bound over IMAGES, never a guarantee.

    With a BASE calibration (the champion's) the threshold is the larger of the two,
    and both are kept so a reader sees what each rests on.
    """
    new = calibrate(scores, target_fpr)
    # Over images: with unseen views, one image exceeds if any of its views does.
    exceeding = new.exceedances if method == LEAVE_ONE_OUT else int(new.exceedances > 0)
    bound = clopper_pearson_upper(exceeding, images, new.confidence)
    result = new.to_dict() | {
        "n_good": images,
        "exceedances": exceeding,
        "empirical_fpr": exceeding / images,
        "fpr_upper_bound": bound,
        "guaranteed": False,
        "method": method,
        "scores": int(np.size(scores)),
        "independent": False,
    }
    note = (
        f"rests on {images} new good image{'s' if images != 1 else ''} ({method}, "
        f"not independent samples): FPR ≤ {bound:.0%} at {new.confidence:.0%} over "
        f"{images} image{'s' if images != 1 else ''}, no guarantee"
    )
    if base is not None:
        result["base"] = base
        result["threshold"] = max(new.threshold, float(base["threshold"]))
        note += (
            f"; champion's threshold {float(base['threshold']):.4g} on {base.get('n_good', '?')}"
            f" held-out images still bounds the old state (FPR ≤ "
            f"{float(base.get('fpr_upper_bound', 1)):.0%}); threshold = the larger"
        )
    result["note"] = note
    return result


def normal_samples(normal: str | Path | Sequence[str | Path]) -> list[Sample]:
    """Good images from a folder (MVTec layout or flat) or a list of files."""
    if isinstance(normal, str | Path):
        folder = Path(normal)
        if (folder / "train" / "good").is_dir():
            return FolderDataset(folder).train_samples()
        if not folder.is_dir():
            raise DatasetError(f"{folder}: no such folder of good images")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        paths = [Path(p) for p in normal]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DatasetError(f"good images not found: {', '.join(missing[:5])}")
    if not paths:
        raise DatasetError(f"{normal}: no good images")
    return [Sample(p, 0, "good", None) for p in paths]


def images_sha256(paths: Sequence[Path]) -> str:
    """Identity of a set of images by content, whatever folders they came from."""
    return hashlib.sha256("".join(sorted(file_sha256(p) for p in paths)).encode()).hexdigest()


def adapt(
    normal: str | Path | Sequence[str | Path],
    output: str | Path,
    base: str | Path | None = None,
    settings: dict | None = None,
    augmentation: Augmentation = DEFAULT_AUGMENTATION,
    coreset_ratio: float = FEWSHOT_CORESET,
    target_fpr: float = 0.01,
    pixel_fpr: float = 0.001,
    on_error: OnError = "skip",
    progress: bool = True,
    force: bool = False,
    device: str = "auto",
) -> AdaptResult:
    """Extend BASE (a trained model folder) with NORMAL good images, or start a new variant.

    Writes what `train` writes (detector, thresholds.json, training.json, reference.json)
    plus adaptation.json: the images used and each one's held-out score. OUTPUT is
    checked first and written whole or not at all, as `train` does (ModelOutput): another
    model is replaced only with `force`, the folders of the new images never.
    """
    samples = normal_samples(normal)
    target = ModelOutput(output, force, protect={s.path.parent for s in samples})
    if base is not None:
        detector, base_thresholds = load_trained(base, device)
        if settings:
            raise ValueError("adapt: detector settings apply to a new variant, not to a base")
    else:
        detector, base_thresholds = create("patchcore", **(settings or {})).to(device), None
    base_training = json.loads((Path(base) / TRAINING_FILE).read_text()) if base else {}
    config = detector.config
    split = load_split(samples, config.input_size, on_error, False, progress, config.keep_aspect)
    images, paths = split.images, [s.path for s in split.samples]
    base_rows = sum(detector.bank_sizes())
    started = time.perf_counter()
    blocks = extend_bank(
        detector, images, augmentation, coreset_ratio, detector.config.seed, progress
    )
    seconds = time.perf_counter() - started
    if len(images) >= 2:
        method, held_out = LEAVE_ONE_OUT, leave_one_out(detector, images, blocks)
    else:
        method = AUGMENTED_VIEWS
        held_out = unseen_views(detector, images[0], augmentation, detector.config.seed)
    levels = (("image", held_out.scores, target_fpr), ("pixel", held_out.maps.ravel(), pixel_fpr))
    thresholds = {
        level: few_shot_calibration(
            scores, len(images), method, fpr, base_thresholds[level] if base_thresholds else None
        )
        for level, scores, fpr in levels
    }
    reference = Reference.measure(
        held_out.scores, [image_statistics(i) for i in split.own_pixels()]
    )
    summary = {
        "data": str(normal if isinstance(normal, str | Path) else Path(paths[0]).parent),
        "dataset_sha256": images_sha256(paths),
        "detector": detector.kind,
        "train_images": len(images),
        "calibration_images": len(images),
        "skipped": split.skipped,
        "fit_seconds": round(seconds, 2),
        "few_shot": True,
        "adapted_from_dataset_sha256": base_training.get("dataset_sha256"),
    }
    per_image = held_out.scores if method == LEAVE_ONE_OUT else [held_out.scores.max()]
    adaptation = {
        "base": str(base) if base else None,
        "base_bank_rows": base_rows,
        "added_bank_rows": sum(detector.bank_sizes()) - base_rows,
        "coreset_ratio": coreset_ratio,
        "augmentation": augmentation.to_dict(),
        "calibration": method,
        "images": [
            {"file": p.name, "sha256": file_sha256(p), "held_out_score": float(s)}
            for p, s in zip(paths, per_image, strict=True)
        ],
    }
    with target as staging:
        detector.save(staging)
        reference.save(staging)
        for name, body in ((THRESHOLDS_FILE, thresholds), (TRAINING_FILE, summary),
                           (ADAPTATION_FILE, adaptation)):  # fmt: skip
            (staging / name).write_text(json.dumps(body, indent=2))
    log.info(
        "adapted %s with %d images: %s", detector.kind, len(images), thresholds["image"]["note"]
    )
    return AdaptResult(Path(output), detector, thresholds, held_out, summary | adaptation)


def held_out_scores(model_dir: str | Path) -> dict[str, float]:
    """sha256 of each image an adapted model learnt from -> its held-out score."""
    path = Path(model_dir) / ADAPTATION_FILE
    if not path.is_file():
        return {}
    images = json.loads(path.read_text())["images"]
    return {row["sha256"]: row["held_out_score"] for row in images}

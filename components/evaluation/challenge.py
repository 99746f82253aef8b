"""A retrained challenger and the champion, scored on one evaluation set.

The promotion gate compares numbers only when both models were measured on the same
set, and a retraining changes what that set should hold. Here it is:

- the variant's test split, when its folder is given (label 0 or 1 as in MVTec AD);
- reviewed confirmed defects from production (label 1): misses on real defects count;
- the new good images the challenger learnt from (label 0): the new state. They are in
  the challenger's bank, so it is credited only with their held-out (leave-one-out)
  scores from adaptation.json; the champion never saw them and scores them directly.

The set's identity is a sha256 over each image's label and bytes. Both models' metrics
are measured here, and the champion's registry version is re-tagged with its numbers on
this set (registry.record_evaluation), so the gate compares like with like.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from anomalyops.components.data.datasets import FolderDataset, Sample, load_split
from anomalyops.components.evaluation.evaluate import image_metrics
from anomalyops.components.hashing import file_sha256
from anomalyops.components.reports.report import write_report
from anomalyops.components.training.fewshot import held_out_scores
from anomalyops.components.training.train import load_trained


@dataclass
class Challenge:
    challenger: dict  # metrics of the challenger on the set
    champion: dict | None  # metrics of the champion on the same set (None: no champion)
    eval_dataset_sha256: str
    counts: dict  # images per source


def evaluation_samples(
    eval_data: str | Path | None, defects: list[Path], new_good: list[Path]
) -> tuple[list[Sample], dict]:
    """The set's samples and how many came from each source."""
    test = FolderDataset(eval_data).test_samples() if eval_data else []
    reviewed = [Sample(p, 1, "confirmed_defect", None) for p in defects]
    new = [Sample(p, 0, "new_good", None) for p in new_good]
    counts = {"test_split": len(test), "confirmed_defects": len(reviewed), "new_good": len(new)}
    return test + reviewed + new, counts


def set_sha256(samples: list[Sample]) -> str:
    lines = sorted(f"{s.label}:{file_sha256(s.path)}" for s in samples)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def score(model_dir: str | Path, samples: list[Sample], report: str | Path | None = None) -> dict:
    """Metrics of one model on SAMPLES; images it learnt from count by their held-out score."""
    detector, thresholds = load_trained(model_dir)
    config = detector.config
    split = load_split(samples, config.input_size, "raise", False, False, config.keep_aspect)
    prediction = detector.predict(split.images)
    scores = prediction.scores.copy()
    held_out = held_out_scores(model_dir)
    for i, sample in enumerate(split.samples):
        scores[i] = held_out.get(file_sha256(sample.path), scores[i])
    threshold = float(thresholds["image"]["threshold"])
    metrics = image_metrics(split.labels, scores, threshold)
    if report is not None:
        write_report(
            report,
            f"{detector.kind}: challenger on the retraining evaluation set",
            {k: v for k, v in metrics.items() if v is not None} | {"image threshold": threshold},
            split.images,
            prediction.maps,
            scores,
            split.labels,
            split.paths,
            threshold,
            ["images the model learnt from are scored held out (leave-one-out); "
             "their maps show the final model"],
        )  # fmt: skip
    return metrics


def challenge(
    challenger_dir: str | Path,
    champion_dir: str | Path | None,
    eval_data: str | Path | None,
    defects: list[Path],
    new_good: list[Path],
    report: str | Path | None = None,
) -> Challenge:
    """Both models' metrics on the one set built from EVAL_DATA, DEFECTS and NEW_GOOD."""
    samples, counts = evaluation_samples(eval_data, defects, new_good)
    if not samples:
        raise ValueError("retraining evaluation set is empty: give eval data or new images")
    challenger = score(challenger_dir, samples, report)
    champion = score(champion_dir, samples) if champion_dir is not None else None
    return Challenge(challenger, champion, set_sha256(samples), counts)

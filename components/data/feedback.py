"""Reviewers' verdicts as training data: false alarms are normal, confirmed defects are tests.

A false alarm is a good part the model flagged: its kept image joins the normal set the
next retraining learns from. A confirmed defect is a real production defect: it joins
the evaluation set, so the promotion gate also measures misses on real defects. Images
are copied out of the prediction log's file store (folder or bucket), named by
prediction id.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from anomalyops.serving.predictions.log import PredictionLog

log = logging.getLogger(__name__)
NORMAL, DEFECTS = "normal", "defects"


@dataclass
class Feedback:
    normal: list[Path] = field(default_factory=list)  # reviewed false alarms
    defects: list[Path] = field(default_factory=list)  # reviewed confirmed defects
    missing: list[str] = field(default_factory=list)  # reviewed rows without a kept image

    def summary(self) -> str:
        text = f"{len(self.normal)} false alarms, {len(self.defects)} confirmed defects"
        return text + (f" ({len(self.missing)} without a kept image)" if self.missing else "")


def collect_feedback(
    log_path: str | Path, variant: str, out: str | Path, files: str | None = None
) -> Feedback:
    """Copy VARIANT's reviewed images to OUT/normal and OUT/defects.

    LOG_PATH is the log's path or database URL, FILES its image store (folder or bucket;
    default: the folder beside a SQLite log).
    """
    out = Path(out)
    feedback = Feedback()
    with PredictionLog(log_path, files, create=False) as predictions:
        for verdict, folder, kept in (
            ("false_alarm", NORMAL, feedback.normal),
            ("confirmed_defect", DEFECTS, feedback.defects),
        ):
            (out / folder).mkdir(parents=True, exist_ok=True)
            for row in predictions.reviewed(variant, verdict):
                data = predictions.read_file(row["image_file"])
                if data is None:
                    feedback.missing.append(f"prediction {row['id']}: {verdict}, no kept image")
                    log.warning(
                        "prediction %s (%s) has no kept image; left out", row["id"], verdict
                    )
                    continue
                suffix = PurePosixPath(row["image_file"]).suffix
                target = out / folder / f"prediction_{row['id']}{suffix}"
                target.write_bytes(data)
                kept.append(target)
    return feedback


def feedback_images(folder: str | Path, kind: str) -> list[Path]:
    """The images a collected feedback folder holds of KIND (NORMAL or DEFECTS)."""
    path = Path(folder) / kind
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else []

"""What production should look like: kept at training time, read by serving and drift checks.

`reference.json` lies beside `model.json` in a trained model, an export, every Triton
version folder and the registered version. It holds the out-of-fold anomaly scores of the
good images (the same images the threshold was calibrated on) and the image statistics
(serving/images/statistics.py) of every good training image, measured on the model input.
The drift check compares a window of logged predictions against it; the unusable-frame
check refuses images whose statistics lie far outside its range.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anomalyops.serving.contract.json_file import read_json_file
from anomalyops.serving.images.statistics import STATISTICS

REFERENCE_FILE = "reference.json"


class ReferenceError(ValueError):
    """reference.json is missing or malformed; the message names the file and field."""


@dataclass(frozen=True)
class Reference:
    scores: list[float]  # good images' out-of-fold anomaly scores
    statistics: dict[str, list[float]]  # name -> one value per good training image

    def __post_init__(self) -> None:
        """Refuse what would make the frame check or the drift check silently wrong.

        A NaN makes every frame unusable, zeroed statistics let a black frame pass as
        good, a negative one breaks the log-scale bounds: none comes from real images.
        """
        if not isinstance(self.scores, list) or not self.scores:
            raise ReferenceError("reference: field 'scores' must be a non-empty list")
        _check_numbers(self.scores, "scores", low=None)
        if not isinstance(self.statistics, dict):
            raise ReferenceError("reference: field 'statistics' must be an object")
        missing = [name for name in STATISTICS if not self.statistics.get(name)]
        if missing:
            raise ReferenceError(f"reference: statistics {missing} are missing or empty")
        for name in STATISTICS:
            values = self.statistics[name]
            if not isinstance(values, list):
                raise ReferenceError(f"reference: statistics.{name} must be a list of numbers")
            _check_numbers(values, f"statistics.{name}", low=0.0)
            if max(values) <= 0:
                raise ReferenceError(f"reference: statistics.{name} are all zero: no good "
                                     "training image is blank")  # fmt: skip

    @classmethod
    def measure(cls, scores: np.ndarray, statistics: list[dict[str, float]]) -> Reference:
        """From out-of-fold scores and one `image_statistics` dict per training image."""
        return cls(
            scores=[float(s) for s in np.asarray(scores).ravel()],
            statistics={name: [float(row[name]) for row in statistics] for name in STATISTICS},
        )

    def bounds(self, name: str, margin: float = 0.5) -> tuple[float, float]:
        """[min - margin·range, max + margin·range] of a statistic over the training images.

        Wide on purpose: this bounds what the model has any business scoring (a black or
        blown-out frame), not what counts as drift (the drift check does that).
        """
        values = np.asarray(self.statistics[name])
        low, high = float(values.min()), float(values.max())
        spread = max(high - low, 1e-6 * max(abs(high), 1.0))
        if name == "sharpness":  # spans orders of magnitude: widen on a log scale
            log_low, log_high = math.log1p(low), math.log1p(high)
            log_spread = max(log_high - log_low, 0.1)
            return (
                math.expm1(max(log_low - margin * log_spread, 0.0)),
                math.expm1(log_high + margin * log_spread),
            )
        return low - margin * spread, high + margin * spread

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / REFERENCE_FILE
        path.write_text(json.dumps(asdict(self)))
        return path


def _check_numbers(values: list, field: str, low: float | None) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ReferenceError(f"reference: {field} holds {value!r}, not a number")
        try:
            finite = math.isfinite(value)
        except OverflowError:  # an integer too large for a float
            finite = False
        if not finite or (low is not None and value < low):
            limit = "finite" if low is None else f"finite and at least {low:g}"
            raise ReferenceError(f"reference: {field} holds {value!r}; each must be {limit}")


def load_reference(directory: str | Path) -> Reference:
    """The reference of a model, export or version folder (or a reference.json path)."""
    path = Path(directory)
    if path.is_dir():
        path = path / REFERENCE_FILE
    body = read_json_file(path, ReferenceError,
                          "missing; the model was trained before references existed")  # fmt: skip
    if not isinstance(body, dict):
        raise ReferenceError(f"{path}: expected a JSON object, got {type(body).__name__}")
    try:
        return Reference(scores=body.get("scores"), statistics=body.get("statistics"))
    except ReferenceError as error:
        raise ReferenceError(f"{path}: {str(error).removeprefix('reference: ')}") from None

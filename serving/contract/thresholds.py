"""The one rule for a threshold: a finite number above zero.

A NaN or infinite threshold labels every defect `good` without a word (`score > nan` and
`score > inf` are always false), and JSON's `1e400` parses as infinity. Every place a
threshold enters (thresholds.json at load, a served model.json at start-up, a
`--threshold` on the command line, a request's override) checks it here.
"""

from __future__ import annotations

import math
from typing import Any


class ThresholdError(ValueError):
    """A threshold that is not a finite positive number; the message names where it came from."""


def check_threshold(value: Any, where: str) -> float:
    """VALUE as a float when it is a finite number above zero; ThresholdError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ThresholdError(f"{where}: threshold must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise ThresholdError(f"{where}: threshold is an integer too large to be finite") from None
    if not math.isfinite(number) or number <= 0:
        raise ThresholdError(f"{where}: threshold must be finite and above 0, got {value!r}")
    return number


def check_thresholds(thresholds: dict[str, Any], where: str) -> dict[str, Any]:
    """THRESHOLDS ({"image": {"threshold": t}, "pixel": {...}}) with both levels checked."""
    for level in ("image", "pixel"):
        check_threshold((thresholds.get(level) or {}).get("threshold"), f"{where} {level}")
    return thresholds

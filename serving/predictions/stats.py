"""What the review page counts: false alarms per day, and logged scores against the reference.

Plain numbers from prediction-log rows, kept apart from the web app so they can be
checked without a browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DayCount:
    """Flagged predictions of one UTC day and what reviewers said about them."""

    day: str
    flagged: int
    false_alarms: int
    confirmed: int

    @property
    def reviewed(self) -> int:
        return self.false_alarms + self.confirmed

    @property
    def share(self) -> float | None:
        """False alarms among the reviewed ones (None before any review that day)."""
        return self.false_alarms / self.reviewed if self.reviewed else None


def daily_false_alarms(rows: Iterable[dict]) -> list[DayCount]:
    """Per prediction day, newest first: flagged, false alarms, confirmed defects.

    ROWS are flagged predictions with their latest verdict (`PredictionLog.recent`); a
    prediction counts on the day it was scored, whenever it was reviewed.
    """
    days: dict[str, list[int]] = {}
    for row in rows:
        counts = days.setdefault(row["time"][:10], [0, 0, 0])
        counts[0] += 1
        counts[1] += row.get("verdict") == "false_alarm"
        counts[2] += row.get("verdict") == "confirmed_defect"
    return [DayCount(day, *counts) for day, counts in sorted(days.items(), reverse=True)]


@dataclass(frozen=True)
class Histogram:
    """Share of logged and of reference scores per bin (each sums to 1), on shared edges."""

    edges: list[float]
    logged: list[float]
    reference: list[float]
    logged_count: int
    reference_count: int
    threshold: float | None

    def bars(self, width: float, height: float) -> list[dict[str, float]]:
        """SVG geometry: x, width and the two bar heights per bin, tallest bar = HEIGHT."""
        top = max([*self.logged, *self.reference, 1e-12])
        step = width / len(self.logged)
        return [
            {
                "x": i * step,
                "width": step,
                "logged": height * a / top,
                "reference": height * r / top,
            }
            for i, (a, r) in enumerate(zip(self.logged, self.reference, strict=True))
        ]

    def position(self, value: float, width: float) -> float:
        """Where VALUE falls on an axis WIDTH wide."""
        low, high = self.edges[0], self.edges[-1]
        return width * (value - low) / max(high - low, 1e-12)


def score_histogram(
    logged: Sequence[float],
    reference: Sequence[float] | None,
    threshold: float | None,
    bins: int = 30,
) -> Histogram | None:
    """Logged scores against the held-out good scores the threshold was set on.

    None when there is nothing to draw. Shares, not counts: a week of production and
    a few dozen held-out images compare on one axis.
    """
    logged_scores = np.asarray([s for s in logged if s is not None], dtype=float)
    reference_scores = np.asarray(reference or [], dtype=float)
    together = np.concatenate([logged_scores, reference_scores])
    if not together.size:
        return None
    if threshold is not None:
        together = np.append(together, threshold)
    edges = np.histogram_bin_edges(together, bins=bins)

    def shares(scores: np.ndarray) -> list[float]:
        counts = np.histogram(scores, bins=edges)[0]
        return (counts / max(len(scores), 1)).tolist()

    return Histogram(
        edges=edges.tolist(),
        logged=shares(logged_scores),
        reference=shares(reference_scores),
        logged_count=len(logged_scores),
        reference_count=len(reference_scores),
        threshold=threshold,
    )

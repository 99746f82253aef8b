"""Frames a model has no business scoring: a dead, blown-out or defocused camera.

A black and a white frame scored 38.4 and 39.6 against a threshold of 47.1 (issue #12):
"good", so a dead camera would pass every part. A score alone cannot say that the input
is not a part at all; the training images can. A frame whose statistics on the model
input (serving/images/statistics.py: brightness, contrast, sharpness) lie outside the wide
bounds of the training images (`Reference.bounds`), or whose source is so small that
resizing would invent most of its pixels, is labelled 'unusable', never 'good'. The
transformer, `anomalyops predict` and the plant client apply the same check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from anomalyops.serving.contract.reference import Reference
from anomalyops.serving.images.statistics import STATISTICS

# A source side under a quarter of the model input's is upscaled over 4x: mostly invented.
# Only a lower bound: training sizes are not in reference.json, and squashed crops of many
# aspect ratios (magnetic_tile) are legitimate.
MIN_SOURCE_SCALE = 0.25


@dataclass(frozen=True)
class FrameCheck:
    bounds: dict[str, tuple[float, float]]  # statistic -> (low, high) it may take
    min_size: tuple[int, int]  # (height, width) of the smallest source accepted

    @classmethod
    def from_reference(cls, reference: Reference, input_size: tuple[int, int]) -> FrameCheck:
        """The bounds of a model's training images, for a model input of INPUT_SIZE (h, w)."""
        height, width = input_size
        return cls(
            bounds={name: reference.bounds(name) for name in STATISTICS},
            min_size=(math.ceil(height * MIN_SOURCE_SCALE), math.ceil(width * MIN_SOURCE_SCALE)),
        )

    def problems(self, statistics: dict[str, float], source_size: tuple[int, int]) -> list[str]:
        """Why a frame is unusable, one phrase per reason; empty when it may be scored.

        STATISTICS are measured on the model input, SOURCE_SIZE is (height, width) as received.
        """
        found = []
        height, width = source_size
        if height < self.min_size[0] or width < self.min_size[1]:
            found.append(
                f"size {width}x{height} below the smallest usable "
                f"{self.min_size[1]}x{self.min_size[0]}"
            )
        for name, (low, high) in self.bounds.items():
            value = statistics[name]
            if not low <= value <= high:
                found.append(
                    f"{name} {value:.4g} outside [{low:.4g}, {high:.4g}] of the training images"
                )
        return found

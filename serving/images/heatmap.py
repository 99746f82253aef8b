"""Anomaly maps drawn over images: one look for reports, `predict` and the review page.

It lives on the serving side because the review page draws overlays too, and serving
never imports training code; the training reports import it from here.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps


def overlay(image: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """The anomaly map as a heat map (jet) over the H×W×3 uint8 image.

    Opacity follows the score, so normal regions show the part itself and only what
    deviates is coloured.
    """
    scaled = np.clip((anomaly_map - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    heat = colormaps["jet"](scaled)[..., :3] * 255
    alpha = 0.7 * scaled[..., None]
    return (image * (1 - alpha) + heat * alpha).astype(np.uint8)


def map_range(maps: np.ndarray) -> tuple[float, float]:
    """Colour scale shared by a set of maps: from the median (typical normal) to the top."""
    return float(np.percentile(maps, 50)), float(np.percentile(maps, 99.9))

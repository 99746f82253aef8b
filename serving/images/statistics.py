"""Image statistics that say whether a camera still sees what training saw.

Brightness (mean grey level), contrast (grey-level standard deviation) and sharpness
(variance of the Laplacian) are measured the same way by dataset validation, the
training-time reference, the serving path (prediction log, unusable-frame check) and the
drift check, so a number means one thing everywhere.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

STATISTICS = ("brightness", "contrast", "sharpness")


def grey(image: np.ndarray) -> np.ndarray:
    """H×W or H×W×3 uint8 to H×W uint8 luma (ITU-R 601, as PIL's 'L' conversion)."""
    if image.ndim == 2:
        return image
    return np.asarray(Image.fromarray(image).convert("L"))


def laplacian_variance(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: low when the image is out of focus."""
    g = gray.astype(np.float32)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var(dtype=np.float64)) if lap.size else 0.0


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """{brightness, contrast, sharpness} of one uint8 image (grey or RGB)."""
    gray = grey(image)
    return {
        "brightness": float(gray.mean()),
        "contrast": float(gray.std()),
        "sharpness": laplacian_variance(gray),
    }

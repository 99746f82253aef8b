"""A synthetic defect every learned detector's smoke test plants the same way."""

import numpy as np


def plant_checkerboard(images: np.ndarray, top: int, left: int, side: int = 32) -> np.ndarray:
    """A copy of `images` with a black-and-white checkered square at (top, left).

    A plain bright square is no defect on weld, whose parts are often saturated white
    where it would land; black-and-white checks are foreign to every image there."""
    planted = images.copy()
    checks = (np.indices((side, side)).sum(0) // 4 % 2 * 255).astype(np.uint8)
    planted[:, top : top + side, left : left + side] = checks[..., None]
    return planted

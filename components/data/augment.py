"""Augmented views of a few good images: flips, small rotations, brightness changes.

With k = 1 to 16 shots a memory bank has seen one pose and one exposure of each part;
a production image a few degrees turned or a few percent darker then lands between
entries. Views of each shot under those small changes fill that gap. They are not new
samples: a view shares the shot's part, defects and noise, so they widen the bank but
never count as independent evidence for a threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Augmentation:
    views: int = 8  # per shot, the unchanged image included
    flips: bool = True  # horizontal and vertical mirror images
    max_rotation: float = 5.0  # degrees, uniform in ±max_rotation
    brightness: float = 0.1  # grey levels scaled by a factor uniform in 1 ± brightness

    def __post_init__(self) -> None:
        if self.views < 1:
            raise ValueError(f"augmentation views must be at least 1, got {self.views}")
        if not 0 <= self.max_rotation <= 45:
            raise ValueError(f"augmentation max_rotation must be 0 to 45°, got {self.max_rotation}")
        if not 0 <= self.brightness < 1:
            raise ValueError(f"augmentation brightness must be in [0, 1), got {self.brightness}")

    def to_dict(self) -> dict:
        return asdict(self)


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate H×W×3 uint8 about its centre; corners are filled by mirroring, not black.

    Black corners would enter the bank as "normal" dark patches and hide dark defects.
    """
    if degrees == 0:
        return image
    height, width = image.shape[:2]
    pad_y, pad_x = height // 4, width // 4
    padded = np.pad(image, ((pad_y, pad_y), (pad_x, pad_x), (0, 0)), mode="reflect")
    turned = Image.fromarray(padded).rotate(degrees, resample=Image.Resampling.BILINEAR)
    return np.asarray(turned)[pad_y : pad_y + height, pad_x : pad_x + width]


def scale_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """IMAGE (uint8, any shape: one image or a stack) lit FACTOR times as bright, clipped
    as a sensor clips."""
    return np.clip(np.rint(image.astype(np.float32) * factor), 0, 255).astype(np.uint8)


def views(image: np.ndarray, augmentation: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """AUGMENTATION.views images (V×H×W×3 uint8): the image itself, then random variations."""
    out = [image]
    for _ in range(augmentation.views - 1):
        view = image
        if augmentation.flips and rng.random() < 0.5:
            view = view[:, ::-1]
        if augmentation.flips and rng.random() < 0.5:
            view = view[::-1]
        view = rotate(np.ascontiguousarray(view), rng.uniform(-1, 1) * augmentation.max_rotation)
        view = scale_brightness(view, 1 + rng.uniform(-1, 1) * augmentation.brightness)
        out.append(view)
    return np.stack(out)

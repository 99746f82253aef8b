"""Settings the code decides from the training images alone, never from a test split.

- Tiling: images much larger than the backbone's 256² tile are scored in tiles at a
  working size near native resolution (tiling.working_size); smaller ones are resized.
- Intensity standardisation: on where the good images' brightness varies from shot to
  shot (coefficient of variation of per-image mean grey > LIGHTING_SPREAD): magnetic_tile
  0.32 and weld 0.20 against 0.01–0.04 for bottle, transistor and macaroni1.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalyops.components.detectors.tiling import working_size
from anomalyops.serving.images.decode import ImageDecodeError, decode_image, resize

LIGHTING_SPREAD = 0.1
SAMPLE = 64  # images read for the statistics (evenly spread over the set)


def training_set_statistics(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Median native (height, width) and the spread of per-image brightness over a sample
    of training files: what the rules read (serving.image_stats measures single frames)."""
    if not paths:
        raise ValueError("auto settings need at least one training image")
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(SAMPLE, len(paths))).astype(int)]
    sizes, means, errors = [], [], []
    for path in chosen:
        try:
            pixels = decode_image(path)
        except ImageDecodeError as error:  # reported again (skipped or refused) at load
            errors.append(str(error))
            continue
        sizes.append(pixels.shape[:2])
        means.append(float(resize(pixels, (128, 128)).mean()))
    if not sizes:
        raise ValueError(f"no decodable training image among {len(chosen)}: {errors[0]}")
    height, width = np.median(np.asarray(sizes), axis=0).astype(int)
    mean = float(np.mean(means))
    return {
        "native_size": (int(height), int(width)),
        "brightness_spread": float(np.std(means) / mean) if mean > 0 else 0.0,
    }


def auto_settings(
    kind: str, paths: Sequence[str | Path], settings: dict[str, Any]
) -> dict[str, Any]:
    """`settings` with what the user left out decided from the training images."""
    decided = dict(settings)
    stats = training_set_statistics(paths)
    decided.setdefault("standardise", stats["brightness_spread"] > LIGHTING_SPREAD)
    if kind == "patchcore" and "input_size" not in settings and "tile_size" not in settings:
        size = working_size(stats["native_size"])
        if size is not None:
            decided.update(input_size=size, tile_size=(256, 256))
    return decided

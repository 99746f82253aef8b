"""Settings decided from train/good alone: tiling from native size, standardisation from
how much the good images' brightness varies."""

import numpy as np
import pytest
from PIL import Image

from anomalyops.components.detectors.auto import auto_settings, training_set_statistics


def train_paths(root) -> list:
    return sorted((root / "train" / "good").iterdir())


def test_shipped_weld_is_standardised(weld):
    """Runs on every clone: weld ships in tests/data."""
    assert auto_settings("padim", train_paths(weld), {}) == {"standardise": True}
    assert auto_settings("patchcore", train_paths(weld), {}) == {"standardise": True}


def test_large_even_images_are_tiled_and_not_standardised(tmp_path, rng):
    """Runs on every clone: images far over 256² get tiles near native resolution."""
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        noise = rng.integers(100, 140, (900, 1350), dtype=np.uint8)
        Image.fromarray(noise).save(paths[-1])
    decided = auto_settings("patchcore", paths, {})
    assert decided["standardise"] is False and decided["tile_size"] == (256, 256)
    assert decided["input_size"][0] > 256 and decided["input_size"][1] > decided["input_size"][0]


def test_shared_datasets_get_the_settings_their_images_call_for(macaroni, bottle):
    """Needs ../shared/data: skipped on a user's clone, a failure under CI (require_or_skip)."""
    decided = auto_settings("patchcore", train_paths(macaroni), {})
    assert decided == {"standardise": False, "input_size": (448, 672), "tile_size": (256, 256)}
    assert auto_settings("patchcore", train_paths(bottle), {}) == {"standardise": False}


def test_explicit_settings_win(tmp_path):
    paths = []
    for i, level in enumerate((40, 200)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((1200, 1200), level, dtype=np.uint8)).save(paths[-1])
    assert training_set_statistics(paths)["brightness_spread"] == pytest.approx(160 / 240)
    decided = auto_settings("patchcore", paths, {"standardise": False, "input_size": (256, 256)})
    assert decided == {"standardise": False, "input_size": (256, 256)}
    with pytest.raises(ValueError, match="at least one"):
        auto_settings("patchcore", [], {})

"""Settings decided from train/good alone: tiling from native size, standardisation or a
gain reference from how much the good images' brightness varies and clips, the aspect
from the images' shapes."""

import numpy as np
import pytest
from PIL import Image

from anomalyops.components.detectors.auto import (
    auto_settings,
    keeps_one_scale,
    training_set_statistics,
)


def train_paths(root) -> list:
    return sorted((root / "train" / "good").iterdir())


def test_shipped_weld_keeps_its_aspect_and_raw_intensities(weld):
    """Runs on every clone: weld ships in tests/data (400 wide, of many heights; its
    brightness varies, but 73 % of its pixels are clipped black or white)."""
    stats = training_set_statistics(train_paths(weld))
    assert stats["brightness_spread"] > 0.1 and stats["clipped_share"] > 0.5
    wanted = {"standardise": False, "keep_aspect": True}
    assert auto_settings("padim", train_paths(weld), {}) == wanted
    assert auto_settings("patchcore", train_paths(weld), {}) == wanted


def test_varying_light_is_standardised_unless_the_pixels_clip(tmp_path, rng):
    for clip in (False, True):
        paths = []
        for i, level in enumerate((40, 90, 140, 190)):
            paths.append(tmp_path / f"{clip}-{i}.png")
            pixels = rng.integers(level - 20, level + 20, (64, 64))
            if clip:  # a black background and a saturated highlight, as weld's
                pixels[:20], pixels[-20:] = 0, 255
            Image.fromarray(pixels.astype(np.uint8)).save(paths[-1])
        assert training_set_statistics(paths)["brightness_spread"] > 0.15
        assert auto_settings("padim", paths, {})["standardise"] is not clip


def test_the_aspect_is_kept_only_where_that_keeps_one_scale():
    strip = [(101, 400), (256, 400), (392, 400)]  # crops of one 400-wide strip
    assert keeps_one_scale(strip, (256, 256))
    crops = [(222, 103), (403, 632), (300, 300)]  # fitting whole would scale them apart
    assert not keeps_one_scale(crops, (256, 256))
    assert not keeps_one_scale([(512, 512), (600, 600)], (256, 256))  # one shape: stretch
    assert not keeps_one_scale(strip, (256, 400 * 256 // 101))  # width no longer binds


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
    assert decided["gain_reference"] == pytest.approx(119.5, abs=0.5)  # even, unclipped


def test_even_unclipped_light_gets_a_gain_reference_for_patchcore(tmp_path, rng):
    for clip in (False, True):
        paths = []
        for i in range(3):
            paths.append(tmp_path / f"{clip}-{i}.png")
            pixels = rng.integers(80, 120, (64, 64))
            if clip:  # a black background and a saturated highlight, as weld's
                pixels[:20], pixels[-20:] = 0, 255
            Image.fromarray(pixels.astype(np.uint8)).save(paths[-1])
        stats = training_set_statistics(paths)
        decided = auto_settings("patchcore", paths, {})
        assert decided.get("gain_reference") == (
            None if clip else round(stats["mean_brightness"], 1)
        )
        assert "gain_reference" not in auto_settings("padim", paths, {})  # chosen on PatchCore
        assert auto_settings("patchcore", paths, {"gain_reference": None})["gain_reference"] is None
        assert "gain_reference" not in auto_settings("patchcore", paths, {"standardise": True})


def test_letterboxed_sets_get_no_gain_reference(tmp_path, rng):
    """Crops of one strip are fitted whole on black: the border would enter the mean."""
    paths = []
    for i, height in enumerate((101, 256, 392)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(80, 120, (height, 400), dtype=np.uint8)).save(paths[-1])
    decided = auto_settings("patchcore", paths, {})
    assert decided["keep_aspect"] is True and "gain_reference" not in decided


def test_shared_datasets_get_the_settings_their_images_call_for(macaroni, bottle):
    """Needs ../shared/data: skipped on a user's clone, a failure under CI (require_or_skip)."""
    decided = auto_settings("patchcore", train_paths(macaroni), {})
    assert decided == {"standardise": False, "gain_reference": 63.4, "input_size": (448, 672),
                       "tile_size": (256, 256), "keep_aspect": False}  # fmt: skip
    wanted = {"standardise": False, "keep_aspect": False}
    two_scale = {"input_size": (512, 512), "coarse_size": (256, 256)}
    assert auto_settings("patchcore", train_paths(bottle), {}) == wanted | two_scale
    assert auto_settings("padim", train_paths(bottle), {}) == wanted  # PatchCore's alone


@pytest.mark.parametrize(
    "native, two_scale",
    [((512, 512), True), ((480, 420), True), ((400, 400), False), ((256, 256), False)],
)
def test_parts_near_512_are_scored_at_two_scales(tmp_path, rng, native, two_scale):
    """Runs on every clone: from 3 tiles' area up to where tiling starts (4 tiles)."""
    path = tmp_path / "part.png"
    Image.fromarray(rng.integers(100, 140, native, dtype=np.uint8)).save(path)
    decided = auto_settings("patchcore", [path], {})
    assert ("coarse_size" in decided) is two_scale
    if two_scale:
        assert decided["input_size"] == (512, 512) and decided["coarse_size"] == (256, 256)
    assert "coarse_size" not in auto_settings("patchcore", [path], {"input_size": (256, 256)})
    one_scale = auto_settings("patchcore", [path], {"coarse_size": None})
    assert one_scale["coarse_size"] is None
    assert one_scale.get("input_size") == decided.get("input_size")


def test_explicit_settings_win(tmp_path):
    paths = []
    for i, level in enumerate((40, 200)):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((1200, 1200), level, dtype=np.uint8)).save(paths[-1])
    assert training_set_statistics(paths)["brightness_spread"] == pytest.approx(160 / 240)
    chosen = {"standardise": False, "input_size": (256, 256), "keep_aspect": True}
    assert auto_settings("patchcore", paths, chosen) == chosen
    with pytest.raises(ValueError, match="at least one"):
        auto_settings("patchcore", [], {})

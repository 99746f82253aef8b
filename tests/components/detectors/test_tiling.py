"""Tiled PatchCore: the layout, max-stitching, and that the image score is the tiles' max."""

import itertools

import numpy as np
import onnxruntime as ort
import pytest
import torch

from anomalyops.components.deploy.export import export
from anomalyops.components.detectors import create
from anomalyops.components.detectors.tiling import (
    ALIGN,
    crop,
    resample,
    stitch,
    tile_grid,
    working_size,
)
from anomalyops.serving.images.decode import resize
from anomalyops.serving.triton.repository import model_config

SIZE, TILE = (256, 384), (128, 128)


def test_grid_covers_the_image_on_the_feature_grid_with_overlap():
    grid = tile_grid((520, 776), (256, 256), 0.25)
    assert grid.count == 12 and grid.tops[-1] + 256 == 520 and grid.lefts[-1] + 256 == 776
    for offsets in (grid.tops, grid.lefts):
        assert all(o % ALIGN == 0 for o in offsets)
        assert all(b - a <= 256 - 64 for a, b in itertools.pairwise(offsets))
    assert tile_grid((256, 256), None).count == 1
    with pytest.raises(ValueError, match="multiple of 8"):
        tile_grid((250, 400), (128, 128))


def test_tiling_is_decided_from_native_size():
    assert working_size((256, 256)) is None and working_size((512, 512)) is None
    assert working_size((1000, 1500)) == (448, 672)  # macaroni1: aspect kept, ≤ 0.3 MP
    assert working_size((3000, 4000), max_pixels=10**6) == (864, 1152)


def test_stitch_takes_the_maximum_where_tiles_overlap():
    grid = tile_grid((64, 96), (32, 32), 0.25)
    per_tile = torch.arange(1, grid.count + 1, dtype=torch.float32)
    scores = per_tile.repeat(2).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)
    canvas = stitch(scores, grid)
    assert canvas.shape == (2, 1, 8, 12)
    assert canvas.amax().item() == grid.count and canvas.amin().item() >= 1
    images = torch.arange(2 * 64 * 96 * 3).reshape(2, 64, 96, 3)
    tiles = crop(images, grid)
    top, left = grid.positions[-1]
    assert torch.equal(tiles[2 * grid.count - 1], images[1, top : top + 32, left : left + 32])


@pytest.fixture(scope="module")
def tiled(weld_splits):
    from anomalyops.serving.images.decode import resize

    train, test = weld_splits
    images = np.stack([resize(i, SIZE) for i in train.images[:6]])
    detector = create("patchcore", input_size=SIZE, tile_size=TILE, coreset_ratio=0.1)
    detector.fit(images, progress=False)
    return detector, np.stack([resize(i, SIZE) for i in test.images[::15]])


def test_image_score_is_the_maximum_over_tiles(tiled):
    detector, images = tiled
    prediction = detector.predict(images)
    assert prediction.maps.shape == (len(images), *SIZE)
    single = create("patchcore", input_size=TILE, coreset_ratio=0.1)
    single.model.memory_bank = detector.model.memory_bank
    single.fitted = True
    grid = detector.model.grid
    for image, score in zip(images, prediction.scores, strict=True):
        tiles = np.stack([image[t : t + TILE[0], s : s + TILE[1]] for t, s in grid.positions])
        np.testing.assert_allclose(score, single.predict(tiles).scores.max(), rtol=1e-5)


def test_tiled_export_scores_like_the_detector_and_sizes_the_batch(tiled, tmp_path):
    detector, images = tiled
    thresholds = {"image": {"threshold": 1.0}, "pixel": {"threshold": 1.0}}
    contract = export(detector, tmp_path, thresholds)
    assert (contract.height, contract.width) == SIZE
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    anomaly_map, score = session.run(["anomaly_map", "score"], {"image": images[:3]})
    expected = detector.predict(images[:3])
    np.testing.assert_allclose(score, expected.scores, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(anomaly_map[:, 0], expected.maps, rtol=1e-4, atol=1e-3)
    per_image = detector.model.scratch_bytes_per_image()
    assert contract.resources["scratch_bytes_per_image"] == per_image
    assert contract.max_batch_size == min(32, (1 << 30) // per_image)
    assert f"max_batch_size: {contract.max_batch_size}" in model_config("m", contract, "python", 1)


@pytest.mark.parametrize("side", [120, 80, 104, 240])
def test_resample_is_what_a_smaller_decode_gives(weld_splits, side):
    """A two-scale model's coarse input: PIL's antialiased bilinear resize in graph ops,
    bit-exact by any factor (PIL's own fixed-point weights)."""
    images = weld_splits[0].images[:4, :240, :240]
    small = resample(torch.from_numpy(images), (side, side)).numpy()
    expected = np.stack([resize(image, (side, side)) for image in images])
    assert small.shape == expected.shape and small.dtype == np.uint8
    np.testing.assert_array_equal(small, expected)

"""EfficientAD: shapes, training, save/load, ONNX parity, seeding, and a planted defect."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from planted import plant_checkerboard

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.deploy.export import EXTERNAL_DATA_BYTES, export_onnx
from anomalyops.components.detectors import create, load_detector
from anomalyops.components.detectors.efficientad.detector import (
    hard_loss,
    jitter_colours,
    shuffle_tiles,
)

# Mechanics: an untrained teacher, 64² inputs, a few steps.
QUICK = {"input_size": (64, 64), "steps": 12, "batch_size": 4, "validate_every": 4}


@pytest.fixture(scope="module")
def small_weld(weld):
    dataset = FolderDataset(weld)
    return dataset.load_train((64, 64), progress=False), dataset.load_test((64, 64), progress=False)


@pytest.fixture(scope="module")
def fitted(small_weld):
    train, _ = small_weld
    return create("efficientad", weights="random", **QUICK).fit(train.images, progress=False)


def test_fit_then_predict_gives_maps_at_input_size(fitted, small_weld):
    _, test = small_weld
    images = test.images[::10]
    prediction = fitted.predict(images)
    assert prediction.maps.shape == (len(images), 64, 64)
    assert prediction.scores.shape == (len(images),) and prediction.scores.dtype == np.float32
    assert np.isfinite(prediction.scores).all() and np.isfinite(prediction.maps).all()
    with torch.no_grad():
        pixels = fitted.model.pixels(torch.from_numpy(images[:1]))
        teacher = fitted.model.teacher_features(torch.from_numpy(images[:1]))
        assert fitted.model.student(pixels).shape == (1, 2 * teacher.shape[1], 8, 8)
        assert fitted.model.autoencoder(pixels).shape == teacher.shape


def test_teacher_is_standardised_on_training_images(fitted, small_weld):
    train, _ = small_weld
    with torch.no_grad():
        features = fitted.model.teacher_features(torch.from_numpy(train.images))
    means, stds = features.mean((0, 2, 3)), features.std((0, 2, 3))
    # The held-out tenth is not in the statistics: near 0 and 1, not exactly.
    assert means.abs().max() < 0.3 and (stds - 1).abs().max() < 0.3


def test_training_loss_goes_down(fitted):
    log = fitted.log
    assert log.steps == QUICK["steps"] and len(log.losses) == 3
    assert log.losses[-1] < log.losses[0]
    assert log.validation[-1] < log.validation[0]


def test_save_load_gives_identical_scores_and_maps(fitted, small_weld, tmp_path):
    _, test = small_weld
    images = test.images[::15]
    before = fitted.predict(images)
    again = load_detector(fitted.save(tmp_path / "model")).predict(images)
    np.testing.assert_array_equal(before.scores, again.scores)
    np.testing.assert_array_equal(before.maps, again.maps)


def test_onnx_graph_matches_predict(fitted, small_weld, tmp_path):
    _, test = small_weld
    images = test.images[::20]
    export_onnx(fitted, tmp_path / "model.onnx", EXTERNAL_DATA_BYTES)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    anomaly_map, score = session.run(["anomaly_map", "score"], {"image": images})
    expected = fitted.predict(images)
    np.testing.assert_allclose(score, expected.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(anomaly_map[:, 0], expected.maps, rtol=1e-4, atol=1e-5)


def test_same_seed_gives_same_scores(small_weld):
    train, test = small_weld
    settings = QUICK | {"steps": 4}
    first, second = (
        create("efficientad", weights="random", **settings).fit(train.images, progress=False)
        for _ in range(2)
    )
    np.testing.assert_array_equal(
        first.predict(test.images[:4]).scores, second.predict(test.images[:4]).scores
    )
    other = create("efficientad", weights="random", **settings | {"seed": 1})
    assert not np.array_equal(
        other.fit(train.images, progress=False).predict(test.images[:4]).scores,
        first.predict(test.images[:4]).scores,
    )


def test_a_planted_defect_scores_above_its_clean_image(weld):
    dataset = FolderDataset(weld)
    train = dataset.load_train((128, 128), progress=False)
    test = dataset.load_test((128, 128), progress=False)
    detector = create("efficientad", input_size=(128, 128), steps=80, validate_every=40)
    detector.fit(train.images, progress=False)
    clean = test.images[test.labels == 0][:4]
    planted = plant_checkerboard(clean, 48, 48)
    clean_scores, planted_scores = detector.predict(clean).scores, detector.predict(planted).scores
    assert (planted_scores > clean_scores).all(), (clean_scores, planted_scores)


def test_input_size_must_match_the_pdn_stride():
    with pytest.raises(ValueError, match="multiples of 8"):
        create("efficientad", weights="random", input_size=(100, 100))


def test_hard_loss_keeps_only_the_largest_differences():
    difference = torch.arange(10_000, dtype=torch.float32).reshape(1, 1, 100, 100)
    # The top 0.1 % of 0 … 9999: the values 9990 (at the quantile) up to 9999.
    assert float(hard_loss(difference, 0.999)) == pytest.approx(9994.5, abs=0.01)


def test_augmentations_keep_images_plausible(rng):
    images = torch.from_numpy(rng.integers(0, 256, (6, 32, 48, 3), dtype=np.uint8))
    jittered = jitter_colours(images, 0.2)
    assert jittered.shape == images.shape and jittered.min() >= 0 and jittered.max() <= 255
    assert not torch.equal(jittered, images.float())
    shuffled = shuffle_tiles(images, 16)
    assert not torch.equal(shuffled, images)
    for image, copy in zip(images, shuffled, strict=True):  # the same tiles, moved
        tiles = image.reshape(2, 16, 3, 16, 3).transpose(1, 2).reshape(6, -1)
        moved = copy.reshape(2, 16, 3, 16, 3).transpose(1, 2).reshape(6, -1)
        assert sorted(map(tuple, tiles.tolist())) == sorted(map(tuple, moved.tolist()))

"""The feature-reconstruction autoencoder on real weld images: mechanics on a small
random-weight backbone, then whether a briefly trained one finds a planted defect."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from planted import plant_checkerboard

from anomalyops.components.deploy.export import export_onnx
from anomalyops.components.detectors import create, load_detector
from anomalyops.components.detectors.autoencoder.torch_model import Memory
from anomalyops.serving.images.decode import resize

SMALL = {"input_size": (64, 64), "steps": 40, "validate_every": 10}


def resized(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([resize(image, size) for image in images])


@pytest.fixture(scope="module")
def small_weld(weld_splits):
    train, test = weld_splits
    return resized(train.images, (64, 64)), resized(test.images[::10], (64, 64))


@pytest.fixture(scope="module")
def fitted(small_weld):
    return create("autoencoder", weights="random", **SMALL).fit(small_weld[0], progress=False)


def test_fit_then_predict_gives_maps_and_finite_scores(fitted, small_weld):
    prediction = fitted.predict(small_weld[1])
    assert prediction.scores.shape == (len(small_weld[1]),)
    assert prediction.maps.shape == (len(small_weld[1]), 64, 64)
    assert np.isfinite(prediction.scores).all() and np.isfinite(prediction.maps).all()
    assert prediction.scores.std() > 0


def test_the_reconstruction_error_goes_down(fitted):
    log = fitted.log
    assert log.steps == SMALL["steps"] and len(log.losses) == 4
    assert log.losses[-1] < 0.9 * log.losses[0]
    assert log.validation[-1] < log.validation[0]


def test_memory_weights_are_sparse_and_sum_to_one():
    memory = Memory(slots=64, dim=8, shrink=2.5)
    weights = memory.attention(torch.randn(5, 7, 8) * 3)
    assert torch.allclose(weights.sum(-1), torch.ones(5, 7))
    assert ((weights == 0) | (weights >= memory.threshold)).all()
    assert (weights == 0).float().mean() > 0.5


def test_save_load_gives_identical_scores_and_maps(fitted, small_weld, tmp_path):
    before = fitted.predict(small_weld[1])
    again = load_detector(fitted.save(tmp_path / "model")).predict(small_weld[1])
    np.testing.assert_array_equal(before.scores, again.scores)
    np.testing.assert_array_equal(before.maps, again.maps)


def test_exported_graph_matches_predict(fitted, small_weld, tmp_path):
    path = tmp_path / "model.onnx"
    export_onnx(fitted, path, external_data_bytes=2**31)
    anomaly_map, score = ort.InferenceSession(str(path)).run(
        ["anomaly_map", "score"], {"image": small_weld[1]}
    )
    expected = fitted.predict(small_weld[1])
    np.testing.assert_allclose(score, expected.scores, rtol=1e-4)
    np.testing.assert_allclose(anomaly_map[:, 0], expected.maps, rtol=1e-4,
                               atol=1e-4 * float(expected.maps.max()))  # fmt: skip


def test_a_refit_starts_afresh_and_the_seed_decides(fitted, small_weld):
    """Cross-fitting refits a copy on fewer images: what it learnt before must go."""
    train, test = small_weld
    refit = copy.deepcopy(fitted).fit(train, progress=False)
    np.testing.assert_array_equal(refit.predict(test).scores, fitted.predict(test).scores)
    other = create("autoencoder", weights="random", **SMALL, seed=1).fit(train, progress=False)
    assert not np.allclose(other.predict(test).scores, fitted.predict(test).scores)


def test_a_planted_defect_scores_above_its_clean_image(weld_splits):
    train, test = weld_splits
    detector = create("autoencoder", steps=300).fit(train.images, progress=False)
    clean = test.images[test.labels == 0][::4]
    planted = plant_checkerboard(clean, 112, 112)
    assert (detector.predict(planted).scores > detector.predict(clean).scores).all()

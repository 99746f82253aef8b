"""STPM on real weld images: the mechanics on a small random-weight pair, then whether a
student trained briefly behind the ImageNet teacher finds a planted defect."""

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch
from planted import plant_checkerboard

from anomalyops.components.deploy.export import export_onnx
from anomalyops.components.detectors import create, load_detector
from anomalyops.components.detectors.stpm.detector import recalibrate
from anomalyops.serving.images.decode import resize

SMALL = {"input_size": (64, 64), "steps": 12, "batch_size": 4, "validate_every": 4}


def resized(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([resize(image, size) for image in images])


@pytest.fixture(scope="module")
def small_weld(weld_splits):
    train, test = weld_splits
    return resized(train.images, (64, 64)), resized(test.images[::10], (64, 64))


@pytest.fixture(scope="module")
def fitted(small_weld):
    return create("stpm", weights="random", **SMALL).fit(small_weld[0], progress=False)


def test_fit_then_predict_gives_maps_and_finite_scores(fitted, small_weld):
    prediction = fitted.predict(small_weld[1])
    assert prediction.scores.shape == (len(small_weld[1]),)
    assert prediction.maps.shape == (len(small_weld[1]), 64, 64)
    assert np.isfinite(prediction.scores).all() and np.isfinite(prediction.maps).all()
    assert prediction.scores.std() > 0  # images are told apart, not one constant


def test_the_student_learns_the_teacher(fitted):
    log = fitted.log
    assert log.steps == SMALL["steps"] and len(log.losses) == 3
    assert log.losses[-1] < 0.8 * log.losses[0]
    assert log.validation[-1] < log.validation[0]


def test_save_load_gives_identical_scores_and_maps(fitted, small_weld, tmp_path):
    before = fitted.predict(small_weld[1])
    again = load_detector(fitted.save(tmp_path / "model")).predict(small_weld[1])
    np.testing.assert_array_equal(before.scores, again.scores)
    np.testing.assert_array_equal(before.maps, again.maps)


def test_exported_graph_holds_teacher_and_student(fitted, small_weld, tmp_path):
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
    other = create("stpm", weights="random", **SMALL, seed=1).fit(train, progress=False)
    assert not np.allclose(other.predict(test).scores, fitted.predict(test).scores)


def test_recalibrated_batch_norms_hold_the_statistics_of_the_batches_shown():
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    network[1].running_mean.fill_(5.0)  # stale statistics of older weights
    generator = torch.Generator().manual_seed(0)
    batches = [torch.randn(2, 3, 8, 8, generator=generator) * 2 + 1 for _ in range(3)]
    recalibrate(network, batches)
    with torch.no_grad():
        outputs = torch.stack([network[0](b) for b in batches])
    # A plain average over the batches shown: their means, their (unbiased) variances.
    torch.testing.assert_close(network[1].running_mean, outputs.mean((0, 1, 3, 4)))
    torch.testing.assert_close(network[1].running_var, outputs.var((1, 3, 4)).mean(0))
    assert network[1].momentum == 0.1 and not network.training


def test_training_crops_lie_on_the_teacher_grid():
    detector = create("stpm", weights="random", input_size=(256, 192), crop=100)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        ys, xs = detector._crop(generator)
        for window, side in ((ys, 256), (xs, 192)):
            assert window.start % 16 == 0 and window.stop - window.start == 96
            assert window.stop <= side


def test_a_planted_defect_scores_above_its_clean_image(weld_splits):
    train, test = weld_splits
    detector = create("stpm", steps=150, validate_every=50).fit(train.images, progress=False)
    clean = test.images[test.labels == 0][::4]
    planted = plant_checkerboard(clean, 112, 112)
    assert (detector.predict(planted).scores > detector.predict(clean).scores).all()

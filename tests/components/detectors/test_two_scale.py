"""Two-scale PatchCore on real weld images: a fine bank and a whole-image coarse bank,
each in units of its own out-of-fold threshold, fused by their maximum."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from parity import ATOL, MAP_RTOL, RTOL

from anomalyops.components.deploy.export import export_onnx
from anomalyops.components.detectors import create, load_detector
from anomalyops.components.detectors.tiling import resample
from anomalyops.components.training.fewshot import extend_bank, leave_one_out
from anomalyops.components.training.folds import session_folds
from anomalyops.components.training.thresholds import calibrate

FINE, COARSE = (128, 128), (64, 64)  # small inputs: the behaviour is the same, the CPU is shared


@pytest.fixture(scope="module")
def images(weld):
    from anomalyops.components.data.datasets import FolderDataset

    return FolderDataset(weld).load_train(FINE, progress=False).images


@pytest.fixture(scope="module")
def two_scale(images):
    detector = create("patchcore", input_size=FINE, coarse_size=COARSE)
    oof = detector.cross_fit(images, session_folds(len(images)), progress=False)
    return detector, oof


def test_fused_scores_are_each_scale_in_units_of_its_own_threshold(images, two_scale):
    _, oof = two_scale
    folds = session_folds(len(images))
    small = resample(torch.from_numpy(images), COARSE).numpy()
    assert small.shape[1:3] == COARSE
    scaled = []
    for size, scale_images in ((FINE, images), (COARSE, small)):
        alone = create("patchcore", input_size=size).cross_fit(scale_images, folds, False)
        median = np.median(alone.scores)
        scaled.append((alone.scores - median) / (calibrate(alone.scores).threshold - median))
    np.testing.assert_allclose(oof.scores, np.maximum(*scaled), rtol=1e-5, atol=1e-5)
    assert oof.maps.shape == images.shape[:3]
    # At each scale's own threshold the fused score is 1: no scale drowns the other.
    assert np.isclose(scaled[0].max(), 1) and np.isclose(scaled[1].max(), 1)


def test_in_process_prediction_matches_the_torch_model(images, two_scale):
    detector, _ = two_scale
    batch = images[:3]
    prediction = detector.predict(batch)
    with torch.inference_mode():
        exported_path = detector.model(torch.from_numpy(batch))
    np.testing.assert_allclose(prediction.scores, exported_path.score.numpy(), atol=1e-4)
    np.testing.assert_allclose(prediction.maps, exported_path.anomaly_map[:, 0].numpy(),
                               atol=1e-3)  # fmt: skip


def test_saved_once_and_loaded_back_exactly(images, two_scale, tmp_path):
    detector, _ = two_scale
    detector.save(tmp_path)
    state = detector.model.state_dict()
    assert "coarse.memory_bank" in state and "scale_norm" in state
    assert not any(key.startswith("coarse.backbone") for key in state)  # one backbone
    loaded = load_detector(tmp_path)
    assert loaded.bank_sizes() == detector.bank_sizes() and len(loaded.bank_sizes()) == 2
    np.testing.assert_array_equal(loaded.predict(images[:2]).scores,
                                  detector.predict(images[:2]).scores)  # fmt: skip


def test_out_of_fold_leaves_each_fold_out_at_both_scales(images, two_scale):
    detector, oof = two_scale
    again = detector.out_of_fold(images, session_folds(len(images)), progress=False)
    np.testing.assert_allclose(again.scores, oof.scores, rtol=1e-4, atol=1e-4)
    assert np.median(oof.scores - detector.predict(images).scores) > 0  # unseen score higher


def test_few_shot_leave_one_out_excludes_an_image_from_both_banks(images):
    detector = create("patchcore", input_size=FINE, coarse_size=COARSE)
    detector.cross_fit(images[:20], session_folds(20), progress=False)
    before = detector.bank_sizes()
    new = images[20:23]
    blocks = extend_bank(detector, new)
    assert all(len(b) == 2 for b in blocks)
    assert all(a < b for a, b in zip(before, detector.bank_sizes(), strict=True))
    held_out = leave_one_out(detector, new, blocks)
    assert (held_out.scores > detector.predict(new).scores).all()


@pytest.mark.parametrize(
    "coarse, message",
    [
        ((60, 64), "multiples of 8"),
        ((64, 192), "smaller than"),
        ((128, 128), "smaller than"),
        ((64,), "is not a tuple"),
    ],
)
def test_bad_coarse_size_is_named(coarse, message):
    with pytest.raises(ValueError, match=message):
        create("patchcore", input_size=FINE, coarse_size=coarse)


def test_a_tiled_model_gets_a_whole_image_coarse_scale(images, tmp_path):
    """Tiles at the fine scale, the whole image resized (not by a whole factor) at the
    coarse one, in process as in the exported graph."""
    detector = create("patchcore", input_size=FINE, tile_size=(64, 64), coarse_size=(48, 48))
    oof = detector.cross_fit(images[:20], session_folds(20), progress=False)
    assert detector.model.grid.count == 9 and detector.coarse.model.grid.count == 1
    assert oof.maps.shape == (20, *FINE)
    batch = images[20:23]
    prediction = detector.predict(batch)
    export_onnx(detector, tmp_path / "model.onnx", 1 << 40)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    anomaly_map, score = session.run(["anomaly_map", "score"], {"image": batch})
    np.testing.assert_allclose(score, prediction.scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(anomaly_map[:, 0], prediction.maps, rtol=MAP_RTOL, atol=ATOL)

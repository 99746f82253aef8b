"""Each detector on the real battery-weld data: accuracy floor, save/load, paths agree."""

import numpy as np
import pytest
import torch

from anomalyops.components.detectors import create, load_detector
from anomalyops.components.evaluation.metrics import auroc

# Floors sit below the measured values (README table) with room for run-to-run noise.
FLOORS = {"patchcore": 0.93, "padim": 0.80}


@pytest.fixture(scope="module", params=sorted(FLOORS))
def fitted(request, weld_splits):
    train, _ = weld_splits
    return create(request.param).fit(train.images, progress=False)


def test_image_auroc_above_floor(fitted, weld_splits):
    _, test = weld_splits
    prediction = fitted.predict(test.images)
    assert prediction.maps.shape == test.images.shape[:3]
    assert auroc(test.labels, prediction.scores) >= FLOORS[fitted.kind]


def test_save_load_gives_identical_scores(fitted, weld_splits, tmp_path):
    _, test = weld_splits
    images = test.images[::10]
    before = fitted.predict(images)
    again = load_detector(fitted.save(tmp_path / "model")).predict(images)
    np.testing.assert_array_equal(before.scores, again.scores)
    np.testing.assert_array_equal(before.maps, again.maps)
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pt"))


def test_exportable_forward_matches_in_process_path(fitted, weld_splits):
    _, test = weld_splits
    images = test.images[:6]
    with torch.inference_mode():
        exported = fitted.model(torch.from_numpy(images))
    in_process = fitted.predict(images)
    np.testing.assert_allclose(exported.score.numpy(), in_process.scores, rtol=1e-4, atol=1e-4)


def test_unfitted_and_wrong_input_are_refused(weld_splits):
    detector = create("patchcore", weights="random")
    with pytest.raises(RuntimeError, match="not fitted"):
        detector.predict(weld_splits[0].images[:1])
    with pytest.raises(ValueError, match="uint8"):
        detector.fit(weld_splits[0].images[:2].astype(np.float32))


def test_patchcore_update_adds_new_good_images(weld_splits):
    train, _ = weld_splits
    base, new = train.images[:30], train.images[30:]
    detector = create("patchcore").fit(base, progress=False)
    size = len(detector.model.memory_bank)
    before = detector.predict(new).scores
    detector.update(new, progress=False)
    after = detector.predict(new).scores
    assert len(detector.model.memory_bank) > size
    assert (after < before).all()

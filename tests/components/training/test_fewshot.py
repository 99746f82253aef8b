"""Few-shot adaptation on real weld images: a turned fixture, a brand-new variant."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from anomalyops.components.data.augment import Augmentation, rotate, scale_brightness, views
from anomalyops.components.data.datasets import DatasetError, FolderDataset
from anomalyops.components.detectors import create
from anomalyops.components.evaluation.metrics import auroc
from anomalyops.components.training.fewshot import (
    ADAPTATION_FILE,
    AUGMENTED_VIEWS,
    LEAVE_ONE_OUT,
    adapt,
    extend_bank,
    held_out_scores,
)
from anomalyops.components.training.thresholds import clopper_pearson_upper
from anomalyops.components.training.train import load_trained, train
from anomalyops.serving.contract.reference import load_reference

SIZE = (128, 128)  # small input: the behaviour is the same, the CPU is shared
TURNED = 10.0  # degrees: the fixture holds parts turned (at 128 px, 8 % darker barely alarms)
FAST = Augmentation(views=4)


@pytest.fixture(scope="module")
def base(weld, tmp_path_factory):
    return train(weld, tmp_path_factory.mktemp("base"), settings={"input_size": SIZE},
                 progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def turned(weld):
    """The weld test split as a turned fixture shows it: (good, defective, good unturned)."""
    test = FolderDataset(weld).load_test(SIZE, progress=False)
    shifted = np.stack([rotate(image, TURNED) for image in test.images])
    return shifted[test.labels == 0], shifted[test.labels == 1], test.images[test.labels == 0]


def write_images(folder, images):
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"shot_{i:02d}.png")
    return folder


def test_views_keep_the_image_and_vary_it_within_bounds(rng):
    image = np.full((64, 48, 3), 120, dtype=np.uint8)
    image[10:20, 5:15] = 200
    out = views(image, Augmentation(views=6, max_rotation=10, brightness=0.1), rng)
    assert out.shape == (6, 64, 48, 3) and np.array_equal(out[0], image)
    assert not all(np.array_equal(v, image) for v in out[1:])
    # Rotation mirrors into the corners: a flat image stays flat, never black corners.
    flat = np.full((64, 48, 3), 90, dtype=np.uint8)
    assert np.all(rotate(flat, 10.0) == 90)
    assert scale_brightness(flat, 0.9).max() == 81
    with pytest.raises(ValueError, match="views must be at least 1"):
        Augmentation(views=0)


def test_adapting_to_a_turned_fixture_brings_good_scores_back_and_keeps_defects_high(
    base, turned, tmp_path
):
    good, defective, unturned = turned
    shots, unseen = good[:8], good[8:]
    threshold = base.image_threshold.threshold
    before = base.detector.predict(unseen).scores
    # precondition: turning raises good parts' scores (a threshold set on all 37 good
    # images out of fold may still pass most of them: fewer alarms, the same drift)
    plain = base.detector.predict(unturned[8:]).scores
    assert np.median(before) > np.median(plain) * 1.1, "precondition: turning raises scores"

    result = adapt(write_images(tmp_path / "shots", shots), tmp_path / "adapted",
                   base=base.model_dir, augmentation=FAST, progress=False)  # fmt: skip
    detector, thresholds = load_trained(tmp_path / "adapted")
    image = thresholds["image"]
    after = detector.predict(unseen).scores
    assert (after <= image["threshold"]).all(), "unseen turned good images still alarm"
    assert after.mean() < before.mean()
    defect_scores = detector.predict(defective).scores
    labels = np.r_[np.zeros(len(unseen)), np.ones(len(defect_scores))]
    assert auroc(labels, np.r_[after, defect_scores]) >= 0.9
    assert np.median(defect_scores) > after.max()

    # Honest threshold: 8 images, leave-one-out, never guaranteed; the champion's kept.
    assert image["method"] == LEAVE_ONE_OUT and image["n_good"] == 8
    assert not image["guaranteed"] and not image["independent"]
    assert image["fpr_upper_bound"] == pytest.approx(
        clopper_pearson_upper(image["exceedances"], 8, 0.95)
    )
    assert image["threshold"] == max(threshold, max(result.held_out.scores))
    assert (
        image["base"]["threshold"] == threshold and "rests on 8 new good images" in (image["note"])
    )
    # The bank grew (the champion's rows kept), and the reference is the new state's.
    assert len(detector.model.memory_bank) > len(base.detector.model.memory_bank)
    assert np.array_equal(
        detector.model.memory_bank[: len(base.detector.model.memory_bank)],
        base.detector.model.memory_bank,
    )
    reference = load_reference(tmp_path / "adapted")
    assert reference.scores == pytest.approx(result.held_out.scores.tolist())
    assert len(reference.statistics["brightness"]) == 8
    saved = json.loads((tmp_path / "adapted" / ADAPTATION_FILE).read_text())
    assert len(saved["images"]) == 8 and saved["base_bank_rows"] > 0
    assert len(held_out_scores(tmp_path / "adapted")) == 8


def test_a_new_variant_from_few_shots(weld, tmp_path):
    train_images = FolderDataset(weld).train_samples()
    test = FolderDataset(weld).load_test(SIZE, progress=False)
    four = [s.path for s in train_images[:4]]
    result = adapt(four, tmp_path / "four", settings={"input_size": SIZE},
                   augmentation=FAST, progress=False)  # fmt: skip
    assert "base" not in result.thresholds["image"]
    assert auroc(test.labels, result.detector.predict(test.images).scores) >= 0.8

    one = adapt(four[:1], tmp_path / "one", settings={"input_size": SIZE},
                augmentation=FAST, progress=False)  # fmt: skip
    image = one.thresholds["image"]
    assert image["method"] == AUGMENTED_VIEWS and image["n_good"] == 1
    assert image["scores"] == FAST.views - 1
    assert image["fpr_upper_bound"] == pytest.approx(0.95)  # 0 of 1 image: bound 95 %


def test_bad_input_is_named(weld, tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        adapt(tmp_path / "absent", tmp_path / "out", progress=False)
    with pytest.raises(DatasetError, match=r"not found: .*missing\.png"):
        adapt([tmp_path / "missing.png"], tmp_path / "out", progress=False)
    padim = create("padim", input_size=SIZE, weights="random")
    with pytest.raises(ValueError, match="needs patchcore, got padim"):
        extend_bank(padim, np.zeros((1, *SIZE, 3), np.uint8))

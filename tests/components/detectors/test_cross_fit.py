"""Cross-fitting on real weld images: every image scored by a model that never saw it."""

import numpy as np
import pytest
import torch

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.components.detectors import create
from anomalyops.components.detectors.patchcore import detector as patchcore
from anomalyops.components.training.folds import session_folds


@pytest.fixture(scope="module")
def weld_train(weld_splits):
    return weld_splits[0].images


@pytest.fixture
def shortcut(monkeypatch):
    """PatchCore's shared-bank shortcut at weld's 37 images (it runs from REFIT_BELOW)."""
    monkeypatch.setattr(patchcore, "REFIT_BELOW", 0)


@pytest.mark.parametrize("kind, side", [("patchcore", 256), ("padim", 128)])  # PaDiM: speed
def test_out_of_fold_scores_lie_above_in_sample_ones(kind, side, weld):
    weld_train = FolderDataset(weld).load_train((side, side), progress=False).images
    detector = create(kind, input_size=(side, side))
    folds = session_folds(len(weld_train))
    oof = detector.cross_fit(weld_train, folds, progress=False)
    assert oof.scores.shape == (len(weld_train),) and np.isfinite(oof.scores).all()
    assert oof.maps.shape == weld_train.shape[:3]
    in_sample = detector.predict(weld_train)  # the final model has seen every image
    # A model that saw an image scores it lower than one that did not: the optimism a
    # threshold on training scores would carry, and cross-fitting removes.
    assert np.median(oof.scores / in_sample.scores) > 1.05


def test_patchcore_shortcut_banks_are_subsets_of_the_final_one(weld_train, shortcut):
    detector = create("patchcore")
    oof = detector.cross_fit(weld_train, session_folds(len(weld_train)), progress=False)
    assert (oof.scores >= detector.predict(weld_train).scores - 1e-4).all()


def test_patchcore_final_model_is_a_plain_fit(weld_train):
    crossed = create("patchcore")
    crossed.cross_fit(weld_train, session_folds(len(weld_train)), progress=False)
    plain = create("patchcore").fit(weld_train, progress=False)
    assert torch.equal(crossed.model.memory_bank, plain.model.memory_bank)


def true_refits(images: np.ndarray, folds: list[np.ndarray]) -> np.ndarray:
    """What cross-fitting stands for: each fold scored by a PatchCore of the others alone."""
    refit = np.empty(len(images), np.float32)
    for fold in folds:
        others = create("patchcore").fit(np.delete(images, fold, axis=0), progress=False)
        refit[fold] = others.predict(images[fold]).scores
    return refit


def test_patchcore_masked_bank_is_near_true_refits(weld_train, shortcut):
    folds = session_folds(len(weld_train))
    masked = create("patchcore").cross_fit(weld_train, folds, progress=False).scores
    refit = true_refits(weld_train, folds)
    assert np.corrcoef(masked, refit)[0, 1] > 0.9
    assert 0.97 < np.mean(masked / refit) < 1.1  # measured 1.04: slightly conservative
    assert max(masked) == pytest.approx(max(refit), rel=0.05)


def test_patchcore_below_refit_below_images_is_scored_by_true_refits(weld_train):
    """Weld's 37 images: the threshold is their largest score, so folds get refits."""
    folds = session_folds(len(weld_train))
    crossed = create("patchcore").cross_fit(weld_train, folds, progress=False).scores
    np.testing.assert_allclose(crossed, true_refits(weld_train, folds), rtol=1e-4)


def test_patchcore_cross_fit_names_an_empty_fold_bank(weld_train, shortcut):
    detector = create("patchcore", coreset_ratio=0.0001)  # one entry, from one fold only
    with pytest.raises(ValueError, match="left no bank entry"):
        detector.cross_fit(weld_train[:4], session_folds(4, 2), progress=False)


def test_patchcore_out_of_fold_needs_the_images_it_fit(weld_train):
    detector = create("patchcore")
    with pytest.raises(RuntimeError, match="fit first"):
        detector.out_of_fold(weld_train[:4], session_folds(4, 2), progress=False)
    detector.fit(weld_train[:4], progress=False)
    detector.update(weld_train[4:6], progress=False)  # rows from images fit() never saw
    with pytest.raises(RuntimeError, match="fit first"):
        detector.out_of_fold(weld_train[:4], session_folds(4, 2), progress=False)


def test_copies_of_the_images_are_scored_by_one_fit_per_fold(weld, monkeypatch):
    images = FolderDataset(weld).load_train((64, 64), progress=False).images[:20]
    detector = create("padim", weights="random", input_size=(64, 64)).fit(images, progress=False)
    folds = session_folds(len(images))
    plain = detector.out_of_fold(images, folds, progress=False)
    fits = []
    original = type(detector).fit
    monkeypatch.setattr(
        type(detector), "fit", lambda self, *a, **k: fits.append(1) or original(self, *a, **k)
    )
    darker = (images * 0.5).astype(np.uint8)
    both = detector.out_of_fold(images, folds, progress=False,
                                scored=np.concatenate([images, darker]))  # fmt: skip
    assert len(fits) == len(folds)  # not one per copy
    np.testing.assert_array_equal(both.scores[:20], plain.scores)
    assert not np.array_equal(both.scores[20:], plain.scores)
    with pytest.raises(ValueError, match="copies of the 20 images"):
        detector.out_of_fold(images, folds, progress=False, scored=images[:7])


@pytest.mark.parametrize("regime", ["refits", "shortcut"])
def test_patchcore_cross_fit_on_its_own_features_equals_scoring_each_fold_again(
    weld_train, regime, monkeypatch
):
    """cross_fit reuses fit's patch features (and one index); out_of_fold extracts the
    features again and scores through predict: the same numbers either way."""
    if regime == "shortcut":
        monkeypatch.setattr(patchcore, "REFIT_BELOW", 0)
    detector = create("patchcore")
    folds = session_folds(len(weld_train))
    crossed = detector.cross_fit(weld_train, folds, progress=False)
    again = detector.out_of_fold(weld_train, folds, progress=False)
    np.testing.assert_allclose(crossed.scores, again.scores, rtol=1e-5)
    np.testing.assert_allclose(crossed.maps, again.maps, rtol=1e-4, atol=1e-3)

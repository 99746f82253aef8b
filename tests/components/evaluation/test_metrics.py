import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from anomalyops.components.evaluation.metrics import aupro, auroc, f1_at, pixel_metrics


def test_auroc_matches_scikit_learn_with_ties(rng):
    labels = rng.integers(0, 2, 500)
    scores = np.round(rng.normal(labels * 0.7, 1.0), 1)  # rounding creates ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_is_rank_based():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([1.0, 2.0, 3.0, 400.0])
    assert auroc(labels, scores) == 1.0
    assert auroc(labels, 1 / (1 + np.exp(-scores))) == 1.0


def test_auroc_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        auroc(np.zeros(4), np.arange(4))


def test_f1_matches_scikit_learn(rng):
    labels = rng.integers(0, 2, 200)
    scores = rng.normal(labels, 1.0)
    assert f1_at(labels, scores, 0.5) == pytest.approx(f1_score(labels, scores > 0.5))


def test_aupro_perfect_and_random():
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 10:20, 10:12] = True
    masks[1, 25:30, 25:30] = True
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)
    noise = np.random.default_rng(1).random(masks.shape)
    # For a random map, PRO ≈ FPR, so the normalised area up to 0.3 is ≈ 0.15.
    assert aupro(masks, noise) == pytest.approx(0.15, abs=0.05)


def test_aupro_weights_regions_equally():
    masks = np.zeros((1, 40, 40), dtype=bool)
    masks[0, 0:20, 0:20] = True  # large region, 400 px
    masks[0, 30:32, 30:32] = True  # small region, 4 px
    only_large = masks.astype(float)
    only_large[0, 30:32, 30:32] = 0
    # At the top score PRO is 1/2 (one region of two) at FPR 0, whatever the sizes; the
    # tie at 0 then joins (0, 1/2) to (1, 1) linearly: PRO(0.3) = 0.65, area/0.3 = 0.575.
    assert aupro(masks, only_large) == pytest.approx(0.575)


def test_pixel_metrics_leave_out_the_border_no_image_fills(rng):
    masks = np.zeros((3, 32, 32), dtype=bool)
    masks[:, 12:16, 12:16] = True
    maps = rng.random(masks.shape) + 0.5 * masks  # defects score higher, with noise
    content = np.zeros(masks.shape, bool)
    content[:, 8:24] = True
    bordered = np.where(content, maps, 0.0)  # a border scored lowest flatters the metrics
    inside = pixel_metrics(masks[:, 8:24], maps[:, 8:24])
    assert pixel_metrics(masks, bordered, content) == pytest.approx(inside)
    assert pixel_metrics(masks, bordered)["pixel_auroc"] > inside["pixel_auroc"]

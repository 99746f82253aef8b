import numpy as np
import pytest
from scipy.stats import beta

from anomalyops.components.training.thresholds import (
    calibrate,
    calibrate_pixels,
    clopper_pearson_upper,
)


def test_false_positive_rate_on_new_good_images_meets_target(rng):
    # Good scores ~ N(0, 1): over many calibrations, new good images exceed the threshold
    # at most target_fpr of the time (the conformal guarantee), and not far below it.
    rates = []
    for _ in range(200):
        cal = calibrate(rng.normal(size=400), target_fpr=0.05)
        rates.append((rng.normal(size=2000) > cal.threshold).mean())
    assert cal.guaranteed
    assert 0.035 < np.mean(rates) <= 0.05 + 0.003


def test_few_images_cannot_guarantee_one_percent(rng):
    scores = rng.normal(size=20)
    cal = calibrate(scores, target_fpr=0.01)
    assert cal.threshold == scores.max()
    assert not cal.guaranteed and cal.exceedances == 0
    assert cal.fpr_upper_bound == pytest.approx(1 - 0.05 ** (1 / 20))
    assert "not guaranteed" in cal.summary()


def test_clopper_pearson_against_beta():
    assert clopper_pearson_upper(3, 100, 0.95) == pytest.approx(beta.ppf(0.95, 4, 97))
    assert clopper_pearson_upper(5, 5, 0.95) == 1.0


def test_miss_rate_from_known_defects(rng):
    good = rng.normal(size=1000)
    defects = np.array([-5.0, 0.0, 10.0, 20.0])
    cal = calibrate(good, 0.01, defect_scores=defects)
    assert cal.miss_rate == 0.5 and cal.n_defect == 4


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        calibrate(np.array([]))
    with pytest.raises(ValueError, match="non-finite"):
        calibrate(np.array([1.0, np.nan]))


def test_pixel_bound_holds_when_pixels_move_together(rng):
    # Each good image's map is one value everywhere (pixels perfectly correlated): 50 k
    # pixels are 20 samples. Treating pixels as independent claims 0.1 % is guaranteed;
    # in truth a new good image lies above the max of 20 about 1/21 of the time.
    maps = np.broadcast_to(rng.normal(size=(20, 1, 1)), (20, 50, 50))
    naive = calibrate(maps.ravel(), target_fpr=0.001)
    assert naive.guaranteed  # the claim this replaces
    cal = calibrate_pixels(maps, target_fpr=0.001)
    new = np.broadcast_to(rng.normal(size=(4000, 1, 1)), (4000, 2, 2))
    true_rate = (new > cal.threshold).mean()
    assert 0.02 < true_rate <= cal.fpr_upper_bound
    assert not cal.guaranteed and cal.unit == "pixel" and cal.n_good == 20
    assert "not guaranteed" in cal.summary()


def test_pixel_threshold_is_the_pixel_quantile_and_bad_maps_are_refused(rng):
    maps = rng.normal(size=(400, 16, 16))
    cal = calibrate_pixels(maps, target_fpr=0.01)
    assert cal.empirical_fpr == pytest.approx(0.01, abs=0.001)
    assert cal.fpr_upper_bound == pytest.approx(cal.empirical_fpr + np.sqrt(np.log(20) / 800))
    with pytest.raises(ValueError, match="N×H×W"):
        calibrate_pixels(maps[0])
    with pytest.raises(ValueError, match="non-finite"):
        calibrate_pixels(np.full((2, 2, 2), np.nan))


def test_pixel_threshold_counts_only_the_pixels_images_fill(rng):
    """A kept aspect's border scores ~0: counted, it would pull the 1 % quantile down."""
    maps = rng.normal(size=(50, 16, 16))
    content = np.zeros(maps.shape, bool)
    content[:, 4:12] = True  # the middle half of each input is image
    bordered = np.where(content, maps, -10.0)
    cal = calibrate_pixels(bordered, target_fpr=0.01, content=content)
    inside = calibrate_pixels(maps[:, 4:12], target_fpr=0.01)
    assert cal.threshold == inside.threshold and cal.empirical_fpr == inside.empirical_fpr
    assert cal.exceedances == inside.exceedances
    assert calibrate_pixels(bordered, target_fpr=0.01).threshold < cal.threshold
    with pytest.raises(ValueError, match="content"):
        calibrate_pixels(maps, content=content[:, :8])

import numpy as np
import pytest
from scipy.stats import beta

from anomalyops.components.thresholds import calibrate, clopper_pearson_upper


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

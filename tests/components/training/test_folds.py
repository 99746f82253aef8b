import numpy as np
import pytest

from anomalyops.components.training.folds import session_folds


@pytest.mark.parametrize("count, folds", [(37, 5), (2, 5), (10, 3), (209, 5)])
def test_folds_are_contiguous_complete_and_balanced(count, folds):
    blocks = session_folds(count, folds)
    assert len(blocks) == min(folds, count)
    assert np.array_equal(np.concatenate(blocks), np.arange(count))  # in order, each once
    assert all(np.array_equal(b, np.arange(b[0], b[-1] + 1)) for b in blocks)  # no gaps
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("folds", [1, 0, -3, 2.5, True, "5"])
def test_folds_refuse_what_cannot_cross_fit(folds):
    with pytest.raises(ValueError, match="calibration folds must be an integer"):
        session_folds(10, folds)


def test_folds_need_two_images():
    with pytest.raises(ValueError, match="at least 2 images"):
        session_folds(1)

"""The one threshold rule: finite and above zero, wherever a threshold comes from."""

from __future__ import annotations

import json

import pytest

from anomalyops.serving.contract.thresholds import ThresholdError, check_threshold, check_thresholds


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), json.loads("1e400"), 0, -1.0, 10**400, "47", True, None]
)
def test_only_finite_positive_numbers_pass(value):
    with pytest.raises(ThresholdError, match=r"thresholds\.json image"):
        check_thresholds({"image": {"threshold": value}, "pixel": {"threshold": 1.0}},
                         "thresholds.json")  # fmt: skip


def test_a_real_threshold_passes_as_a_float():
    assert check_threshold(47, "--threshold") == 47.0
    assert check_threshold(1e-6, "--threshold") == 1e-6

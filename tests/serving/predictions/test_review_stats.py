"""False alarms per day and the score histogram, from plain rows."""

from __future__ import annotations

import numpy as np
import pytest

from anomalyops.serving.predictions.stats import daily_false_alarms, score_histogram


def test_daily_false_alarms_count_by_prediction_day_newest_first():
    rows = [
        {"time": "2026-11-24T09:00:00.000+00:00", "verdict": "false_alarm"},
        {"time": "2026-11-24T10:00:00.000+00:00", "verdict": "false_alarm"},
        {"time": "2026-11-24T11:00:00.000+00:00", "verdict": "confirmed_defect"},
        {"time": "2026-11-24T12:00:00.000+00:00", "verdict": None},
        {"time": "2026-11-23T23:59:59.999+00:00", "verdict": None},
    ]
    today, yesterday = daily_false_alarms(rows)
    assert (today.day, today.flagged, today.reviewed, today.false_alarms) == ("2026-11-24", 4, 3, 2)
    assert today.share == pytest.approx(2 / 3)
    assert yesterday.day == "2026-11-23" and yesterday.share is None  # nothing reviewed yet
    assert daily_false_alarms([]) == []


def test_histogram_shares_sum_to_one_on_shared_edges_with_the_threshold_inside():
    histogram = score_histogram([1.0, 2.0, 2.0, None, 9.0], [1.0, 1.5], threshold=12.0, bins=10)
    assert histogram.logged_count == 4 and histogram.reference_count == 2
    assert sum(histogram.logged) == pytest.approx(1) == sum(histogram.reference)
    assert histogram.edges[0] == 1.0 and histogram.edges[-1] == 12.0  # threshold on the axis
    assert histogram.position(12.0, 300) == pytest.approx(300)
    bars = histogram.bars(300, 100)
    assert len(bars) == 10 and max(max(b["logged"], b["reference"]) for b in bars) == 100
    assert np.isclose(bars[-1]["x"] + bars[-1]["width"], 300)


def test_histogram_without_reference_or_scores():
    only_logged = score_histogram([3.0, 4.0], None, None)
    assert only_logged.reference == [0.0] * 30 and sum(only_logged.logged) == pytest.approx(1)
    assert score_histogram([], None, None) is None
    assert score_histogram([None], [], None) is None

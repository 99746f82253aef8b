"""Drift check with the real Evidently on logs whose distributions the tests control."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from anomalyops.components.drift.check import DriftSettings, check_drift, list_checks, thresholds
from anomalyops.components.drift.state import AlertState, step
from anomalyops.serving.contract.reference import Reference
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

T0 = datetime(2026, 3, 1, 8, tzinfo=UTC)
SETTINGS = DriftSettings(window=300, min_samples=100, cooldown_s=6 * 3600)


def reference(rng: np.random.Generator) -> Reference:
    """Held-out scores ~ N(40, 2); training images' statistics around fixed levels."""
    return Reference(
        scores=list(rng.normal(40, 2, 30)),
        statistics={
            "brightness": list(rng.normal(150, 10, 60)),
            "contrast": list(rng.normal(50, 5, 60)),
            "sharpness": list(np.exp(rng.normal(6, 0.3, 60))),
        },
    )


def production(
    rng: np.random.Generator,
    n: int,
    darker: float = 1.0,
    version: str = "2",
    score_shift: float = 0.0,
) -> list[PredictionRecord]:
    """N rows as serving logs them; DARKER scales brightness/contrast like dimmer light."""
    return [
        PredictionRecord(
            "weld",
            float(rng.normal(40 + score_shift, 2)),
            46.0,
            "good",
            float(rng.normal(150, 10) * darker),
            float(rng.normal(50, 5) * darker),
            float(np.exp(rng.normal(6, 0.3)) * darker**2),
            model_version=version,
        )
        for _ in range(n)
    ]


def test_thresholds_shrink_with_the_reference_size():
    rng = np.random.default_rng(0)
    limits = thresholds(reference(rng), 5.0)
    assert limits["score"] == pytest.approx(5 / np.sqrt(30))
    assert limits["brightness"] == pytest.approx(5 / np.sqrt(60))
    assert limits["brightness"] < limits["score"]


def test_hysteresis_holds_between_the_marks_and_cooldown_holds_back_alerts():
    cooldown = timedelta(hours=8)

    def at(state, ratio, hour, version="2"):
        return step(state, ratio, version, T0 + timedelta(hours=hour), 1.0, 0.7, cooldown)

    state, seen = AlertState(), []
    for hour, ratio in enumerate([0.5, 1.2, 0.9, 0.8, 1.1, 0.6, 0.9, 1.3, 1.3]):
        transition = at(state, ratio, hour)
        state = transition.state
        seen.append((transition.status, transition.raised))
    assert seen == [
        ("no drift", False),
        ("drift", True),  # reaches the raise mark: one alert
        ("drifting", False),  # 0.9 is above the clear mark: still on, no new alert
        ("drifting", False),
        ("drifting", False),
        ("cleared", False),  # below 0.7: off
        ("no drift", False),  # 0.9 does not turn it on again
        ("cooldown", False),  # 1.3 within 8 h of the alert at hour 1: held back
        ("drifting", False),
    ]
    later = at(state, 1.3, 9)
    assert (later.status, later.raised) == ("drift", True)  # persists after the cooldown
    # A new champion starts with the alert off, but the cooldown carries over.
    fresh = at(later.state, 0.8, 10, version="3")
    assert (fresh.status, fresh.state.active) == ("no drift", False)
    assert at(fresh.state, 2.0, 11, version="3").status == "cooldown"
    with pytest.raises(ValueError, match="clear mark"):
        step(AlertState(), 1.0, "2", T0, 0.5, 0.7, timedelta())


def test_insufficient_data_is_never_an_alert(tmp_path):
    rng = np.random.default_rng(1)
    with PredictionLog(tmp_path / "log.db") as log:
        log.write(production(rng, 99, darker=0.5))  # grossly shifted, but too few
        verdict = check_drift(
            log, "weld", reference(rng), tmp_path / "drift", "2", SETTINGS, now=T0
        )
    assert (verdict.status, verdict.drift, verdict.samples) == ("insufficient data", False, 99)
    assert "fewer than the 100" in verdict.reason and verdict.report_path is None
    assert json.loads(Path(verdict.verdict_path).read_text())["status"] == "insufficient data"


def test_shifted_production_raises_exactly_one_alert_with_report(tmp_path):
    rng = np.random.default_rng(2)
    ref, out = reference(rng), tmp_path / "drift"
    with PredictionLog(tmp_path / "log.db") as log:
        log.write(production(rng, 300, version="1", darker=0.5))  # an older model's rows
        log.write(production(rng, 300))
        first = check_drift(log, "weld", ref, out, "2", SETTINGS, "test", now=T0)
        assert (first.status, first.drift, first.samples) == ("no drift", False, 300)
        assert first.ratio < SETTINGS.clear_below
        assert first.window["first_id"] == 301  # version 1's rows do not count

        log.write(production(rng, 300, darker=0.92))  # light 8 % darker
        verdicts = [
            check_drift(log, "weld", ref, out, "2", SETTINGS, "test", now=T0 + timedelta(hours=h))
            for h in (1, 2, 3)
        ]
    assert [v.drift for v in verdicts] == [True, False, False]
    assert [v.status for v in verdicts] == ["drift", "drifting", "drifting"]
    alert = verdicts[0]
    assert alert.columns["brightness"]["drifted"] and alert.columns["contrast"]["drifted"]
    assert not alert.columns["score"]["drifted"]
    assert alert.drift_share == pytest.approx(sum(c["drifted"] for c in alert.columns.values()) / 4)
    report = Path(alert.report_path)
    assert report.name == "report.html" and report.parent == Path(alert.verdict_path).parent
    page = report.read_text()
    assert "Wasserstein distance (normed)" in page and "brightness" in page
    listed = list_checks(out, "weld")
    assert [c["status"] for c in listed] == ["no drift", "drift", "drifting", "drifting"]
    state = json.loads((out / "weld" / "state.json").read_text())
    assert state["active"] and state["last_alert"] == (T0 + timedelta(hours=1)).isoformat()


@pytest.mark.parametrize("shift, drifts", [(-3.0, False), (3.0, True)])
def test_scores_drift_only_upward(tmp_path, shift, drifts):
    """Good parts scoring higher than the reference is drift; lower is not (the model
    that serves learnt from every image its out-of-fold reference was scored without)."""
    rng = np.random.default_rng(3)
    with PredictionLog(tmp_path / "log.db") as log:
        log.write(production(rng, 300, score_shift=shift))
        verdict = check_drift(log, "weld", reference(rng), tmp_path / "drift", "2", SETTINGS,
                              now=T0)  # fmt: skip
    score = verdict.columns["score"]
    assert score["distance"] > score["threshold"]  # far either way
    assert (score["drifted"], verdict.drift) == (drifts, drifts)
    assert (score["ratio"] == 0.0) is not drifts
    assert verdict.drift_share == (0.25 if drifts else 0.0)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="min_samples"):
        DriftSettings(window=50, min_samples=100)
    with pytest.raises(ValueError, match="clear_below"):
        DriftSettings(raise_at=1.0, clear_below=1.5)

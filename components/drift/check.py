"""Drift check: does what the champion sees now still look like what it was trained on?

Compares a window of the prediction log (the last N rows scored by the champion) with
the champion's reference.json (serving/contract/reference.py): the out-of-fold anomaly
scores of good images and the brightness, contrast and sharpness of the good training
images. Evidently measures each column with the normalised Wasserstein distance (the
distance between the two distributions in reference standard deviations). Unlike a
test's p-value it does not grow with the window: a KS test flagged every unchanged weld
window of 500 rows.

A column drifts when its distance reaches `sensitivity / sqrt(n_reference)`: the
reference is small (weld keeps 37 out-of-fold scores and 37 training images), and the noise
in its own estimate of the distribution shrinks like 1/sqrt(n), so a column measured on
few reference images needs a larger move before it counts. The drift ratio (strongest
column's distance over its threshold) drives the alert state with hysteresis and
cooldown (components/drift/state.py). Every check writes `verdict.json` and Evidently's
`report.html` under `<out>/<variant>/<time>/`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from anomalyops.components.drift.state import locked_state, step
from anomalyops.serving.contract.names import check_name
from anomalyops.serving.contract.reference import Reference
from anomalyops.serving.images.statistics import STATISTICS
from anomalyops.serving.metrics import push_drift
from anomalyops.serving.predictions.log import PredictionLog

logger = logging.getLogger(__name__)
COLUMNS = ("score", *STATISTICS)
VERDICT_FILE, REPORT_FILE = "verdict.json", "report.html"
METHOD = "wasserstein"  # Evidently's normalised Wasserstein distance


@dataclass(frozen=True)
class DriftSettings:
    window: int = 1000  # newest champion rows compared with the reference
    min_samples: int = 500  # fewer: "insufficient data" (weld: 2 % false alerts at 300)
    sensitivity: float = 5.0  # column threshold = sensitivity / sqrt(reference size)
    raise_at: float = 1.0  # drift ratio that turns the alert on
    clear_below: float = 0.7  # drift ratio under which it turns off again
    cooldown_s: float = 24 * 3600.0  # no new alert this long after one

    def __post_init__(self) -> None:
        if self.min_samples < 2 or self.window < self.min_samples:
            raise ValueError(
                f"drift: need 2 <= min_samples <= window, got min_samples={self.min_samples}, "
                f"window={self.window}"
            )
        numbers = {k: v for k, v in asdict(self).items() if isinstance(v, float)}
        odd = [f"{k}={v!r}" for k, v in numbers.items() if not math.isfinite(v)]
        if odd:  # `ratio >= nan` is never true: a NaN sensitivity would hide any drift
            raise ValueError(f"drift: settings must be finite numbers, got {', '.join(odd)}")
        if self.sensitivity <= 0 or self.cooldown_s < 0:
            raise ValueError("drift: sensitivity must be > 0 and cooldown >= 0")
        if not 0 < self.clear_below <= self.raise_at:
            raise ValueError(
                f"drift: need 0 < clear_below ({self.clear_below}) <= raise_at ({self.raise_at})"
            )


@dataclass
class Verdict:
    variant: str
    drift: bool  # an alert is raised by this check (a pipeline retrains on it)
    drifting: bool  # the alert state after this check (hysteresis)
    status: str  # 'insufficient data', 'no drift', 'drift', 'drifting', 'cooldown', 'cleared'
    reason: str
    model_version: str | None
    checked_at: str
    samples: int
    ratio: float | None = None
    drift_share: float | None = None  # share of drifted columns (scores: upward only)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    window: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    verdict_path: str = ""
    report_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def thresholds(reference: Reference, sensitivity: float) -> dict[str, float]:
    """Each column's distance threshold: SENSITIVITY over the root of its reference size."""
    sizes = {"score": len(reference.scores)}
    sizes.update({name: len(reference.statistics[name]) for name in STATISTICS})
    return {name: sensitivity / math.sqrt(n) for name, n in sizes.items()}


def column_ratio(
    name: str, distance: float, limit: float, current_mean: float, reference_mean: float
) -> float:
    """A column's distance over its threshold. Scores count one way only: good parts
    scoring lower than the reference is no cause to retrain (a model fit on all of
    train/good scores new good parts a little below its out-of-fold reference); a soft or
    dark camera shows in the image statistics."""
    if name == "score" and current_mean <= reference_mean:
        return 0.0
    return distance / limit


def scaled(name: str, values: Any) -> Any:
    """Column values as compared: sharpness on a log scale, the rest as they are.

    Laplacian variance spans orders of magnitude (weld: 29 to 2130) and a few very sharp
    images dominate any distance on the raw values; on weld train/good validation splits
    raw sharpness was the noisiest column of unchanged windows.
    """
    import numpy as np

    array = np.asarray(values, dtype=float)
    return np.log1p(np.maximum(array, 0.0)) if name == "sharpness" else array


def measure(
    reference: Reference, rows: list[dict[str, Any]], limits: dict[str, float]
) -> tuple[dict[str, dict[str, Any]], float, Any]:
    """Evidently over the window ROWS against REFERENCE: per-column results, share, snapshot."""
    import numpy as np
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = {"score": reference.scores, **{n: reference.statistics[n] for n in STATISTICS}}
    longest = max(len(values) for values in columns.values())
    # Scores and statistics may differ in length (one-shot adaptation scores fresh views):
    # NaN pads the shorter columns and Evidently drops NaN per column.
    ref_frame = pd.DataFrame(
        {
            name: np.pad(scaled(name, v), (0, longest - len(v)), constant_values=np.nan)
            for name, v in columns.items()
        }
    )
    current = pd.DataFrame({name: scaled(name, [row[name] for row in rows]) for name in COLUMNS})
    definition = DataDefinition(numerical_columns=list(COLUMNS))
    report = Report(
        [
            DataDriftPreset(
                columns=list(COLUMNS),
                method=METHOD,
                per_column_threshold=dict(limits),
                drift_share=1.0 / len(COLUMNS),
            )
        ]
    )
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(ref_frame, data_definition=definition),
    )
    results = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            name, value = config["column"], float(metric["value"])
            ratio = column_ratio(
                name, value, limits[name], current[name].mean(), ref_frame[name].mean()
            )
            results[name] = {
                "method": METHOD,
                "distance": value,
                "threshold": limits[name],
                "ratio": ratio,
                "drifted": ratio >= 1.0,
                "reference_size": int(ref_frame[name].notna().sum()),
                "scale": "log1p" if name == "sharpness" else "linear",
                "current_mean": float(current[name].mean()),
                "reference_mean": float(ref_frame[name].mean()),
            }
    missing = set(COLUMNS) - set(results)
    if missing:
        raise RuntimeError(f"drift: Evidently returned no result for {sorted(missing)}")
    share = sum(column["drifted"] for column in results.values()) / len(results)
    return results, share, snapshot


def _window_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    if not rows:
        return {"rows": 0}
    return {
        "rows": len(rows),
        "first_id": rows[0]["id"],
        "last_id": rows[-1]["id"],
        "first_time": rows[0]["time"],
        "last_time": rows[-1]["time"],
    }


def check_drift(
    log: PredictionLog,
    variant: str,
    reference: Reference,
    out: str | Path,
    model_version: str | None,
    settings: DriftSettings | None = None,
    reference_source: str = "",
    now: datetime | None = None,
) -> Verdict:
    """Check VARIANT's newest champion rows against REFERENCE; write and return the verdict.

    Rows count only when MODEL_VERSION scored them (None: every row of the variant).
    """
    settings = settings or DriftSettings()
    now = now or datetime.now(UTC)
    started = time.perf_counter()
    folder = Path(out) / check_name(variant)
    run_dir = folder / now.strftime("%Y%m%dT%H%M%S.%fZ")
    rows = log.window(variant, settings.window, model_version)
    limits = thresholds(reference, settings.sensitivity)
    verdict = Verdict(
        variant=variant,
        drift=False,
        drifting=False,
        status="insufficient data",
        reason="",
        model_version=model_version,
        checked_at=now.isoformat(),
        samples=len(rows),
        window=_window_summary(rows),
        reference={
            "source": reference_source,
            "scores": len(reference.scores),
            "images": len(reference.statistics[STATISTICS[0]]),
        },
        settings=asdict(settings),
    )
    scope = f"scored by v{model_version}" if model_version else "of any model version"
    with locked_state(folder) as (state, save):
        if len(rows) < settings.min_samples:
            verdict.drifting = state.active and state.model_version == model_version
            verdict.reason = (
                f"{len(rows)} logged predictions {scope}, fewer than the {settings.min_samples} "
                "a check needs; no verdict on drift"
            )
        else:
            columns, share, snapshot = measure(reference, rows, limits)
            ratio = max(c["ratio"] for c in columns.values())
            transition = step(
                state,
                ratio,
                model_version,
                now,
                settings.raise_at,
                settings.clear_below,
                timedelta(seconds=settings.cooldown_s),
            )
            drifted = [name for name, c in columns.items() if c["drifted"]] or ["none"]
            verdict.drift, verdict.drifting = transition.raised, transition.state.active
            verdict.status = transition.status
            verdict.reason = f"{transition.reason}; drifted columns: {', '.join(drifted)}"
            verdict.ratio, verdict.drift_share, verdict.columns = ratio, share, columns
            run_dir.mkdir(parents=True, exist_ok=True)
            snapshot.save_html(str(run_dir / REPORT_FILE))
            verdict.report_path = str((run_dir / REPORT_FILE).resolve())
            save(transition.state)
        run_dir.mkdir(parents=True, exist_ok=True)
        verdict.verdict_path = str((run_dir / VERDICT_FILE).resolve())
        verdict.seconds = round(time.perf_counter() - started, 3)
        (run_dir / VERDICT_FILE).write_text(json.dumps(verdict.to_dict(), indent=2))
    _push(verdict)
    return verdict


def _push(verdict: Verdict) -> None:
    """Hand the verdict to Prometheus (a Pushgateway, when $ANOMALYOPS_PUSHGATEWAY names one).

    The verdict is already on disk: an unreachable gateway is a warning, not a lost check.
    """
    try:
        push_drift(verdict.to_dict())
    except OSError as error:
        logger.warning("drift: could not push the verdict to the Pushgateway: %s", error)


def list_checks(out: str | Path, variant: str) -> list[dict[str, Any]]:
    """The kept verdicts of VARIANT's checks, oldest first."""
    folder = Path(out) / check_name(variant)
    verdicts = []
    for path in sorted(folder.glob(f"*/{VERDICT_FILE}")):
        try:
            verdicts.append(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from None
    return verdicts

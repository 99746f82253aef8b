"""Drift step: the drift check (components/drift/check.py) as a pipeline step.

Meant for a recurring run: it returns the verdict as JSON and, beside it, `drift` (an
alert was raised by this check) as a bool. A pipeline retrains under
`dsl.If(alert_component(verdict=...).output == True)`: kfp.local 2.17 resolves a
condition only on a task's single `Output` (a named output such as `drift` is looked up
as a pipeline input, found missing, and the condition reads False). The verdict,
Evidently's report and the alert state stay under OUT (a path every run shares: the
state carries hysteresis and cooldown from one run to the next); the report is also the
step's HTML artifact.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import html
from pathlib import Path
from typing import NamedTuple

from kfp.dsl import HTML, Output

from anomalyops.components.steps import component


def drift_step(
    variant: str,
    log_db: str,
    out: str,
    reference: str = "",
    tracking_uri: str = "",
    settings: dict | None = None,
) -> dict:
    """Check VARIANT's newest champion predictions in LOG_DB; the verdict as a dict.

    REFERENCE (a local folder or reference.json) or TRACKING_URI (the registry's
    champion) says what production should look like; SETTINGS are DriftSettings fields.
    """
    from anomalyops.components.drift.check import DriftSettings, check_drift
    from anomalyops.components.drift.reference import resolve_reference
    from anomalyops.serving.predictions.log import PredictionLog

    unknown = set(settings or {}) - set(DriftSettings.__dataclass_fields__)
    if unknown:
        raise ValueError(f"drift: unknown settings {sorted(unknown)}")
    drift_settings = DriftSettings(**(settings or {}))
    try:  # a path or database URL; a missing log is an error, never a new empty one
        log = PredictionLog(log_db, create=False)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"drift: {error}") from None
    with log:
        source = resolve_reference(
            variant, reference or None, tracking_uri or None, Path(out) / variant
        )
        verdict = check_drift(
            log,
            variant,
            source.reference,
            out,
            source.model_version,
            drift_settings,
            source.description,
        )
    return verdict.to_dict()


def report_html(verdict: dict) -> str:
    """Evidently's report when the check ran one; otherwise a page saying why not."""
    if verdict.get("report_path"):
        return Path(verdict["report_path"]).read_text()
    return (
        f"<html><body><h1>Drift check of {html.escape(verdict['variant'])}: "
        f"{html.escape(verdict['status'])}</h1><p>{html.escape(verdict['reason'])}</p>"
        "</body></html>"
    )


@component
def drift_component(
    variant: str,
    log_db: str,
    out: str,
    reference: str,
    tracking_uri: str,
    settings_json: str,
    report: Output[HTML],
) -> NamedTuple("DriftOutputs", [("drift", bool), ("verdict", str)]):
    """Check drift; `drift` says an alert was raised, `verdict` is the verdict JSON."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from anomalyops.components.steps.drift import drift_step, report_html

    verdict = drift_step(
        variant, log_db, out, reference, tracking_uri, json.loads(settings_json or "{}")
    )
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    Path(report.path).write_text(report_html(verdict))
    print(f"drift: {verdict['variant']} {verdict['status']}: {verdict['reason']}")
    print(f"drift: verdict {verdict['verdict_path']}")
    outputs = namedtuple("DriftOutputs", ["drift", "verdict"])
    return outputs(bool(verdict["drift"]), json.dumps(verdict))


@component
def alert_component(verdict: str) -> bool:
    """Whether the drift check whose VERDICT JSON this is raised an alert."""
    import json

    return bool(json.loads(verdict)["drift"])

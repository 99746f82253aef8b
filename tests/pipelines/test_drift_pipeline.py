"""The drift pipeline: compiled YAML in sync; drift → retraining runs, no drift → it does not.

Real kfp.local, the real drift step (Evidently), the real prediction log and, when
retraining runs, the real MLflow server (fixtures in conftest.py).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import yaml
from PIL import Image

from anomalyops.pipelines.drift import COMPILED, compile_pipeline, run_local
from anomalyops.serving.contract.reference import load_reference
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

WINDOW = {"window": 80, "min_samples": 60}


def test_committed_yaml_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "drift.yaml")
    assert list(yaml.safe_load_all(fresh.read_text())) == list(
        yaml.safe_load_all(COMPILED.read_text())
    ), "pipelines/drift.yaml is stale: run `anomalyops pipeline compile drift`"
    tasks = next(yaml.safe_load_all(COMPILED.read_text()))["root"]["dag"]["tasks"]
    condition = tasks["condition-1"]
    assert condition["dependentTasks"] == ["alert-component"]
    # kfp.local resolves a condition only on a task's single Output (see the drift step).
    assert "alert-component-Output" in condition["triggerPolicy"]["condition"]
    assert tasks["alert-component"]["dependentTasks"] == ["drift-component"]


def log_production(path, reference, rows: int, shift: float) -> None:
    """ROWS weld v1 predictions; SHIFT scales scores up and brightness down (0: unchanged)."""
    rng = np.random.default_rng(0)
    records = []
    for _ in range(rows):
        stats = {name: float(rng.choice(values)) for name, values in reference.statistics.items()}
        score = float(rng.choice(reference.scores)) * (1 + shift)
        image = np.full((8, 8, 3), 100, np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        records.append(PredictionRecord(
            "weld", score, 50.0, "good", stats["brightness"] * (1 - shift), stats["contrast"],
            stats["sharpness"], model_version="1",
        ))  # fmt: skip
    with PredictionLog(path) as log:
        log.write(records)


def arguments(tmp_path, tracking_uri: str, new_good, eval_data="") -> dict:
    import json

    return {
        "variant": "weld",
        "prediction_log": str(tmp_path / "predictions.db"),
        "drift_out": str(tmp_path / "drift"),
        "tracking_uri": tracking_uri,
        "new_good": str(new_good),
        "triton_repository": str(tmp_path / "repository"),
        "drift_settings_json": json.dumps(WINDOW),
        "eval_data": str(eval_data),
        "views": 4,
    }


@pytest.mark.slow
def test_no_drift_no_retraining(tmp_path, champion, new_good):
    reference = load_reference(tmp_path / "repository" / "weld" / "1")
    log_production(tmp_path / "predictions.db", reference, 80, shift=0.0)
    verdict = run_local(arguments(tmp_path, champion.uri, new_good), tmp_path / "kfp")
    # "no drift", not "insufficient data": the window was measured and passed
    assert (verdict["status"], verdict["drift"]) == ("no drift", False), verdict["reason"]
    assert not list((tmp_path / "kfp").rglob("adapt-component"))
    assert sorted(p.name for p in (tmp_path / "repository" / "weld").iterdir()
                  if p.name.isdigit()) == ["1"]  # fmt: skip


@pytest.mark.slow
def test_drift_runs_retraining_and_serves_the_new_champion(
    tmp_path, champion, new_good, weld, turned_good
):
    from mlflow import MlflowClient

    reference = load_reference(tmp_path / "repository" / "weld" / "1")
    # Earlier, QA marked three turned good parts as false alarms: they join the new
    # normal images and the gate's set (the shots alone left v2 0.003 short of v1).
    buffers = []
    for image in turned_good[8:]:
        buffers.append(io.BytesIO())
        Image.fromarray(image).save(buffers[-1], format="PNG")
    with PredictionLog(tmp_path / "predictions.db") as log:
        ids = log.write([PredictionRecord("weld", 60.0, 50.0, "anomalous", 100.0, 30.0, 50.0,
                                          model_version="1", image=b.getvalue())
                         for b in buffers])  # fmt: skip
        for i in ids:
            log.mark(i, "false_alarm", "qa-anna")
    log_production(tmp_path / "predictions.db", reference, 80, shift=0.3)
    # The gate needs defects to measure on: the test split (no reviewed defects here).
    verdict = run_local(arguments(tmp_path, champion.uri, new_good, weld), tmp_path / "kfp")
    assert (verdict["status"], verdict["drift"]) == ("drift", True), verdict["reason"]
    assert list((tmp_path / "kfp").rglob("adapt-component"))
    client = MlflowClient(champion.uri, champion.uri)
    assert client.get_model_version_by_alias("weld", "champion").version == "2"
    assert (tmp_path / "repository" / "weld" / "2" / "model.json").is_file()

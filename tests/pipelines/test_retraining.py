"""The few-shot retraining pipeline: compiled YAML in sync, and a real kfp.local run.

The run uses the real MLflow server, the real prediction log with reviewed predictions,
and real weld images as a turned fixture shows them (fixtures in conftest.py).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from anomalyops.components.data.datasets import FolderDataset
from anomalyops.pipelines.retraining import COMPILED, compile_pipeline


def test_committed_yaml_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "retraining.yaml")
    assert list(yaml.safe_load_all(fresh.read_text())) == list(
        yaml.safe_load_all(COMPILED.read_text())
    ), "pipelines/retraining.yaml is stale: run `anomalyops pipeline compile retraining`"
    tasks = next(yaml.safe_load_all(COMPILED.read_text()))["root"]["dag"]["tasks"]
    assert tasks["adapt-component"]["dependentTasks"] == [
        "collect-component",
        "validate-component",
    ]
    assert tasks["register-component"]["dependentTasks"] == [
        "adapt-component",
        "challenge-component",
        "export-component",
        "validate-component",
    ]
    assert tasks["deploy-component"]["dependentTasks"] == ["register-component"]


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_retraining_adapts_the_champion_to_a_turned_fixture(
    weld, tmp_path, champion, turned_good, new_good
):
    from mlflow import MlflowClient

    from anomalyops.components.registry.client import CHAMPION
    from anomalyops.pipelines.retraining import run_local
    from anomalyops.serving.contract.model import load_contract
    from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

    test = FolderDataset(weld).test_samples()
    defects = [s.path for s in test if s.label == 1]
    turned = turned_good
    # Production logged three turned good parts as alarms and one real defect; reviewed.
    log_path = tmp_path / "predictions.db"
    with PredictionLog(log_path) as log:
        records = [
            PredictionRecord("weld", 60.0, 50.0, "anomalous", 100.0, 30.0, 50.0,
                             model_version="1", image=png(image))
            for image in turned[8:]
        ] + [
            PredictionRecord("weld", 70.0, 50.0, "anomalous", 100.0, 30.0, 50.0,
                             model_version="1", image=Path(defects[0]).read_bytes())
        ]  # fmt: skip
        ids = log.write(records)
        for i in ids[:3]:
            log.mark(i, "false_alarm", "qa-anna")
        log.mark(ids[3], "confirmed_defect", "qa-anna")

    result = run_local(
        {
            "new_good": str(new_good),
            "variant": "weld",
            "tracking_uri": champion.uri,
            "triton_repository": str(tmp_path / "repository"),
            "prediction_log": str(log_path),
            "eval_data": str(weld),
            "views": 4,
        },
        tmp_path / "kfp",
    )
    decision, deployment = result.decision, result.deployment
    assert decision["version"] == "2" and decision["promoted"], decision["reason"]
    assert deployment["deployed"] and deployment["triton_version"] == "2"
    served = load_contract(tmp_path / "repository" / "weld" / "2")
    assert served.lineage["model_version"] == "2"
    assert served.thresholds["image"]["n_good"] == 11  # 8 shots + 3 false alarms
    assert "leave-one-out" in served.thresholds["image"]["note"]

    client = MlflowClient(champion.uri, champion.uri)
    v1, v2 = client.get_model_version("weld", "1"), client.get_model_version("weld", "2")
    assert client.get_model_version_by_alias("weld", CHAMPION).version == "2"
    # Both were measured on one set: test split + 1 confirmed defect + 11 new good images.
    assert v1.tags["eval_dataset_sha256"] == v2.tags["eval_dataset_sha256"]
    assert float(v2.tags["image_auroc"]) > float(v1.tags["image_auroc"])
    assert float(v2.tags["test_images"]) == len(test) + 1 + 11
    assert "image_auroc" in decision["reason"]

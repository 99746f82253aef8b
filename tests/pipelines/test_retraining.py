"""The few-shot retraining pipeline: compiled YAML in sync, and a real kfp.local run.

The run uses the real MLflow server, the real prediction log with reviewed predictions,
and real weld images as a turned fixture shows them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from anomalyops.components.augment import rotate
from anomalyops.components.datasets import FolderDataset
from anomalyops.pipelines.retraining import COMPILED, compile_pipeline

SIZE = 128
TURNED = 10.0


def test_committed_yaml_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "retraining.yaml")
    assert yaml.safe_load(fresh.read_text()) == yaml.safe_load(COMPILED.read_text()), (
        "pipelines/retraining.yaml is stale: run `anomalyops pipeline compile retraining`"
    )
    tasks = yaml.safe_load(COMPILED.read_text())["root"]["dag"]["tasks"]
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


@pytest.fixture
def champion(weld, tmp_path):
    """weld v1 trained, registered and deployed (in-process steps, real MLflow server)."""
    from anomalyops.components.export import export
    from anomalyops.components.registry import LocalServer, evaluation_set_hash, register
    from anomalyops.components.steps.deploy import deploy_step
    from anomalyops.components.train import train

    model = tmp_path / "v1"
    train(weld, model, settings={"input_size": (SIZE, SIZE)}, progress=False)
    export(model, tmp_path / "v1-export")
    with LocalServer(tmp_path / "mlflow") as server:
        decision = register(model, {"image_auroc": 0.97, "false_positive_rate": 0.0}, "weld",
                            server.uri, eval_dataset_sha256=evaluation_set_hash(weld),
                            export_dir=tmp_path / "v1-export")  # fmt: skip
        assert decision.promoted
        deploy_step(decision.to_dict(), str(tmp_path / "repository"))
        yield server


@pytest.mark.slow
def test_retraining_adapts_the_champion_to_a_turned_fixture(weld, tmp_path, champion):
    from mlflow import MlflowClient

    from anomalyops.components.registry import CHAMPION
    from anomalyops.pipelines.retraining import run_local
    from anomalyops.serving.contract import load_contract
    from anomalyops.serving.prediction_log import PredictionLog, PredictionRecord

    test = FolderDataset(weld).test_samples()
    good = [s.path for s in test if s.label == 0]
    defects = [s.path for s in test if s.label == 1]
    turned = [rotate(np.asarray(Image.open(p).convert("RGB")), TURNED) for p in good[:11]]
    shots = tmp_path / "new-good" / "train" / "good"
    shots.mkdir(parents=True)
    for i, image in enumerate(turned[:8]):
        Image.fromarray(image).save(shots / f"turned_{i}.png")

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
            "new_good": str(tmp_path / "new-good"),
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

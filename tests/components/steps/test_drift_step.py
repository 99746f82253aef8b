"""Drift step: references from a local folder or the real MLflow champion; its KFP output."""

# No `from __future__ import annotations`: KFP reads the test component's real annotations.

import json
from pathlib import Path

import pytest
from drift_log import log_rows, make_reference

from anomalyops.components.drift.reference import champion_reference, local_reference
from anomalyops.components.registry.client import RegistryError
from anomalyops.components.registry.server import LocalServer
from anomalyops.components.steps.drift import drift_step, report_html
from anomalyops.serving.contract.reference import ReferenceError

SETTINGS = {"window": 200, "min_samples": 150}


def test_step_on_a_local_reference_and_its_errors(tmp_path):
    make_reference(tmp_path / "export")
    log_db = tmp_path / "log.db"
    log_rows(log_db, 200, "5", brightness=120.0)  # much darker than the reference
    verdict = drift_step(
        "weld",
        str(log_db),
        str(tmp_path / "drift"),
        reference=str(tmp_path / "export"),
        settings=SETTINGS,
    )
    # No model.json beside it: the version is unknown, so every row counts.
    assert verdict["model_version"] is None and verdict["samples"] == 200
    assert verdict["drift"] is True and verdict["columns"]["brightness"]["drifted"]
    assert json.loads(Path(verdict["verdict_path"]).read_text())["drift"] is True
    assert "Wasserstein" in report_html(verdict)
    assert "insufficient data" in report_html(
        {**verdict, "report_path": None, "status": "insufficient data"}
    )
    with pytest.raises(ValueError, match="unknown settings"):
        drift_step(
            "weld", str(log_db), str(tmp_path), str(tmp_path / "export"), settings={"windw": 3}
        )
    with pytest.raises(FileNotFoundError, match="no prediction log"):
        drift_step("weld", str(tmp_path / "nope.db"), str(tmp_path), str(tmp_path / "export"))
    with pytest.raises(ReferenceError, match="empty: missing"):
        local_reference(tmp_path / "empty")
    with pytest.raises(ValueError, match="exactly one"):
        drift_step("weld", str(log_db), str(tmp_path))


@pytest.mark.slow  # a real MLflow server start plus Evidently: ~55 s on the shared CPU
def test_champion_reference_comes_from_the_registry(tmp_path):
    from mlflow import MlflowClient

    make_reference(tmp_path / "export", seed=3)
    with LocalServer(tmp_path / "mlflow") as server:
        client = MlflowClient(server.uri, server.uri)
        with pytest.raises(RegistryError, match="has no champion"):
            champion_reference(server.uri, "weld", tmp_path / "scratch")
        experiment = client.create_experiment("drift-test")
        for _ in range(2):  # two versions; champion points at the second
            run = client.create_run(experiment)
            client.log_artifacts(run.info.run_id, str(tmp_path / "export"), "export")
            client.set_terminated(run.info.run_id)
            if not client.search_registered_models("name='weld'"):
                client.create_registered_model("weld")
            version = client.create_model_version(
                "weld", f"runs:/{run.info.run_id}/export", run.info.run_id
            )
        client.set_registered_model_alias("weld", "champion", version.version)
        source = champion_reference(server.uri, "weld", tmp_path / "scratch")
        assert source.model_version == "2" and "weld@champion = v2" in source.description
        assert source.reference.scores == make_reference(tmp_path / "again", seed=3).scores

        log_db = tmp_path / "log.db"
        log_rows(log_db, 100, "1", brightness=90.0)  # the old champion's rows: left out
        log_rows(log_db, 200, "2")
        verdict = drift_step(
            "weld", str(log_db), str(tmp_path / "drift"), tracking_uri=server.uri, settings=SETTINGS
        )
    assert verdict["model_version"] == "2" and verdict["samples"] == 200
    assert verdict["status"] == "no drift" and verdict["drift"] is False


def test_the_drift_output_compiles_into_a_kfp_condition(tmp_path):
    """Compile only: the drift output is a BOOLEAN a `dsl.If` can test. That a run takes the
    branch is tests/pipelines/test_drift_pipeline.py's (the real drift pipeline, run)."""
    from kfp import compiler, dsl

    from anomalyops.components.steps.drift import drift_component

    @dsl.component(base_image="python:3.11")
    def retrain(verdict: str) -> str:
        return verdict

    @dsl.pipeline(name="drift-branch")
    def pipeline(variant: str = "weld", log_db: str = "/logs/log.db"):
        check = drift_component(
            variant=variant,
            log_db=log_db,
            out="/drift",
            reference="",
            tracking_uri="http://mlflow",
            settings_json="{}",
        )
        with dsl.If(check.outputs["drift"] == True):  # noqa: E712 (a KFP condition)
            retrain(verdict=check.outputs["verdict"])

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    text = path.read_text()
    assert "drift-component" in text and "condition-1" in text
    assert "parameterType: BOOLEAN" in text

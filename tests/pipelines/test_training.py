"""The training pipeline: compiled YAML in sync, and real kfp.local runs on weld."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from anomalyops.pipelines.cli import main
from anomalyops.pipelines.training import COMPILED, compile_pipeline


def test_committed_yaml_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "training.yaml")
    assert COMPILED.is_file(), (
        "run `anomalyops pipeline compile` and commit pipelines/training.yaml"
    )
    assert yaml.safe_load(fresh.read_text()) == yaml.safe_load(COMPILED.read_text()), (
        "pipelines/training.yaml is stale: run `anomalyops pipeline compile` and commit it"
    )
    spec = yaml.safe_load(COMPILED.read_text())
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "validate-component",
        "train-component",
        "evaluate-component",
        "register-component",
    }
    assert tasks["register-component"]["dependentTasks"] == [
        "evaluate-component",
        "train-component",
        "validate-component",
    ]


def test_validation_failure_stops_the_pipeline(weld, tmp_path, capsys):
    data = tmp_path / "few"
    (data / "train" / "good").mkdir(parents=True)
    for path in sorted((weld / "train" / "good").glob("*.png"))[:3]:
        shutil.copy(path, data / "train" / "good" / path.name)
    (data / "train" / "good" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    code = main(["pipeline", "run", "training", "--data", str(data), "--variant", "few",
                 "--out", str(out), "--tracking-uri", "http://127.0.0.1:9"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "validate-component" in err
    report = Path(err.split("validation report: ")[1].strip())
    page = report.read_text()
    assert "FAILED" in page and "broken.png" in page and "min_images" in page
    assert not list(out.glob("kfp/*/train-component"))


def test_local_pipeline_registers_a_champion_on_weld(weld, tmp_path, capsys):
    from mlflow import MlflowClient

    from anomalyops.components.registry import CHAMPION, LocalServer

    out = tmp_path / "out"
    code = main(["pipeline", "run", "training", "--data", str(weld), "--variant", "weld",
                 "--out", str(out), "--size", "128"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "MLflow UI: http://127.0.0.1:" in printed
    assert "models:/weld/1 -> champion" in printed
    for line in printed.splitlines():
        if line.startswith(("validation report:", "evaluation report:")):
            assert "<html" in Path(line.split(": ", 1)[1]).read_text().lower()
    with LocalServer(out / "mlflow") as server:  # the store outlives the CLI's server
        client = MlflowClient(server.uri, server.uri)
        champion = client.get_model_version_by_alias("weld", CHAMPION)
        assert champion.version == "1" and float(champion.tags["image_auroc"]) > 0.5
        reports = {a.path for a in client.list_artifacts(champion.run_id, "reports")}
        assert {"reports/validation.html", "reports/evaluation.html", "reports/sample_maps"} <= (
            reports
        )


def test_cluster_submission_needs_a_reachable_tracking_server(weld, capsys):
    code = main(["pipeline", "run", "training", "--data", str(weld), "--variant", "weld",
                 "--host", "http://kfp.example:8888"])  # fmt: skip
    assert code == 2 and "--tracking-uri is required with --host" in capsys.readouterr().err

"""`anomalyops pipeline run|compile training|retraining|drift` and `anomalyops adapt`."""

from __future__ import annotations

import json

import pytest
import yaml

from anomalyops.pipelines import drift, retraining, training
from anomalyops.pipelines.cli.main import build_parser, main
from anomalyops.pipelines.cli.pipeline import _pipeline_arguments


@pytest.mark.parametrize("module", [training, retraining, drift], ids=lambda m: m.PIPELINE_NAME)
def test_compile_writes_each_pipeline(module, tmp_path, capsys):
    name = module.COMPILED.stem
    out = tmp_path / f"{name}.yaml"
    assert main(["pipeline", "compile", name, "--output", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert list(yaml.safe_load_all(out.read_text())) == list(
        yaml.safe_load_all(module.COMPILED.read_text())
    )


def test_retraining_and_drift_arguments_match_the_pipelines(tmp_path):
    """Every argument the CLI builds is a parameter of the pipeline, paths made absolute."""
    common = ["--variant", "weld", "--new-good", "shots", "--triton-url", "127.0.0.1:8001"]
    parser = build_parser()
    args = parser.parse_args(["pipeline", "run", "retraining", *common, "--size", "128",
                              "--prediction-log", "log.db", "--views", "4"])  # fmt: skip
    arguments = _pipeline_arguments(args, tmp_path, "http://mlflow", str(tmp_path / "repo"))
    parameters = retraining.retraining_pipeline.component_spec.inputs
    assert set(arguments) <= set(parameters)
    assert arguments["triton_url"] == "127.0.0.1:8001" and arguments["views"] == 4
    assert arguments["new_good"].startswith("/") and arguments["prediction_log"].endswith("log.db")
    assert json.loads(arguments["settings_json"])["input_size"] == [128, 128]

    window = ["--window", "80", "--min-samples", "60", "--cooldown", "6h"]
    args = parser.parse_args(["pipeline", "run", "drift", *common, "--log-db", "log.db", *window])
    arguments = _pipeline_arguments(args, tmp_path, "http://mlflow", str(tmp_path / "repo"))
    assert set(arguments) <= set(drift.drift_pipeline.component_spec.inputs)
    assert json.loads(arguments["drift_settings_json"]) == {
        "window": 80, "min_samples": 60, "cooldown_s": 21600.0
    }  # fmt: skip
    assert arguments["drift_out"] == str(tmp_path / "drift")
    assert arguments["triton_url"] == "127.0.0.1:8001"


def test_drift_run_without_a_log_is_a_clear_error(tmp_path, capsys):
    code = main(["pipeline", "run", "drift", "--variant", "weld", "--new-good", "shots",
                 "--log-db", str(tmp_path / "none.db"), "--out", str(tmp_path)])  # fmt: skip
    assert code == 2
    assert f"{tmp_path / 'none.db'}: no prediction log there" in capsys.readouterr().err
    assert not (tmp_path / "mlflow").exists()  # failed before starting anything


def test_cluster_run_needs_its_places(capsys):
    code = main(["pipeline", "run", "retraining", "--variant", "weld", "--new-good", "s3://b/x",
                 "--host", "https://kfp.example"])  # fmt: skip
    assert code == 2
    assert "--tracking-uri is required with --host" in capsys.readouterr().err
    # A repository deploy target on a cluster would "deploy" into the step's own pod.
    code = main(["pipeline", "run", "retraining", "--variant", "weld", "--new-good", "s3://b/x",
                 "--host", "https://kfp.example", "--tracking-uri", "http://mlflow:5000",
                 "--triton-repository", "s3://b/triton"])  # fmt: skip
    assert code == 2 and "--host needs --deploy-target kserve" in capsys.readouterr().err


def test_adapt_starts_a_new_variant_from_two_shots(weld, tmp_path, capsys):
    shots = tmp_path / "shots"
    shots.mkdir()
    for path in sorted((weld / "train" / "good").glob("*.png"))[:2]:
        (shots / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "adapted"
    assert main(["adapt", "--data", str(shots), "--out", str(out), "--size", "64",
                 "--views", "2"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "started a new PatchCore with 2 good images" in printed
    assert "leave-one-out" in printed and str(out.resolve()) in printed
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds["image"]["n_good"] == 2 and thresholds["image"]["guaranteed"] is False


def test_adapt_names_a_missing_folder(tmp_path, capsys):
    assert main(["adapt", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "none: no such folder of good images" in capsys.readouterr().err

"""The training pipeline: compiled YAML in sync, and real kfp.local runs on weld.

One full run (validate → ... → deploy) is shared by the registry, lineage, deploy and
Triton checks to keep CI time down; a refused challenger reuses its trained model.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from anomalyops.pipelines.cli.main import main
from anomalyops.pipelines.training import COMPILED, compile_pipeline, latest_run


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ROOT with its size and mtime: equal trees mean nothing was written."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def test_committed_yaml_is_current(tmp_path):
    fresh = compile_pipeline(tmp_path / "training.yaml")
    assert COMPILED.is_file(), (
        "run `anomalyops pipeline compile` and commit pipelines/training.yaml"
    )
    committed = list(yaml.safe_load_all(COMPILED.read_text()))
    assert list(yaml.safe_load_all(fresh.read_text())) == committed, (
        "pipelines/training.yaml is stale: run `anomalyops pipeline compile` and commit it"
    )
    spec = committed[0]  # the second document is the Kubernetes platform spec
    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {
        "validate-component",
        "train-component",
        "evaluate-component",
        "export-component",
        "register-component",
        "deploy-component",
    }
    assert tasks["export-component"]["dependentTasks"] == ["train-component"]
    assert tasks["register-component"]["dependentTasks"] == [
        "evaluate-component",
        "export-component",
        "train-component",
        "validate-component",
    ]
    assert tasks["deploy-component"]["dependentTasks"] == ["register-component"]
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["triton_flavour"]["defaultValue"] == "python"
    assert "defaultValue" not in parameters["triton_repository"]


def few_images(weld: Path, data: Path) -> Path:
    """Three good weld images and a corrupt one: validation must stop the run."""
    (data / "train" / "good").mkdir(parents=True)
    for path in sorted((weld / "train" / "good").glob("*.png"))[:3]:
        shutil.copy(path, data / "train" / "good" / path.name)
    (data / "train" / "good" / "broken.png").write_bytes(b"not an image")
    return data


@pytest.mark.parametrize("where", ["path", "bucket"])
def test_validation_failure_stops_the_pipeline(weld, tmp_path, capsys, request, where):
    data = str(few_images(weld, tmp_path / "few"))
    if where == "bucket":  # validate copies the data from the bucket into its artifact
        from anomalyops.serving.storage import upload

        data = upload(data, f"{request.getfixturevalue('s3_bucket')}/few")
    out = tmp_path / "out"
    code = main(["pipeline", "run", "training", "--data", data, "--variant", "few",
                 "--out", str(out), "--tracking-uri", "http://127.0.0.1:9"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "validate-component" in err
    # The step's own error, not only "Inner task failed": its type, check and file.
    assert "ValidationError:" in err and "decodes (every file decodes):" in err
    assert "broken.png" in err.split("validation report:")[0]
    report = Path(err.split("validation report: ")[1].splitlines()[0].strip())
    page = report.read_text()
    assert "FAILED" in page and "broken.png" in page and "min_images" in page
    assert not list(out.glob("kfp/*/train-component"))


def test_local_pipeline_registers_and_deploys_a_champion_on_weld(
    weld, tmp_path, capsys, triton_server, s3_bucket
):
    """The whole training run, its dataset read from a bucket (moto) as on a cluster."""
    import numpy as np
    from mlflow import MlflowClient

    from anomalyops.components.deploy.release import release
    from anomalyops.components.registry.client import CHAMPION
    from anomalyops.components.registry.server import LocalServer
    from anomalyops.components.steps.register import register_step
    from anomalyops.serving.contract.model import load_contract
    from anomalyops.serving.images.decode import load_image
    from anomalyops.serving.storage import upload
    from anomalyops.serving.triton.client import TritonClient

    out = tmp_path / "out"
    data = upload(str(weld), f"{s3_bucket}/weld")
    code = main(["pipeline", "run", "training", "--data", data, "--variant", "weld",
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
        # The exported model in the registry says which run, model and version it is.
        (tmp_path / "dl").mkdir()
        logged = client.download_artifacts(champion.run_id, "export", str(tmp_path / "dl"))
        logged_files = {p.name for p in Path(logged).iterdir()}
        assert logged_files == {"model.onnx", "model.json", "reference.json"}
        contract = load_contract(logged)
        lineage = {"mlflow_run_id": champion.run_id, "registered_model": "weld",
                   "model_version": "1"}  # fmt: skip
        assert {k: contract.lineage[k] for k in lineage} == lineage
        assert champion.tags["onnx_sha256"] == contract.onnx["sha256"]

        # The champion was deployed: Triton model "weld" version 1 is that registered version.
        repository = out / "triton-repository"
        assert f"Triton repository: {repository} (model weld version 1, python" in printed
        deployed = load_contract(repository / "weld" / "1")
        assert {k: deployed.lineage[k] for k in lineage} == lineage
        assert deployed.onnx["sha256"] == contract.onnx["sha256"]

        # A worse challenger (same trained model, lower AUROC) is refused and not deployed.
        run_dir = latest_run(out / "kfp")
        before = tree(repository)
        worse = register_step(
            str(run_dir / "train-component" / "model"),
            {"image_auroc": float(champion.tags["image_auroc"]) - 0.1},
            "weld",
            server.uri,
            champion.tags["eval_dataset_sha256"],
            {},
            str(run_dir / "export-component" / "exported"),
        )
        assert not worse.promoted and worse.version == "2" and worse.champion == "1"
        refused = release(worse.to_dict(), str(repository))
        assert not refused.deployed and "v1 keeps serving" in refused.reason
        # A stale decision (v2 claiming champion) is refused by the registry's alias.
        stale = release(worse.to_dict() | {"promoted": True}, str(repository))
        assert not stale.deployed and "champion is now v1" in stale.reason
        assert tree(repository) == before

    # The real bundled Triton loads what deploy wrote and scores through it.
    image = load_image(sorted((weld / "test" / "good").glob("*"))[0], deployed.input_size)
    with triton_server(repository) as triton, TritonClient(triton.url, "weld") as plant:
        scores, maps, _ = plant.infer(image[None])
        assert scores.shape == (1,) and np.isfinite(scores).all()
        assert maps.shape[-2:] == deployed.input_size


def test_cluster_submission_needs_a_reachable_tracking_server(weld, capsys):
    code = main(["pipeline", "run", "training", "--data", str(weld), "--variant", "weld",
                 "--host", "http://kfp.example:8888"])  # fmt: skip
    assert code == 2 and "--tracking-uri is required with --host" in capsys.readouterr().err

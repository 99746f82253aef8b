"""Deploy step, cluster target: registry -> Triton repository in a bucket -> InferenceService.

Everything a cluster has is real here except the cluster: MLflow (artifacts in the S3
bucket), the S3 server (moto) with boto3, the `kubernetes` client reading a kubeconfig
that points at the in-memory API server (kmock). The line exists as the chart creates it
(no model yet: stopped); FakeKServe models KServe 0.20's controller, which cannot run here.
"""

from __future__ import annotations

import json

import boto3
import pytest
from kube_api import ISVC, PLURAL, FakeKServe, KubeApi, chart_line

from anomalyops.components.deploy.export import export
from anomalyops.components.deploy.kserve import custom_objects_api
from anomalyops.components.deploy.release import release
from anomalyops.components.registry.register import register
from anomalyops.components.registry.server import LocalServer
from anomalyops.serving.contract.model import load_contract
from anomalyops.serving.storage import parse_bucket_uri

NAMESPACE = "plant-a"
LINE = "weld-line-1"
KSERVE = json.dumps({"name": LINE, "namespace": NAMESPACE, "ready_timeout_s": 5, "poll_s": 0.05})


@pytest.fixture(scope="module")
def exported(weld, tmp_path_factory):
    from anomalyops.components.training.train import train

    root = tmp_path_factory.mktemp("weld")
    train(weld, root / "model", settings={"input_size": (64, 64)}, progress=False)
    export(root / "model", root / "export")
    return root


@pytest.mark.slow  # a real MLflow server, two registrations, uploads: ~60 s on 2 busy cores
def test_champion_goes_to_the_bucket_and_the_line_rolls_to_it(
    exported, s3_bucket, tmp_path, monkeypatch
):
    bucket = parse_bucket_uri(s3_bucket).bucket
    with LocalServer(tmp_path / "mlflow", artifacts=f"{s3_bucket}/mlflow") as mlflow:
        first = register(exported / "model", {"image_auroc": 0.9}, "weld", mlflow.uri,
                         eval_dataset_sha256="e" * 64, export_dir=exported / "export")  # fmt: skip
        # MLflow keeps the run's artifacts in the bucket, not on this machine.
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]]
        assert any(k.startswith("mlflow/") and k.endswith("/export/model.onnx") for k in keys)

        with KubeApi() as kube:
            monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig")))
            api = custom_objects_api(kube.api_client())
            chart_line(api, NAMESPACE, LINE, "Standard", None)
            with FakeKServe(api, NAMESPACE, LINE, healthy=lambda uri: True):
                deployed = release(first.to_dict(), f"{s3_bucket}/triton", "onnxruntime",
                                       target="kserve", kserve_json=KSERVE)  # fmt: skip
                second = register(exported / "model", {"image_auroc": 0.95}, "weld", mlflow.uri,
                                  eval_dataset_sha256="e" * 64,
                                  export_dir=exported / "export")  # fmt: skip
                rolled = release(second.to_dict(), f"{s3_bucket}/triton", "onnxruntime",
                                     target="kserve", kserve_json=KSERVE)  # fmt: skip
            # A stale decision (v1 claiming champion again) leaves the line alone.
            stale = release(first.to_dict(), f"{s3_bucket}/triton", "onnxruntime",
                                target="kserve", kserve_json=KSERVE)  # fmt: skip
            final = api.get_namespaced_custom_object(*ISVC, NAMESPACE, PLURAL, LINE)

    assert deployed.deployed
    assert f"started on InferenceService {NAMESPACE}/{LINE}" in deployed.reason
    assert rolled.deployed and "promoted" in rolled.reason and "Standard mode" in rolled.reason
    assert rolled.storage_uri == f"{s3_bucket}/triton/weld/v2"
    assert final["spec"]["predictor"]["model"]["storageUri"] == rolled.storage_uri
    assert not stale.deployed and "champion is now v2" in stale.reason
    # The bucket holds one Triton repository per version, as KServe's Triton runtime loads it.
    repository = tmp_path / "repository"
    from anomalyops.serving.storage import download

    download(rolled.storage_uri, repository)
    assert {p.relative_to(repository).as_posix() for p in repository.rglob("*") if p.is_file()} >= {
        "weld/config.pbtxt", "weld/2/model.onnx", "weld/2/model.json"}  # fmt: skip
    assert 'platform: "onnxruntime_onnx"' in (repository / "weld" / "config.pbtxt").read_text()
    lineage = load_contract(repository / "weld" / "2").lineage  # folder = registered version
    assert (lineage["model_version"], lineage["mlflow_run_id"]) == ("2", second.run_id)


def test_kserve_target_needs_a_bucket_repository(tmp_path):
    decision = {"variant": "weld", "version": "1", "run_id": "r", "promoted": True,
                "champion": "1", "tracking_uri": "http://127.0.0.1:9", "reason": ""}  # fmt: skip
    with pytest.raises(ValueError, match="target kserve needs REPOSITORY as s3:// or gs://"):
        release(decision, str(tmp_path), "onnxruntime", target="kserve", kserve_json=KSERVE)
    with pytest.raises(ValueError, match="target must be one of"):
        release(decision, str(tmp_path), "onnxruntime", target="cluster")

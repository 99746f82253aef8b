"""`helm upgrade` keeps the model the deploy step rolled a line to (the chart's `lookup`).

The real helm renders with `--dry-run=server`, which lets `lookup` read the live
InferenceServices from the in-memory API server (kmock, tests/kube_api.py), exactly as
`helm upgrade` renders. Helm's release storage is not part of this: kmock 0.8 cannot
decode the protobuf Secret a real `helm install` writes, so the install is played by
creating the rendered objects directly.
"""

from __future__ import annotations

import yaml
from chart_values import CHART, values_args
from kube_api import ISVC, PLURAL, KubeApi

from anomalyops.components.deploy.kserve import STOP_ANNOTATION, model_patch

NAMESPACE = "plant"
WELD, TILE = "rel-anomalyops-weld-line-1", "rel-anomalyops-tile-line-2"  # release-prefixed


def lines(stdout: str) -> dict[str, dict]:
    objects = [o for o in yaml.safe_load_all(stdout) if o]
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "InferenceService"}


def test_an_upgrade_keeps_the_live_model_uri_canary_and_start(helm, tmp_path):
    chart = ["rel", str(CHART), "--namespace", NAMESPACE, *values_args("gpu")]
    installed = helm("template", *chart)
    assert installed.returncode == 0, installed.stderr
    with KubeApi() as kube:
        kube.serve_discovery()
        config = str(kube.kubeconfig(tmp_path / "kubeconfig", NAMESPACE))
        from kubernetes import client

        api = client.CustomObjectsApi(kube.api_client())
        first = lines(installed.stdout)
        for obj in first.values():  # `helm install`
            api.create_namespaced_custom_object(*ISVC, NAMESPACE, PLURAL, obj)
        # The deploy step: weld rolled to v7 and was rolled back (canary 0); tile started.
        weld = model_patch(first[WELD], "s3://anomalyops/triton/weld/v7")
        weld["spec"]["predictor"]["canaryTrafficPercent"] = 0
        api.patch_namespaced_custom_object(*ISVC, NAMESPACE, PLURAL, WELD, weld)
        tile = model_patch(first[TILE], "s3://anomalyops/triton/tile/v3")
        tile["metadata"] = {"annotations": {STOP_ANNOTATION: None}}
        api.patch_namespaced_custom_object(*ISVC, NAMESPACE, PLURAL, TILE, tile)

        server = ["--dry-run=server", "--kubeconfig", config]
        upgraded = helm("template", *chart, *server)
        other = ["rel", str(CHART), "--namespace", "other", *values_args("gpu")]
        elsewhere = helm("template", *other, *server)
    assert upgraded.returncode == 0, upgraded.stderr
    after = lines(upgraded.stdout)
    weld, tile = after[WELD]["spec"], after[TILE]
    assert weld["predictor"]["model"]["storageUri"] == "s3://anomalyops/triton/weld/v7"
    assert weld["transformer"]["storageUris"][0]["uri"] == "s3://anomalyops/triton/weld/v7"
    assert weld["predictor"]["canaryTrafficPercent"] == 0
    assert tile["spec"]["predictor"]["model"]["storageUri"] == "s3://anomalyops/triton/tile/v3"
    assert tile["spec"]["transformer"]["storageUris"] == [
        {"uri": "s3://anomalyops/triton/tile/v3", "mountPath": "/mnt/models"}]  # fmt: skip
    assert STOP_ANNOTATION not in tile["metadata"]["annotations"]
    # Without a live object (another namespace) the values' first model, and a stop.
    fresh = lines(elsewhere.stdout)
    assert fresh[WELD]["spec"]["predictor"]["model"]["storageUri"] == (
        "s3://anomalyops/triton/weld-line-1")  # fmt: skip
    assert fresh[TILE]["metadata"]["annotations"][STOP_ANNOTATION] == "true"
    assert fresh == first

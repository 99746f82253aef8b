"""Cluster deploy: create, update, canary, promote and rollback of a line's InferenceService.

The real `kubernetes` client talks to an in-memory API server on 127.0.0.1 (kmock). What
KServe's controller and Knative would do to the status (revisions, readiness, traffic)
cannot run here: FakeKServe (tests/kube_api.py) stands in for them, driving the status
through the API as the controller does. Every object is checked against the real CRD.
"""

from __future__ import annotations

import json

import pytest
from k8s_schemas import K8sSchemaError, validate
from kube_api import FakeKServe, KubeApi

from anomalyops.components.deploy.kserve import (
    GROUP,
    PLURAL,
    VERSION,
    KServeSettings,
    RolloutError,
    custom_objects_api,
    inference_service,
    rollout,
)

NAMESPACE = "plant-a"
FAST = {"namespace": NAMESPACE, "ready_timeout_s": 3.0, "poll_s": 0.05, "canary_percent": 20}


@pytest.fixture(scope="module")
def kube():
    with KubeApi() as server:
        yield server


@pytest.fixture
def api(kube):
    return custom_objects_api(kube.api_client())


def fetch(api, name: str) -> dict:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    validate(obj)  # spec as patched and status as KServe reports it
    return obj


def writes(kube, name: str) -> list[tuple[str, dict]]:
    """(method, body) of every create or patch of NAME's InferenceService, in order."""
    return [
        (method, body)
        for method, path, body in kube.requests()
        if method in ("POST", "PATCH") and path.startswith(f"/apis/{GROUP}/{VERSION}/namespaces/")
        and (path.endswith(f"/{PLURAL}/{name}") or (method == "POST" and
                                                     body["metadata"]["name"] == name))
    ]  # fmt: skip


def test_create_then_canary_then_promote(kube, api):
    settings = KServeSettings.from_json(json.dumps(FAST))
    with FakeKServe(api, NAMESPACE, "weld", healthy=lambda uri: True) as kserve:
        first = rollout(api, settings, "weld", "s3://models/weld/v1", log=lambda _: None)
        assert (first.action, first.revision) == ("created", "weld-predictor-00001")
        assert first.previous_storage_uri is None
        second = rollout(api, settings, "weld", "s3://models/weld/v2", log=lambda _: None)
    assert (second.action, second.revision) == ("promoted", "weld-predictor-00002")
    assert second.previous_storage_uri == "s3://models/weld/v1"

    (create, body), (patch1, canary), (patch2, promote) = writes(kube, "weld")
    assert (create, patch1, patch2) == ("POST", "PATCH", "PATCH")
    validate(body)
    assert "canaryTrafficPercent" not in body["spec"]["predictor"]  # the first has all traffic
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 20
    assert canary["spec"]["predictor"]["model"]["storageUri"] == "s3://models/weld/v2"
    assert promote == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    # The new revision served its 20 % beside the old one before it got everything.
    assert [
        {"revisionName": "weld-predictor-00002", "percent": 20, "latestRevision": True},
        {"revisionName": "weld-predictor-00001", "percent": 80, "latestRevision": False},
    ] in kserve.traffic_seen
    final = fetch(api, "weld")
    assert final["spec"]["predictor"]["model"]["storageUri"] == "s3://models/weld/v2"
    assert "canaryTrafficPercent" not in final["spec"]["predictor"]
    assert final["status"]["components"]["predictor"]["traffic"] == [
        {"revisionName": "weld-predictor-00002", "percent": 100, "latestRevision": True}
    ]


def test_a_repeated_deploy_changes_nothing(kube, api):
    settings = KServeSettings(**FAST)
    with FakeKServe(api, NAMESPACE, "bottle", healthy=lambda uri: True):
        rollout(api, settings, "bottle", "s3://models/bottle/v1", log=lambda _: None)
        again = rollout(api, settings, "bottle", "s3://models/bottle/v1", log=lambda _: None)
    assert (again.action, again.revision) == ("unchanged", "bottle-predictor-00001")
    assert len(writes(kube, "bottle")) == 1  # the create only


def test_a_revision_that_never_gets_ready_is_rolled_back(kube, api):
    settings = KServeSettings(**FAST | {"ready_timeout_s": 1.0})
    with FakeKServe(
        api, NAMESPACE, "tile", healthy=lambda uri: not uri.endswith("broken")
    ) as kserve:
        rollout(api, settings, "tile", "s3://models/tile/v1", log=lambda _: None)
        with pytest.raises(RolloutError, match=r"plant-a/tile: new revision for "
                           r"s3://models/tile/broken not ready after 1 s; rolled back to "
                           r"s3://models/tile/v1$"):  # fmt: skip
            rollout(api, settings, "tile", "s3://models/tile/broken", log=lambda _: None)
    final = fetch(api, "tile")
    assert final["spec"]["predictor"]["model"]["storageUri"] == "s3://models/tile/v1"
    assert "canaryTrafficPercent" not in final["spec"]["predictor"]
    # The broken revision never carried traffic; the restored spec serves it all.
    served = [t["revisionName"] for traffic in kserve.traffic_seen for t in traffic]
    assert "tile-predictor-00002" not in served
    assert final["status"]["components"]["predictor"]["traffic"] == [
        {"revisionName": "tile-predictor-00003", "percent": 100, "latestRevision": True}
    ]


def test_the_charts_transformer_follows_the_repository_and_back(kube, api):
    """The chart's transformer mounts the same repository (each version's model.json)."""
    settings = KServeSettings(**FAST | {"ready_timeout_s": 1.0})
    mount = {"uri": "s3://models/cap/v1", "mountPath": "/mnt/models"}
    with FakeKServe(api, NAMESPACE, "cap", healthy=lambda uri: not uri.endswith("broken")):
        rollout(api, settings, "cap", "s3://models/cap/v1", log=lambda _: None)
        transformer = {"containers": [{"name": "kserve-container", "image": "t"}],
                       "storageUris": [mount]}  # fmt: skip
        api.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, "cap", {"spec": {"transformer": transformer}}
        )
        rollout(api, settings, "cap", "s3://models/cap/v2", log=lambda _: None)
        assert fetch(api, "cap")["spec"]["transformer"]["storageUris"] == [
            mount | {"uri": "s3://models/cap/v2"}
        ]
        with pytest.raises(RolloutError, match="rolled back to s3://models/cap/v2"):
            rollout(api, settings, "cap", "s3://models/cap/broken", log=lambda _: None)
    final = fetch(api, "cap")["spec"]
    assert final["predictor"]["model"]["storageUri"] == "s3://models/cap/v2"
    assert final["transformer"]["storageUris"] == [mount | {"uri": "s3://models/cap/v2"}]


def test_a_new_line_that_never_gets_ready_fails_clearly(api):
    settings = KServeSettings(**FAST | {"ready_timeout_s": 0.5})
    with (
        FakeKServe(api, NAMESPACE, "weld-b", healthy=lambda uri: False),
        pytest.raises(RolloutError, match="plant-a/weld-b: created but not Ready after 0 s"),
    ):
        rollout(api, settings, "weld-b", "s3://models/weld/v1", log=lambda _: None)


def test_gpu_line_matches_the_crd_and_a_misspelt_field_fails():
    settings = KServeSettings.from_json(
        '{"namespace": "plant-a", "resources": {"limits": {"nvidia.com/gpu": "1", '
        '"memory": "8Gi"}, "requests": {"cpu": "2"}}, "node_selector": '
        '{"nvidia.com/gpu.present": "true"}, "tolerations": [{"key": "nvidia.com/gpu", '
        '"operator": "Exists", "effect": "NoSchedule"}], "service_account": "models-reader", '
        '"min_replicas": 1, "max_replicas": 3}'
    )
    obj = inference_service(settings, "weld", "s3://models/weld/v1")
    validate(obj)
    predictor = obj["spec"]["predictor"]
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert predictor["model"]["modelFormat"] == {"name": "triton"}
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert predictor["tolerations"][0]["effect"] == "NoSchedule"
    assert (predictor["serviceAccountName"], predictor["maxReplicas"]) == ("models-reader", 3)

    predictor["model"]["storageURI"] = predictor["model"].pop("storageUri")
    with pytest.raises(K8sSchemaError, match="storageURI"):
        validate(obj)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['canary'\]"):
        KServeSettings.from_json('{"canary": 10}')
    with pytest.raises(ValueError, match=r"canary_percent must be 0\.\.100, got 150"):
        KServeSettings.from_json('{"canary_percent": 150}')

"""Cluster deploy: start, roll, promote and roll back a line's InferenceService, both modes.

The real `kubernetes` client talks to an in-memory API server on 127.0.0.1 (kmock). What
KServe v0.20.0's controller does to the status cannot run here: FakeKServe
(tests/kube_api.py) models it from KServe's source, for predictor and transformer, in
Knative and Standard mode. Every InferenceService read back is checked against the CRD.
"""

from __future__ import annotations

import json
import time

import pytest
from k8s_schemas import validate
from kube_api import FakeKServe, KubeApi, chart_line

from anomalyops.components.deploy.kserve import (
    GROUP,
    PLURAL,
    VERSION,
    KServeSettings,
    RolloutError,
    custom_objects_api,
    rollout,
)

NAMESPACE = "plant-a"
FAST = {"namespace": NAMESPACE, "ready_timeout_s": 5.0, "poll_s": 0.05, "canary_percent": 20}
MODES = ("Knative", "Standard")


@pytest.fixture(scope="module")
def kube():
    with KubeApi() as server:
        yield server


@pytest.fixture
def api(kube):
    return custom_objects_api(kube.api_client())


def fetch(api, name: str) -> dict:
    obj = api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
    validate(obj)  # spec as patched and status as the model of KServe writes it
    return obj


def patches(kube, name: str) -> list[dict]:
    """The body of every spec patch sent to NAME (status writes are FakeKServe's)."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{name}"
    return [body for method, p, body in kube.requests() if method == "PATCH" and p == path]


def settings(name: str, **extra) -> KServeSettings:
    return KServeSettings.from_json(json.dumps(FAST | {"name": name} | extra))


def wait_settled(fake: FakeKServe) -> None:
    deadline = time.monotonic() + 5
    while not fake.rounds and time.monotonic() < deadline:
        time.sleep(0.02)


def only_model_and_traffic(body: dict) -> bool:
    """A patch may carry the model URIs, the canary share and the stop annotation, nothing else."""
    spec = body.get("spec", {})
    predictor = spec.get("predictor", {})
    allowed = (
        set(body) <= {"spec", "metadata"}
        and set(body.get("metadata", {})) <= {"annotations"}
        and set(body.get("metadata", {}).get("annotations", {})) <= {"serving.kserve.io/stop"}
        and set(spec) <= {"predictor", "transformer"}
        and set(predictor) <= {"model", "canaryTrafficPercent"}
        and set(predictor.get("model", {})) <= {"storageUri"}
        and set(spec.get("transformer", {})) <= {"storageUris"}
    )
    return allowed


def test_knative_canary_then_promote_moves_predictor_and_transformer(kube, api):
    chart_line(api, NAMESPACE, "weld", "Knative", "s3://models/weld/v1")
    with FakeKServe(api, NAMESPACE, "weld", healthy=lambda uri: True) as kserve:
        wait_settled(kserve)
        done = rollout(api, settings("weld"), "s3://models/weld/v2", log=lambda _: None)
    assert (done.action, done.mode, done.previous_storage_uri) == (
        "promoted", "Knative", "s3://models/weld/v1")  # fmt: skip
    canary, promote = patches(kube, "weld")
    assert canary["spec"]["predictor"] == {
        "model": {"storageUri": "s3://models/weld/v2"}, "canaryTrafficPercent": 20}  # fmt: skip
    assert canary["spec"]["transformer"] == {
        "storageUris": [{"uri": "s3://models/weld/v2", "mountPath": "/mnt/models"}]}  # fmt: skip
    assert promote == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    # The new revision served its 20 % beside the rolled-out one before it got everything.
    assert [
        {"revisionName": "weld-predictor-00002", "percent": 20, "latestRevision": True},
        {"revisionName": "weld-predictor-00001", "percent": 80, "latestRevision": False},
    ] in kserve.traffic_seen
    final = fetch(api, "weld")
    assert "canaryTrafficPercent" not in final["spec"]["predictor"]
    assert final["spec"]["predictor"]["model"]["runtime"] == "rel-anomalyops-triton"  # untouched
    predictor = final["status"]["components"]["predictor"]
    assert predictor["latestRolledoutRevision"] == "weld-predictor-00002"
    assert predictor["traffic"] == [
        {"revisionName": "weld-predictor-00002", "percent": 100, "latestRevision": True}
    ]
    assert final["status"]["components"]["transformer"]["latestReadyRevision"] == (
        "weld-transformer-00002")  # fmt: skip


def test_standard_waits_for_the_deployment_not_the_ready_condition(kube, api):
    chart_line(api, NAMESPACE, "cap", "Standard", "s3://models/cap/v1")
    with FakeKServe(api, NAMESPACE, "cap", healthy=lambda uri: True, delay=0.6) as kserve:
        wait_settled(kserve)
        kserve.settled.clear()
        done = rollout(api, settings("cap"), "s3://models/cap/v2", log=lambda _: None)
        settled_when_it_returned = list(kserve.settled)
    # While the new pods were starting, KServe already said Ready (old pods Available):
    # the step returned only after the Deployment had rolled.
    assert {"type": "PredictorReady", "status": "True"} in kserve.during_rollout
    assert settled_when_it_returned
    assert (done.action, done.mode) == ("promoted", "Standard")
    (patch,) = patches(kube, "cap")
    assert "canaryTrafficPercent" not in patch["spec"]["predictor"]  # no meaning in Standard
    deployment = api.get_namespaced_custom_object("apps", "v1", NAMESPACE, "deployments",
                                                  "cap-predictor")  # fmt: skip
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["internal.serving.kserve.io/storage-initializer-sourceuri"] == (
        "s3://models/cap/v2")  # fmt: skip
    assert deployment["status"]["updatedReplicas"] == deployment["spec"]["replicas"] == 1


@pytest.mark.parametrize("mode", MODES)
def test_a_broken_version_fails_fast_and_rolls_back(kube, api, mode):
    name = f"tile-{mode.lower()}"
    chart_line(api, NAMESPACE, name, mode, "s3://models/tile/v1")
    healthy = lambda uri: not uri.endswith("broken")  # noqa: E731
    with FakeKServe(api, NAMESPACE, name, healthy=healthy) as kserve:
        wait_settled(kserve)
        started = time.monotonic()
        back = (f"all traffic back on revision {name}-predictor-00001, the last rolled out"
                if mode == "Knative" else "rolled back to s3://models/tile/v1")  # fmt: skip
        with pytest.raises(RolloutError, match=rf"{NAMESPACE}/{name}: s3://models/tile/broken "
                           rf"did not serve \(predictor: .*\); {back}"):  # fmt: skip
            rollout(api, settings(name), "s3://models/tile/broken", log=lambda _: None)
        assert time.monotonic() - started < FAST["ready_timeout_s"]  # failed fast, no timeout
        final = fetch(api, name)
        # A good version afterwards rolls normally.
        again = rollout(api, settings(name), "s3://models/tile/v3", log=lambda _: None)
    assert final["spec"]["transformer"]["storageUris"][0]["uri"] == "s3://models/tile/v1"
    if mode == "Knative":  # KServe's rollback: 0 % to the latest, all to the rolled-out one
        assert final["spec"]["predictor"]["canaryTrafficPercent"] == 0
        predictor = final["status"]["components"]["predictor"]
        assert predictor["latestRolledoutRevision"] == f"{name}-predictor-00001"
        assert {"revisionName": f"{name}-predictor-00001", "percent": 100,
                "latestRevision": False} in predictor["traffic"]  # fmt: skip
        served = [t["revisionName"] for traffic in kserve.traffic_seen for t in traffic]
        assert f"{name}-predictor-00002" not in served  # the broken one never got traffic
    else:
        assert final["spec"]["predictor"]["model"]["storageUri"] == "s3://models/tile/v1"
    assert again.action == "promoted"
    assert fetch(api, name)["spec"]["predictor"]["model"]["storageUri"] == "s3://models/tile/v3"


@pytest.mark.parametrize("mode", MODES)
def test_a_line_with_no_model_starts_on_the_first_deploy(kube, api, mode):
    name = f"new-{mode.lower()}"
    chart_line(api, NAMESPACE, name, mode, None)
    with FakeKServe(api, NAMESPACE, name, healthy=lambda uri: True) as kserve:
        wait_settled(kserve)
        assert fetch(api, name)["status"]["conditions"][0]["reason"] == "Stopped"
        done = rollout(api, settings(name), "s3://models/new/v1", log=lambda _: None)
    assert done.action == "started" and done.previous_storage_uri is None
    final = fetch(api, name)
    assert "serving.kserve.io/stop" not in final["metadata"]["annotations"]
    assert final["spec"]["transformer"]["storageUris"] == [
        {"mountPath": "/mnt/models", "uri": "s3://models/new/v1"}]  # fmt: skip
    assert all(only_model_and_traffic(body) for body in patches(kube, name))


def test_a_first_model_that_fails_stops_the_line_again(kube, api):
    chart_line(api, NAMESPACE, "bad-first", "Standard", None)
    with FakeKServe(api, NAMESPACE, "bad-first", healthy=lambda uri: False) as kserve:
        wait_settled(kserve)
        with pytest.raises(RolloutError, match="line stopped again"):
            rollout(api, settings("bad-first"), "s3://models/x/v1", log=lambda _: None)
    assert fetch(api, "bad-first")["metadata"]["annotations"]["serving.kserve.io/stop"] == "true"


def test_a_repeated_deploy_changes_nothing(kube, api):
    chart_line(api, NAMESPACE, "bottle", "Standard", "s3://models/bottle/v1")
    with FakeKServe(api, NAMESPACE, "bottle", healthy=lambda uri: True) as kserve:
        wait_settled(kserve)
        again = rollout(api, settings("bottle"), "s3://models/bottle/v1", log=lambda _: None)
    assert again.action == "unchanged"
    assert patches(kube, "bottle") == []


@pytest.mark.parametrize("mode", MODES)
def test_every_patch_is_model_and_traffic_only(kube, api, mode):
    """The chart owns runtime, replicas, resources, scheduling: the step never writes them."""
    name = f"own-{mode.lower()}"
    chart_line(api, NAMESPACE, name, mode, "s3://models/own/v1")
    with FakeKServe(api, NAMESPACE, name, healthy=lambda uri: "broken" not in uri) as kserve:
        wait_settled(kserve)
        rollout(api, settings(name), "s3://models/own/v2", log=lambda _: None)
        with pytest.raises(RolloutError):
            rollout(api, settings(name), "s3://models/own/broken", log=lambda _: None)
    sent = patches(kube, name)
    assert len(sent) >= 2 and all(only_model_and_traffic(body) for body in sent), sent


def test_a_missing_line_is_a_clear_error_and_nothing_is_created(kube, api):
    with pytest.raises(RolloutError, match=f"{NAMESPACE}/ghost does not exist: install the "
                       "line with the chart"):  # fmt: skip
        rollout(api, settings("ghost"), "s3://models/ghost/v1", log=lambda _: None)
    assert not [r for r in kube.requests() if r[0] == "POST" and "ghost" in json.dumps(r[2])]


def test_bad_settings_are_one_line_errors():
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['runtime'\].*chart owns"):
        KServeSettings.from_json('{"name": "w", "runtime": "anomalyops-triton"}')
    with pytest.raises(ValueError, match="name is required: the line's InferenceService"):
        KServeSettings.from_json('{"namespace": "plant"}')
    with pytest.raises(ValueError, match=r"canary_percent must be 0\.\.100, got 150"):
        KServeSettings.from_json('{"name": "w", "canary_percent": 150}')

"""Every pod the chart's InferenceServices make passes Knative 1.21's feature flags.

Knative's webhook refuses a revision whose pod spec uses a field its `config-features`
ConfigMap leaves disabled. This is a model of that check, written from knative/serving
@knative-v1.21.1: pkg/apis/config/features.go (defaultFeaturesConfig: what is on by
default), pkg/apis/serving/fieldmask.go (PodSpecMask, VolumeSourceMask: which field needs
which flag) and k8s_validation.go (a PVC mounted read-write also needs
persistent-volume-write). The pod spec Knative sees is the one KServe builds
(kserve/kserve@v0.20.0 reconcilers/knative/ksvc_reconciler.go): the component's pod
fields, plus the storage-initializer init container for `storageUris`; the predictor's
`storageUri` initializer is injected into the Pod later by KServe's webhook, unseen.
"""

from __future__ import annotations

import pytest
import yaml
from chart_values import CHART, REPO, VALUE_FILES, VALUE_SETS, values_args

# features.go defaultFeaturesConfig: the pod-spec flags enabled by default.
DEFAULT_ENABLED = {"kubernetes.podspec-volumes-emptydir"}
# fieldmask.go PodSpecMask: fields always allowed ...
ALWAYS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets",
          "enableServiceLinks", "automountServiceAccountToken"}  # fmt: skip
# ... and fields behind a flag.
FLAG_OF_FIELD = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
}
# VolumeSourceMask: volume kinds (secret, configMap, projected are always allowed).
FLAG_OF_VOLUME = {
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
}
# KServe's own component fields (v1beta1 ComponentExtensionSpec, PredictorSpec): not pod
# fields, KServe turns them into annotations, traffic or containers.
COMPONENT_FIELDS = {"minReplicas", "maxReplicas", "scaleTarget", "scaleMetric",
                    "containerConcurrency", "timeout", "canaryTrafficPercent", "logger",
                    "batcher", "labels", "annotations", "deploymentStrategy", "storageUris",
                    "model", "autoScaling"}  # fmt: skip
PLATFORM_FLAGS = {
    key for key, value in yaml.safe_load(
        (REPO / "platform" / "knative" / "config-features.yaml").read_text())["data"].items()
    if value.lower() == "enabled"
}  # fmt: skip


def knative_pod_spec(line: dict, component: str) -> dict:
    """The pod spec KServe hands Knative for one component, once the line has a model.

    A line with no model yet gets its transformer's storageUris from the first deploy
    (components/deploy/kserve.py model_patch, at the chart's mount annotation)."""
    spec = line["spec"][component]
    pod = {k: v for k, v in spec.items() if k not in COMPONENT_FIELDS}
    if component == "predictor":
        pod.setdefault("containers", [{"name": "kserve-container"}])
    mount = line["metadata"]["annotations"].get("anomalyops.io/transformer-model-mount")
    if spec.get("storageUris") or (component == "transformer" and mount):  # ksvc_reconciler.go
        pod["initContainers"] = [{"name": "storage-initializer"}]
        pod["volumes"] = [*pod.get("volumes", []), {"name": "kserve-provision-location",
                                                    "emptyDir": {}}]  # fmt: skip
    return pod


def flags_needed(pod: dict) -> set[str]:
    """Every config-features flag POD needs; a field Knative never allows fails the test."""
    needed = set()
    for field, value in pod.items():
        if field in ALWAYS or value in (None, [], {}):
            continue
        assert field in FLAG_OF_FIELD, f"Knative never allows pod field {field!r}"
        needed.add(FLAG_OF_FIELD[field])
    mounts = {m["name"]: m for c in pod["containers"] for m in c.get("volumeMounts", [])}
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"} - {"secret", "configMap", "projected"}
        for kind in kinds:
            needed.add(FLAG_OF_VOLUME[kind])
        claim = volume.get("persistentVolumeClaim")
        if claim and not (claim.get("readOnly") or mounts.get(volume["name"], {}).get("readOnly")):
            needed.add("kubernetes.podspec-persistent-volume-write")  # k8s_validation.go
    return needed - DEFAULT_ENABLED


def needs_of(objects: list[dict]) -> set[str]:
    needed = set()
    for line in (o for o in objects if o["kind"] == "InferenceService"):
        for component in ("predictor", "transformer"):
            if component in line["spec"]:
                needed |= flags_needed(knative_pod_spec(line, component))
    return needed


def knative(*flags: str) -> list[str]:
    return ["--set", "serving.deploymentMode=Knative",
            "--set", f"serving.knativeFeatures={{{','.join(sorted(flags))}}}"]  # fmt: skip


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_knative_lines_need_only_what_the_platform_enables(render, value_set):
    objects = render(value_set, *knative(*PLATFORM_FLAGS))
    needed = needs_of(objects)
    if any(o["kind"] == "InferenceService" for o in objects):
        assert "kubernetes.podspec-init-containers" in needed  # the model's real cost
    assert needed <= PLATFORM_FLAGS, f"pods need {sorted(needed - PLATFORM_FLAGS)}"


def serving_values(value_set: str) -> dict:
    path = VALUE_FILES[value_set]
    return ((yaml.safe_load(path.read_text()) if path else None) or {}).get("serving", {})


KNATIVE_SETS = [v for v in VALUE_SETS if serving_values(v).get("deploymentMode") == "Knative"]


def test_some_value_set_runs_in_knative_mode():
    assert KNATIVE_SETS  # Standard sets' pods never meet Knative's webhook


@pytest.mark.parametrize("value_set", KNATIVE_SETS)
def test_a_value_set_in_knative_mode_lists_the_flags_it_needs(render, value_set):
    listed = set(serving_values(value_set).get("knativeFeatures", []))
    assert needs_of(render(value_set)) <= listed


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_chart_refuses_a_knative_line_missing_a_flag(helm, render, value_set):
    needed = needs_of(render(value_set, *knative(*PLATFORM_FLAGS)))
    for flag in sorted(needed):
        result = helm("template", "rel", str(CHART), *values_args(value_set),
                      *knative(*(needed - {flag})))  # fmt: skip
        assert result.returncode != 0, f"rendered without {flag}"
        assert f"Knative mode needs config-features {flag}" in result.stderr


def test_the_model_sees_a_disabled_field():
    pod = {"containers": [{"name": "c"}], "nodeSelector": {"a": "b"},
           "volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "x"}}]}  # fmt: skip
    assert flags_needed(pod) == {"kubernetes.podspec-nodeselector",
                                 "kubernetes.podspec-persistent-volume-claim",
                                 "kubernetes.podspec-persistent-volume-write"}  # fmt: skip
    with pytest.raises(AssertionError, match="hostNetwork"):
        flags_needed(pod | {"hostNetwork": True})


QUEUE = "queue.sidecar.serving.knative.dev/"


def test_knative_components_size_their_queue_proxy(render):
    """Knative 1.21 reads the queue-proxy's resources from revision annotations
    (pkg/apis/serving/register.go, resources/queue.go); KServe copies a component's
    annotations onto its revision (components/predictor.go, transformer.go)."""
    from kubernetes.utils import parse_quantity

    lines = [o for o in render("gpu") if o["kind"] == "InferenceService"]
    assert lines
    for line in lines:
        for component in ("predictor", "transformer"):
            annotations = line["spec"][component]["annotations"]
            for key in ("cpu-resource-request", "memory-resource-request",
                        "cpu-resource-limit", "memory-resource-limit"):  # fmt: skip
                assert parse_quantity(annotations[QUEUE + key]) > 0, (component, key)
            request = parse_quantity(annotations[QUEUE + "memory-resource-request"])
            assert request <= parse_quantity(annotations[QUEUE + "memory-resource-limit"])
        # Large Triton images and model downloads outlast Knative's 10 min default.
        assert line["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "30m"
    resized = render("gpu", "--set", "serving.queueProxy.resources.limits.memory=1Gi")
    line = next(o for o in resized if o["kind"] == "InferenceService")
    assert line["spec"]["transformer"]["annotations"][QUEUE + "memory-resource-limit"] == "1Gi"
    # Standard mode has no queue-proxy: nothing to size.
    for line in (o for o in render("cpu") if o["kind"] == "InferenceService"):
        assert QUEUE not in str(line) and "progress-deadline" not in str(line)

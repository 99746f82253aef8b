"""Roll a production line's KServe InferenceService to a new model repository, safely.

The chart (charts/anomalyops) owns the line's InferenceService: runtime, replicas,
resources, scheduling, transformer, service account. The deploy step changes only what a
model version is: `spec.predictor.model.storageUri`, the transformer's `storageUris`
(the chart's transformer reads each version's model.json from the same repository) and,
in Knative mode, `spec.predictor.canaryTrafficPercent`. A line the chart installed before
any model existed is stopped (`serving.kserve.io/stop: "true"`, KServe's force-stop,
pkg/constants/constants.go StopAnnotationKey); the first deploy starts it. A line with no
InferenceService is an error: install it with the chart first.

What "rolled" means follows KServe v0.20.0's own status code:

- **Knative** (reconcilers/knative/ksvc_reconciler.go, inference_service_status.go
  PropagateStatus): every spec change is a new Knative revision. With
  `canaryTrafficPercent` the latest ready revision gets that share and
  `latestRolledoutRevision` the rest. Ready when `latestCreatedRevision` is new and equals
  `latestReadyRevision`; then the canary is cleared (100 % to the latest). Rollback is
  KServe's documented one: `canaryTrafficPercent: 0` sends everything back to
  `latestRolledoutRevision` at once (no new revision, no cold start); the spec keeps the
  failed URI at 0 % until the next deploy replaces it.
- **Standard** (reconcilers/deployment/deployment_reconciler.go, PropagateRawStatus):
  a Deployment `<name>-predictor` rolled by Kubernetes. `PredictorReady` stays True while
  the *old* pods are Available, and `status.observedGeneration` is the Deployment's, so
  neither says the new pods serve: the step watches the Deployment itself (a new
  generation, observed, every replica updated and available; `Progressing=False` fails
  at once). `canaryTrafficPercent` means nothing there. Rollback re-applies the previous
  URI: the Deployment scales its old ReplicaSet back up.

Either mode fails fast on `modelStatus.lastFailureInfo` while the transition is
`BlockedByFailedLoad` (PropagateModelStatus: the storage initializer or Triton failed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
STOP_ANNOTATION = "serving.kserve.io/stop"
MOUNT_ANNOTATION = "anomalyops.io/transformer-model-mount"  # the chart's, see model_patch
# KServe normalises the deprecated names (constants.go ParseDeploymentMode).
MODES = {"Knative": "Knative", "Serverless": "Knative", "Standard": "Standard",
         "RawDeployment": "Standard"}  # fmt: skip


class RolloutError(RuntimeError):
    """The new version did not serve; the message says what serves instead."""


@dataclass
class KServeSettings:
    """Which line to roll and how (the deploy step's `kserve_json`)."""

    name: str = ""  # the line's InferenceService, as the chart names it (required)
    namespace: str = "default"
    canary_percent: int = 10  # Knative: the new revision's share until ready; 0 = none
    ready_timeout_s: float = 900.0
    poll_s: float = 5.0

    @classmethod
    def from_json(cls, text: str) -> KServeSettings:
        """Parse the JSON object; an unknown key or a bad value is a one-line error."""
        values = json.loads(text or "{}")
        if not isinstance(values, dict):
            raise ValueError(f"kserve settings: expected a JSON object, got {text!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"kserve settings: unknown field(s) {unknown}; known: {sorted(known)} (the "
                "chart owns runtime, replicas, resources and scheduling)"
            )
        settings = cls(**values)
        if not settings.name:
            raise ValueError(
                "kserve settings: name is required: the line's InferenceService as the chart "
                "names it (`kubectl get inferenceservices -n NAMESPACE`)"
            )
        if not 0 <= settings.canary_percent <= 100:
            raise ValueError(
                f"kserve settings: canary_percent must be 0..100, got {settings.canary_percent}"
            )
        return settings


@dataclass
class Rollout:
    action: str  # "started", "promoted" or "unchanged"
    mode: str  # "Knative" or "Standard"
    namespace: str
    name: str
    storage_uri: str
    previous_storage_uri: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def custom_objects_api(api_client=None):
    """CustomObjectsApi from in-cluster credentials, else $KUBECONFIG or ~/.kube/config.

    It reads Deployments too (group apps): one generic client, one RBAC rule each."""
    import os

    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            # The client reads $KUBECONFIG once, at import; read it at call time instead.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.CustomObjectsApi(api_client)


def deployment_mode(obj: dict) -> str:
    """Knative or Standard: KServe's status, else the chart's annotation."""
    where = f"InferenceService {obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
    raw = obj.get("status", {}).get("deploymentMode") or obj["metadata"].get("annotations", {}).get(
        MODE_ANNOTATION
    )
    if raw not in MODES:
        raise RolloutError(f"{where}: unknown deployment mode {raw!r} (annotation "
                           f"{MODE_ANNOTATION} or status.deploymentMode)")  # fmt: skip
    return MODES[raw]


def model_patch(current: dict, storage_uri: str) -> dict:
    """The merge patch that moves CURRENT's predictor and transformer to STORAGE_URI.

    The transformer's mounts are kept as the chart wrote them; a line with no model yet
    has none, and the chart names the mount path in MOUNT_ANNOTATION instead."""
    spec: dict = {"predictor": {"model": {"storageUri": storage_uri}}}
    mounts = (current["spec"].get("transformer") or {}).get("storageUris")
    mount_path = current["metadata"].get("annotations", {}).get(MOUNT_ANNOTATION)
    if not mounts and mount_path and "transformer" in current["spec"]:
        mounts = [{"mountPath": mount_path}]
    if mounts:
        spec["transformer"] = {"storageUris": [m | {"uri": storage_uri} for m in mounts]}
    return {"spec": spec}


class _Line:
    """One InferenceService and the reads a rollout needs."""

    def __init__(self, api, settings: KServeSettings):
        self.api, self.settings = api, settings
        self.name, self.namespace = settings.name, settings.namespace
        self.where = f"InferenceService {self.namespace}/{self.name}"

    def get(self) -> dict:
        return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                     self.name)  # fmt: skip

    def patch(self, body: dict) -> None:
        self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL,
                                                self.name, body)  # fmt: skip

    def deployment(self, component: str) -> dict | None:
        """Standard mode's `<name>-<component>` Deployment (constants.PredictorServiceName)."""
        from kubernetes.client import ApiException

        try:
            return self.api.get_namespaced_custom_object(
                "apps", "v1", self.namespace, "deployments", f"{self.name}-{component}"
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def wait(self, check: Callable[[], str | None], what: str) -> None:
        """Poll CHECK ("ok", a failure message, or None = not yet) until ok; raise else."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while True:
            outcome = check()
            if outcome == "ok":
                return
            if outcome is not None:
                raise _Failed(outcome)
            if time.monotonic() >= deadline:
                raise _Failed(f"{what} not done after {self.settings.ready_timeout_s:.0f} s")
            time.sleep(self.settings.poll_s)


class _Failed(Exception):
    """Why a rollout stage failed (internal: turned into a RolloutError after cleanup)."""


def rollout(api, settings: KServeSettings, storage_uri: str,
            log: Callable[[str], None] = print) -> Rollout:  # fmt: skip
    """Roll the line to STORAGE_URI and wait until it serves; RolloutError after a rollback."""
    from kubernetes.client import ApiException

    line = _Line(api, settings)
    try:
        current = line.get()
    except ApiException as error:
        if error.status != 404:
            raise
        raise RolloutError(
            f"{line.where} does not exist: install the line with the chart "
            "(charts/anomalyops, `lines:`); the deploy step only moves its model"
        ) from None
    mode = deployment_mode(current)
    spec = current["spec"]
    previous_uri = spec["predictor"].get("model", {}).get("storageUri")
    stopped = current["metadata"].get("annotations", {}).get(STOP_ANNOTATION) == "true"
    result = Rollout("promoted", mode, line.namespace, line.name, storage_uri, previous_uri)
    if previous_uri == storage_uri and not stopped and not _pinned_back(spec):
        line.wait(lambda: _serving(line, mode), f"{line.where} on {storage_uri}")
        result.action = "unchanged"
        return result

    patch = model_patch(current, storage_uri)
    # The components whose pod template the patch changes: each must roll.
    before = {c: _generation_marker(line, current, mode, c) for c in patch["spec"]}
    done = _rolled(line, mode, before)
    canary = settings.canary_percent if 0 < settings.canary_percent < 100 else None
    if mode == "Knative":
        patch["spec"]["predictor"]["canaryTrafficPercent"] = None if stopped else canary
    if stopped:
        patch["metadata"] = {"annotations": {STOP_ANNOTATION: None}}
        result.action = "started"
    shown = f", canary {canary} %" if mode == "Knative" and canary and not stopped else ""
    log(f"{line.where} ({mode}): {'stopped' if stopped else previous_uri} -> {storage_uri}{shown}")
    line.patch(patch)
    try:
        line.wait(done, f"{line.where}: rollout of {storage_uri}")
    except _Failed as failure:
        raise RolloutError(_roll_back(line, mode, current, stopped, storage_uri, str(failure),
                                      log)) from None  # fmt: skip
    if mode == "Knative" and canary and not stopped:
        log(f"{line.where}: new revision ready on {canary} %; promoting to 100 %")
        line.patch({"spec": {"predictor": {"canaryTrafficPercent": None}}})
        try:
            line.wait(lambda: _all_traffic_on_latest(line.get()), "promotion to 100 %")
        except _Failed as failure:
            raise RolloutError(f"{line.where}: {failure}") from None
    return result


def _roll_back(line: _Line, mode: str, before: dict, stopped: bool, uri: str, why: str,
               log: Callable[[str], None]) -> str:  # fmt: skip
    """Undo a failed rollout; returns the error message saying what serves now."""
    log(f"{line.where}: {why}; rolling back")
    if stopped:  # nothing served before: stop the line again
        line.patch({"metadata": {"annotations": {STOP_ANNOTATION: "true"}}})
        return f"{line.where}: {uri} did not serve ({why}); line stopped again (no model before)"
    previous_uri = before["spec"]["predictor"]["model"]["storageUri"]
    patch = model_patch(before, previous_uri)
    if mode == "Knative":  # KServe's documented rollback: 0 % to the latest revision
        patch["spec"]["predictor"] = {"canaryTrafficPercent": 0}
        previous = _component(before, "predictor").get("latestRolledoutRevision")
        check = lambda: "ok" if _all_traffic_on(line.get(), previous) else None  # noqa: E731
        back = (f"all traffic back on revision {previous}, the last rolled out; the spec "
                f"keeps {uri} at canaryTrafficPercent 0 until the next deploy")  # fmt: skip
    else:
        check, back = (lambda: _serving(line, mode)), f"rolled back to {previous_uri}"
    line.patch(patch)
    try:
        line.wait(check, "rollback")
    except _Failed as failure:
        return f"{line.where}: {uri} did not serve ({why}); rollback not confirmed ({failure})"
    return f"{line.where}: {uri} did not serve ({why}); {back}"


def _component(obj: dict, component: str) -> dict:
    return obj.get("status", {}).get("components", {}).get(component, {})


def _condition(obj: dict, kind: str) -> dict:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def _pinned_back(spec: dict) -> bool:
    """A Knative rollback left the latest revision at 0 %: a redeploy must roll again."""
    return spec["predictor"].get("canaryTrafficPercent") == 0


def _generation_marker(line: _Line, obj: dict, mode: str, component: str):
    """What changes when KServe has reconciled a patch: a revision name or a generation."""
    if mode == "Knative":
        return _component(obj, component).get("latestCreatedRevision")
    deployment = line.deployment(component)
    return deployment["metadata"].get("generation") if deployment else None


def _load_failure(obj: dict) -> str | None:
    status = obj.get("status", {}).get("modelStatus", {})
    info = status.get("lastFailureInfo")
    if info and status.get("transitionStatus") == "BlockedByFailedLoad":
        return f"model failed to load: {info.get('reason')}: {info.get('message', '')}".strip()
    return None


def _rolled(line: _Line, mode: str, before: dict) -> Callable[[], str | None]:
    """A check: every component runs the patched spec ("ok"), or why it cannot."""

    def check() -> str | None:
        obj = line.get()
        for component, marker in before.items():
            if mode == "Knative":
                outcome = _knative_rolled(obj, component, marker)
            else:
                outcome = _deployment_rolled(line.deployment(component), marker, obj)
            if outcome != "ok":
                return None if outcome is None else f"{component}: {outcome}"
        return "ok"

    return check


def _knative_rolled(obj: dict, component: str, before: str | None) -> str | None:
    status = _component(obj, component)
    created = status.get("latestCreatedRevision")
    if created in (None, before):
        return None  # KServe has not reconciled the patch yet: the status is the old one
    if status.get("latestReadyRevision") == created:
        return "ok"
    ready = _condition(obj, f"{component.capitalize()}Ready")
    if ready.get("status") == "False" and ready.get("reason") in ("RevisionFailed",
                                                                  "RevisionMissing"):  # fmt: skip
        return f"revision {created}: {ready.get('reason')}: {ready.get('message', '')}"
    # modelStatus describes the latest created revision's pods (PropagateModelStatus).
    return _load_failure(obj) if component == "predictor" else None


def _deployment_rolled(deployment: dict | None, before_generation: int | None,
                       obj: dict | None = None) -> str | None:  # fmt: skip
    """kubectl rollout status, on the Deployment KServe wrote (a new generation only)."""
    if deployment is None or deployment["metadata"].get("generation") == before_generation:
        return None
    status = deployment.get("status", {})
    for condition in status.get("conditions", []):
        if condition["type"] == "Progressing" and condition["status"] == "False":
            return f"{condition.get('reason')}: {condition.get('message', '')}"
    if obj is not None and (failed := _load_failure(obj)):
        return failed
    if status.get("observedGeneration", 0) < deployment["metadata"]["generation"]:
        return None
    want = deployment["spec"].get("replicas", 1)
    counts = [status.get(k, 0) for k in ("updatedReplicas", "replicas", "availableReplicas")]
    return "ok" if counts == [want, want, want] else None


def _serving(line: _Line, mode: str) -> str | None:
    obj = line.get()
    components = [c for c in ("predictor", "transformer") if c in obj["spec"]]
    if mode == "Standard" and any(
        _deployment_rolled(line.deployment(c), None) != "ok" for c in components
    ):
        return None
    return "ok" if _condition(obj, "Ready").get("status") == "True" else None


def _all_traffic_on(obj: dict, revision: str | None) -> bool:
    traffic = _component(obj, "predictor").get("traffic") or []
    return revision is not None and any(
        t.get("revisionName") == revision and t.get("percent") == 100 for t in traffic
    )


def _all_traffic_on_latest(obj: dict) -> str | None:
    status = _component(obj, "predictor")
    ready = _condition(obj, "Ready").get("status") == "True"
    return "ok" if ready and _all_traffic_on(obj, status.get("latestReadyRevision")) else None

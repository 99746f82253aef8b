"""Roll a production line's KServe InferenceService to a new model repository, safely.

The deploy step's cluster target. A line's InferenceService (Triton runtime) serves the
model repository at its `storageUri`; a new champion is a new, immutable storage prefix.
The rollout, through the Kubernetes API:

1. no InferenceService yet: create it and wait until it is Ready;
2. one serving another `storageUri`: patch the new one in with `canaryTrafficPercent`
   (KServe sends that share to the new revision, the rest to the previous one), wait
   until the new revision is the latest *ready* one, then promote it by removing the
   canary percent (100 % to the latest revision);
3. the new revision is not ready in time: roll back, i.e. restore the previous predictor
   spec (KServe routes everything to a revision of it), and fail with the reason.

The line's transformer (the chart's) reads each version's model.json and reference.json
from the same repository, so its `storageUris` follow the predictor's `storageUri` in the
same patch, and back on a rollback. Canary rollout and revisions are KServe's Serverless
mode (Knative). Objects are built
with the `kserve` SDK's model classes and sent as JSON merge patches.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class RolloutError(RuntimeError):
    """The new revision did not serve; the message says what was rolled back to."""


@dataclass
class KServeSettings:
    """Where and how a line's InferenceService runs (the deploy step's `kserve_json`)."""

    namespace: str = "default"
    name: str = ""  # InferenceService name; the variant when empty (one per line)
    runtime: str = "anomalyops-triton"  # the chart's Triton ServingRuntime
    model_format: str = "triton"
    service_account: str = ""  # gives the storage initializer the bucket's credentials
    canary_percent: int = 10  # share for the new revision until it is ready; 0 = none
    ready_timeout_s: float = 600.0
    poll_s: float = 5.0
    min_replicas: int = 1
    max_replicas: int = 1
    resources: dict = field(default_factory=dict)  # {"requests": {...}, "limits": {...}}
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)  # Kubernetes toleration dicts

    @classmethod
    def from_json(cls, text: str) -> KServeSettings:
        """Parse the JSON object; an unknown key or a bad canary share is a one-line error."""
        values = json.loads(text or "{}")
        if not isinstance(values, dict):
            raise ValueError(f"kserve settings: expected a JSON object, got {text!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"kserve settings: unknown field(s) {unknown}; known: {sorted(known)}")
        settings = cls(**values)
        if not 0 <= settings.canary_percent <= 100:
            raise ValueError(
                f"kserve settings: canary_percent must be 0..100, got {settings.canary_percent}"
            )
        return settings


@dataclass
class Rollout:
    action: str  # "created", "promoted" or "unchanged"
    namespace: str
    name: str
    storage_uri: str
    previous_storage_uri: str | None
    revision: str | None  # the predictor revision now serving, where KServe reports one

    def to_dict(self) -> dict:
        return asdict(self)


def inference_service(settings: KServeSettings, name: str, storage_uri: str) -> dict:
    """The InferenceService for NAME serving STORAGE_URI, as the JSON the API takes."""
    from kserve import (
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )
    from kubernetes.client import ApiClient, V1ObjectMeta, V1ResourceRequirements

    model = V1beta1ModelSpec(
        name="kserve-container",
        model_format=V1beta1ModelFormat(name=settings.model_format),
        runtime=settings.runtime,
        protocol_version="v2",
        storage_uri=storage_uri,
        resources=V1ResourceRequirements(**settings.resources) if settings.resources else None,
    )
    predictor = V1beta1PredictorSpec(
        model=model,
        min_replicas=settings.min_replicas,
        max_replicas=settings.max_replicas,
        node_selector=settings.node_selector or None,
        tolerations=settings.tolerations or None,
        service_account_name=settings.service_account or None,
    )
    service = V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=name,
            namespace=settings.namespace,
            labels={"app.kubernetes.io/part-of": "anomalyops", "anomalyops.io/line": name},
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )
    return ApiClient().sanitize_for_serialization(service)


def custom_objects_api(api_client=None):
    """CustomObjectsApi from in-cluster credentials, else $KUBECONFIG or ~/.kube/config."""
    import os

    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            # The client reads $KUBECONFIG once, at import; read it at call time instead.
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.CustomObjectsApi(api_client)


def rollout(
    api,
    settings: KServeSettings,
    name: str,
    storage_uri: str,
    log: Callable[[str], None] = print,
) -> Rollout:
    """Create or canary-roll NAME to STORAGE_URI; raises RolloutError after a rollback."""
    from kubernetes.client import ApiException

    where = f"InferenceService {settings.namespace}/{name}"
    target = (GROUP, VERSION, settings.namespace, PLURAL)
    desired = inference_service(settings, name, storage_uri)
    try:
        current = api.get_namespaced_custom_object(*target, name)
    except ApiException as error:
        if error.status != 404:
            raise
        current = None

    if current is None:
        log(f"{where}: creating with {storage_uri}")
        api.create_namespaced_custom_object(*target, desired)
        served = _wait(api, target, name, settings, lambda obj: _new_revision_ready(obj, None))
        if served is None:
            raise RolloutError(
                f"{where}: created but not Ready after {settings.ready_timeout_s:.0f} s "
                "(nothing served before; see `kubectl describe inferenceservice`)"
            )
        return Rollout("created", settings.namespace, name, storage_uri, None, _revision(served))

    previous_spec = current["spec"]["predictor"]
    previous_uri = previous_spec.get("model", {}).get("storageUri")
    if previous_uri == storage_uri:  # a repeated deploy: nothing to roll
        served = _wait(api, target, name, settings, _is_ready)
        if served is None:
            raise RolloutError(f"{where}: already on {storage_uri} but not Ready after "
                               f"{settings.ready_timeout_s:.0f} s")  # fmt: skip
        return Rollout("unchanged", settings.namespace, name, storage_uri, previous_uri,
                       _revision(served))  # fmt: skip
    before = _predictor_status(current).get("latestCreatedRevision")
    predictor = desired["spec"]["predictor"]
    canary = settings.canary_percent if 0 < settings.canary_percent < 100 else None
    log(f"{where}: {previous_uri} -> {storage_uri}" + (f", canary {canary} %" if canary else ""))
    spec = {"predictor": predictor | {"canaryTrafficPercent": canary}}
    transformer = current["spec"].get("transformer") or {}
    if transformer.get("storageUris"):
        spec["transformer"] = {
            "storageUris": [entry | {"uri": storage_uri} for entry in transformer["storageUris"]]
        }
    api.patch_namespaced_custom_object(*target, name, {"spec": spec})
    served = _wait(api, target, name, settings, lambda obj: _new_revision_ready(obj, before))
    if served is None:
        restore = {
            "predictor": _restoring(previous_spec, predictor) | {"canaryTrafficPercent": None}
        }
        if "transformer" in spec:
            restore["transformer"] = {"storageUris": transformer["storageUris"]}
        api.patch_namespaced_custom_object(*target, name, {"spec": restore})
        back = _wait(api, target, name, settings, _is_ready)
        raise RolloutError(
            f"{where}: new revision for {storage_uri} not ready after "
            f"{settings.ready_timeout_s:.0f} s; rolled back to {previous_uri}"
            + ("" if back else " (which is not Ready either)")
        )
    revision = _revision(served)
    if canary:
        log(f"{where}: revision {revision} ready on {canary} %; promoting to 100 %")
        api.patch_namespaced_custom_object(
            *target, name, {"spec": {"predictor": {"canaryTrafficPercent": None}}}
        )
        if _wait(api, target, name, settings, lambda obj: _serves_all(obj, revision)) is None:
            raise RolloutError(
                f"{where}: revision {revision} is ready but did not get 100 % of the traffic "
                f"within {settings.ready_timeout_s:.0f} s"
            )
    return Rollout("promoted", settings.namespace, name, storage_uri, previous_uri, revision)


def _predictor_status(obj: dict) -> dict:
    return obj.get("status", {}).get("components", {}).get("predictor", {})


def _revision(obj: dict) -> str | None:
    return _predictor_status(obj).get("latestReadyRevision")


def _is_ready(obj: dict) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _new_revision_ready(obj: dict, before: str | None) -> bool:
    """A predictor revision other than BEFORE exists, is the latest ready one, and Ready."""
    status = _predictor_status(obj)
    created = status.get("latestCreatedRevision")
    if before is not None and created in (None, before):
        return False  # KServe has not reconciled the patch yet: the status is the old one
    if created is not None and status.get("latestReadyRevision") != created:
        return False
    return _is_ready(obj)


def _serves_all(obj: dict, revision: str | None) -> bool:
    traffic = _predictor_status(obj).get("traffic")
    if traffic is None or revision is None:  # no Knative traffic status: Ready is all we know
        return _is_ready(obj)
    full = any(t.get("revisionName") == revision and t.get("percent") == 100 for t in traffic)
    return full and _is_ready(obj)


def _restoring(previous: dict, applied: dict) -> dict:
    """A merge patch taking APPLIED back to PREVIOUS: keys only APPLIED has become None."""
    patch: dict[str, Any] = {}
    for key, value in applied.items():
        if key not in previous:
            patch[key] = None
        elif isinstance(value, dict) and isinstance(previous[key], dict):
            patch[key] = _restoring(previous[key], value)
    for key, value in previous.items():
        if not (isinstance(value, dict) and isinstance(applied.get(key), dict)):
            patch[key] = value
    return patch


def _wait(
    api, target: tuple, name: str, settings: KServeSettings, done: Callable[[dict], bool]
) -> dict | None:
    """Poll until DONE(object) holds and return the object, or None after the timeout."""
    deadline = time.monotonic() + settings.ready_timeout_s
    while True:
        obj = api.get_namespaced_custom_object(*target, name)
        if done(obj):
            return obj
        if time.monotonic() >= deadline:
            return None
        time.sleep(settings.poll_s)

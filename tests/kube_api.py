"""An in-memory Kubernetes API server on 127.0.0.1 (kmock) for the real `kubernetes` client
and the real helm; FakeKServe, a model of KServe 0.20's controller written from its source.

No real API server can run here. kmock's KubernetesEmulator stores objects and answers
create, get, list, merge-patch and delete like one; it runs on its own asyncio loop in a
thread, so synchronous code under test (the `kubernetes` client) can talk to it over HTTP.
`serve_discovery()` adds what helm needs to render with `lookup` (`--dry-run=server`): a
Kubernetes 1.32 /version and discovery for the chart's kinds (kmock 0.8 answers /version
with 1.26 and writes the core group as "/v1", which helm cannot map).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import kmock
from kubernetes import client

ISVC = ("serving.kserve.io", "v1beta1")
PLURAL = "inferenceservices"
# The chart's kinds: (group/version, plural, kind).
CHART_KINDS = [
    ("v1", "services", "Service"), ("v1", "serviceaccounts", "ServiceAccount"),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim"), ("v1", "pods", "Pod"),
    ("v1", "secrets", "Secret"), ("v1", "configmaps", "ConfigMap"),
    ("apps/v1", "deployments", "Deployment"), ("batch/v1", "cronjobs", "CronJob"),
    ("networking.k8s.io/v1", "ingresses", "Ingress"),
    ("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    ("policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ("rbac.authorization.k8s.io/v1", "roles", "Role"),
    ("rbac.authorization.k8s.io/v1", "rolebindings", "RoleBinding"),
    ("serving.kserve.io/v1beta1", "inferenceservices", "InferenceService"),
    ("serving.kserve.io/v1alpha1", "servingruntimes", "ServingRuntime"),
]  # fmt: skip


class KubeApi:
    """`with KubeApi() as kube:` serves until the block ends; `kube.api_client()` talks to it."""

    def __init__(self) -> None:
        self.url = ""
        self.handler: kmock.KubernetesEmulator | None = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
            self.handler, self.url = handler, str(server.url).rstrip("/")
            self._stop = asyncio.Event()
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> KubeApi:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("kmock server did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def serve_discovery(self, kubernetes_version: str = "1.32") -> None:
        """Answer /version and discovery as a Kubernetes cluster with the chart's kinds."""
        major, minor = kubernetes_version.split(".")
        self.handler["get /version"] << {
            "major": major, "minor": minor, "gitVersion": f"v{kubernetes_version}.0"
        }  # fmt: skip
        core = []
        for group_version, plural, kind in CHART_KINDS:
            verbs = {"get", "list", "create", "patch", "delete"}
            info = kmock.ResourceInfo(kind=kind, namespaced=True, verbs=verbs)
            if group_version == "v1":
                core.append({"name": plural, "kind": kind, "namespaced": True,
                             "singularName": kind.lower(), "verbs": sorted(verbs)})  # fmt: skip
            else:
                self.handler.resources[f"{group_version}/{plural}"] = info
        self.handler["get /api/v1"] << {
            "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": core
        }  # fmt: skip

    def kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig file for this server (helm and the deploy step read it)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test"}}],
            "contexts": [{"name": "test", "context": {"cluster": "kmock", "user": "test",
                                                      "namespace": namespace}}],
        }))  # fmt: skip
        return path

    def requests(self) -> list[tuple[str, str, object]]:
        """(method, path, JSON body) of every request served so far, in order."""
        return [(r.method.value, r.url.path, r.data) for r in self.handler]


def chart_line_object(namespace: str, name: str, mode: str, uri: str | None) -> dict:
    """NAME as charts/anomalyops renders a line (no model yet: stopped)."""
    annotations = {"serving.kserve.io/deploymentMode": mode,
                   "anomalyops.io/transformer-model-mount": "/mnt/models"}  # fmt: skip
    model = {"modelFormat": {"name": "triton", "version": "2"}, "protocolVersion": "v2",
             "runtime": "rel-anomalyops-triton"}  # fmt: skip
    transformer = {"minReplicas": 1, "maxReplicas": 1,
                   "containers": [{"name": "kserve-container", "image": "t:1"}]}  # fmt: skip
    if uri:
        model["storageUri"] = uri
        transformer["storageUris"] = [{"uri": uri, "mountPath": "/mnt/models"}]
    else:
        annotations["serving.kserve.io/stop"] = "true"
    return {
        "apiVersion": "/".join(ISVC), "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {"predictor": {"minReplicas": 1, "maxReplicas": 1, "model": model},
                 "transformer": transformer},
    }  # fmt: skip


def chart_line(api, namespace: str, name: str, mode: str, uri: str | None) -> None:
    """Create the line as the chart does (`helm install`)."""
    obj = chart_line_object(namespace, name, mode, uri)
    api.create_namespaced_custom_object(*ISVC, namespace, PLURAL, obj)


# --- FakeKServe: what KServe v0.20.0's controller does to one InferenceService ----------
# Each rule cites the file of kserve/kserve@v0.20.0 (or knative/serving@knative-v1.21.1)
# it follows; what is not listed (ingress, autoscaling, pods) is not modelled.
SOURCE_URI = "internal.serving.kserve.io/storage-initializer-sourceuri"  # constants.go
COMPONENTS = ("predictor", "transformer")
READY = {"predictor": "PredictorReady", "transformer": "TransformerReady"}


class FakeKServe(threading.Thread):
    """KServe's reconcile loop for NAME, in both deployment modes, for predictor and transformer.

    HEALTHY(uri) says whether Triton loads a storageUri (the transformer always starts).
    A spec change is seen, then after DELAY the new pods are up or have failed: meanwhile
    the status is what KServe reports during a rollout, the old pods still serving.

    Knative (reconcilers/knative/ksvc_reconciler.go createKnativeService; knative route
    semantics): a new pod template is a new revision `<name>-<component>-0000N`. Traffic:
    with canaryTrafficPercent and a latestRolledoutRevision, `latest` gets that share and
    the rolled-out revision the rest (0 % included), else `latest` gets 100 %; `latest`
    resolves to the latest *ready* revision. latestRolledoutRevision moves when the
    latest ready revision holds 100 % (inference_service_status.go PropagateStatus).
    A failed revision: `<Component>Ready` False, reason RevisionFailed, and modelStatus
    FailedToLoad with lastFailureInfo (PropagateModelStatus reads the latest created
    revision's pods).

    Standard (reconcilers/deployment/deployment_reconciler.go, PropagateRawStatus): a
    Deployment `<name>-<component>` whose pod template carries the predictor's storageUri
    annotation; a change is a new generation rolled with maxSurge 25 % / maxUnavailable 25 %
    (one extra pod). `<Component>Ready` stays True while the old pods are Available;
    a rollout that never gets ready ends with Progressing=False ProgressDeadlineExceeded
    and `<Component>Ready` False. status.observedGeneration is the Deployment's.

    `serving.kserve.io/stop: "true"` (predictor.go, GetForceStopRuntime) deletes the
    workloads and sets PredictorReady False, reason Stopped.
    """

    def __init__(
        self, api, namespace: str, name: str, healthy: Callable[[str], bool], delay: float = 0.2
    ):
        super().__init__(daemon=True)
        self.api, self.namespace, self.name = api, namespace, name
        self.healthy, self.delay = healthy, delay
        self.revisions: dict[str, list[tuple[str, str, str]]] = {c: [] for c in COMPONENTS}
        self.status: dict = {}
        self.traffic_seen: list[list[dict]] = []
        self.generations: dict[str, int] = {}
        self.seen: str | None = None
        self.settled: list[float] = []  # when each change settled (new pods up or failed)
        self.rounds = 0  # changes fully reconciled
        self.during_rollout: list[dict] = []  # conditions reported before it settled
        self.stopping = threading.Event()

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> None:
        from kubernetes.client import ApiException

        while not self.stopping.wait(0.02):
            try:
                obj = self.api.get_namespaced_custom_object(*ISVC, self.namespace, PLURAL,
                                                            self.name)  # fmt: skip
            except ApiException:
                continue
            key = json.dumps([obj["metadata"].get("annotations", {}), obj["spec"]],
                             sort_keys=True)  # fmt: skip
            if key != self.seen:
                self.seen = key
                self.reconcile(obj, settled=False)
                self.during_rollout += self.status["conditions"]
                self.stopping.wait(self.delay)
                self.settled.append(time.monotonic())  # before anything says so
                self.reconcile(obj, settled=True)
                self.rounds += 1

    def reconcile(self, obj: dict, settled: bool) -> None:
        annotations = obj["metadata"].get("annotations", {})
        mode = {"Serverless": "Knative", "RawDeployment": "Standard"}.get(
            annotations.get("serving.kserve.io/deploymentMode", "Standard"),
            annotations.get("serving.kserve.io/deploymentMode", "Standard"),
        )  # constants.go ParseDeploymentMode; DefaultDeployment is Standard
        status: dict = {"deploymentMode": mode, "conditions": [], "components": {}}
        if annotations.get("serving.kserve.io/stop") == "true":
            self.stop_workloads(mode)
            status["conditions"] = [
                {"type": "PredictorReady", "status": "False", "reason": "Stopped"},
                {"type": "Ready", "status": "False", "reason": "Stopped"},
            ]
        else:
            for component in COMPONENTS:
                if component in obj["spec"]:
                    spec = obj["spec"][component]
                    if mode == "Knative":
                        self.knative(component, spec, settled, status)
                    else:
                        self.standard(component, spec, settled, status)
            ready = all(c["status"] == "True" for c in status["conditions"])
            status["conditions"].append({"type": "Ready", "status": str(ready)})
        if "modelStatus" in self.status and "modelStatus" not in status:
            status["modelStatus"] = self.status["modelStatus"]  # lastFailureInfo stays
        self.status = status
        self.api.patch_namespaced_custom_object_status(*ISVC, self.namespace, PLURAL,
                                                       self.name, {"status": status})  # fmt: skip

    # -- Knative -----------------------------------------------------------------------
    def knative(self, component: str, spec: dict, settled: bool, status: dict) -> None:
        uri = _uri(component, spec)
        revisions = self.revisions[component]
        template = json.dumps({k: v for k, v in spec.items() if k != "canaryTrafficPercent"},
                              sort_keys=True)  # fmt: skip
        if not revisions or revisions[-1][1] != template:
            name = f"{self.name}-{component}-{len(revisions) + 1:05d}"
            revisions.append((name, template, "pending"))
        latest, _, state = revisions[-1]
        if settled and state == "pending":
            ok = component == "transformer" or self.healthy(uri)
            state = "ready" if ok else "failed"
            revisions[-1] = (latest, template, state)
        failed = state == "failed"
        ready = [r for r, _, s in revisions if s == "ready"]
        previous = self.status.get("components", {}).get(component, {})
        rolled_out = previous.get("latestRolledoutRevision", "")
        canary = spec.get("canaryTrafficPercent")
        targets = []  # ksvc_reconciler.go: the Knative Service's spec.traffic
        if canary is not None and rolled_out:
            targets.append({"latestRevision": True, "percent": canary})
            if canary < 100:
                targets.append({"revisionName": rolled_out, "latestRevision": False,
                                "percent": 100 - canary, "tag": "prev"})  # fmt: skip
        else:
            targets.append({"latestRevision": True, "percent": 100})
        traffic = []  # the route's status: `latest` is the latest ready revision
        for target in targets if ready else []:
            revision = ready[-1] if target["latestRevision"] else target["revisionName"]
            traffic.append({"revisionName": revision, "percent": target["percent"],
                            "latestRevision": target["latestRevision"]})  # fmt: skip
        for t in traffic:  # PropagateStatus: the rolled-out revision holds 100 %
            if t["latestRevision"] and t["percent"] == 100 and t["revisionName"] != rolled_out:
                rolled_out = t["revisionName"]
        if component == "predictor":
            self.traffic_seen.append(traffic)
        status["components"][component] = {
            "latestCreatedRevision": latest,
            "latestReadyRevision": ready[-1] if ready else None,
            "latestRolledoutRevision": rolled_out or None,
            "traffic": traffic,
        }
        condition = {"type": READY[component], "status": "True" if latest in ready else
                     ("False" if failed else "Unknown")}  # fmt: skip
        if failed:
            condition |= {"reason": "RevisionFailed", "message": f"{latest} failed to start"}
            if component == "predictor":
                status["modelStatus"] = {
                    "transitionStatus": "BlockedByFailedLoad",
                    "lastFailureInfo": {"reason": "ModelLoadFailed",
                                        "message": f"Triton cannot load {uri}"},
                }  # fmt: skip
        elif component == "predictor":  # Loaded -> UpToDate, Pending -> InProgress
            progress = "UpToDate" if latest in ready else "InProgress"
            status["modelStatus"] = {"transitionStatus": progress} | {
                k: v
                for k, v in self.status.get("modelStatus", {}).items()
                if k == "lastFailureInfo"
            }  # fmt: skip  (UpdateModelRevisionStates(Loaded) keeps lastFailureInfo)
        status["conditions"].append(condition)

    # -- Standard ----------------------------------------------------------------------
    def standard(self, component: str, spec: dict, settled: bool, status: dict) -> None:
        uri = _uri(component, spec)
        name = f"{self.name}-{component}"
        template = {
            "metadata": {"annotations": {SOURCE_URI: uri} if uri else {}},
            "spec": {"containers": [{"name": "kserve-container", "image": "x"}]},
        }
        replicas = spec.get("minReplicas", 1)
        current = self.deployment(name)
        generation = (current or {}).get("metadata", {}).get("generation", 0)
        changed = current is None or current["spec"]["template"] != template
        if changed:
            generation += 1
        old_available = (current or {}).get("status", {}).get("availableReplicas", 0)
        if not settled:
            counts = {"replicas": old_available + (1 if changed else 0), "updatedReplicas":
                      0 if changed else replicas, "availableReplicas": old_available}  # fmt: skip
            conditions = [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]
        elif component == "transformer" or self.healthy(uri):
            counts = dict.fromkeys(("replicas", "updatedReplicas", "availableReplicas"), replicas)
            conditions = [{"type": "Progressing", "status": "True",
                           "reason": "NewReplicaSetAvailable"}]  # fmt: skip
        else:
            counts = {"replicas": old_available + 1, "updatedReplicas": 1,
                      "availableReplicas": old_available}  # fmt: skip
            conditions = [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{name}-x" has timed out progressing.',
                }
            ]
        available = counts["availableReplicas"] > 0
        conditions.append({"type": "Available", "status": str(available)})
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace, "generation": generation},
            "spec": {"replicas": replicas, "template": template,
                     "selector": {"matchLabels": {"app": f"isvc.{name}"}}},
            "status": {"observedGeneration": generation, "conditions": conditions} | counts,
        }  # fmt: skip
        if current is None:
            self.api.create_namespaced_custom_object("apps", "v1", self.namespace,
                                                     "deployments", body)  # fmt: skip
        else:
            self.api.patch_namespaced_custom_object("apps", "v1", self.namespace,
                                                    "deployments", name, body)  # fmt: skip
        # PropagateRawStatus: Available wins unless Progressing is False with a message.
        stuck = conditions[0]["status"] == "False"
        ready = {"type": READY[component], "status": str(available and not stuck)}
        if stuck:
            ready |= {"reason": conditions[0]["reason"], "message": conditions[0]["message"]}
        status["conditions"].append(ready)
        status["components"][component] = {}
        status["observedGeneration"] = generation

    def deployment(self, name: str) -> dict | None:
        from kubernetes.client import ApiException

        try:
            return self.api.get_namespaced_custom_object("apps", "v1", self.namespace,
                                                         "deployments", name)  # fmt: skip
        except ApiException:
            return None

    def stop_workloads(self, mode: str) -> None:
        for component in COMPONENTS:
            self.revisions[component] = []  # the Knative Service is deleted with its revisions
            name = f"{self.name}-{component}"
            if mode == "Standard" and self.deployment(name):
                self.api.delete_namespaced_custom_object("apps", "v1", self.namespace,
                                                         "deployments", name)  # fmt: skip

    def __enter__(self) -> FakeKServe:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join(5)


def _uri(component: str, spec: dict) -> str:
    if component == "predictor":
        return spec.get("model", {}).get("storageUri", "")
    return (spec.get("storageUris") or [{}])[0].get("uri", "")

"""How the pipeline's steps run on a cluster: image, resources, GPUs, bucket credentials.

These are compile-time (and submit-time) settings, not pipeline parameters: they shape
the pods, which KFP fixes when it compiles. Locally (`kfp.local`) they are ignored.

- image: `name:tag` or `name@sha256:...`; default $ANOMALYOPS_IMAGE, else the release tag.
- every step states CPU and memory requests and limits (STEP_RESOURCES; `resources`
  overrides per step). Train peaks above 5 GB on magnetic_tile PatchCore.
- `gpus` > 0 asks for that many `gpu_resource` on train, evaluate, adapt and challenge, with
  `node_selector` and `tolerations` so they land on (tainted) GPU nodes.
- `storage_secret`: a Secret, in the namespace where Kubeflow Pipelines runs the steps,
  whose AWS_* keys become each step's environment, so boto3 and MLflow reach the bucket,
  and whose MLFLOW_TRACKING_USERNAME/PASSWORD sign the steps in to an MLflow with
  authentication (the chart's mlflow.auth: the pipeline's identity, the one that may move
  aliases); optional, so workload identity works without it. The chart's
  `storage.existingSecret` is the same Secret, in the plant's namespace: one name,
  `anomalyops-storage`, created in both (platform/README.md).
  The same Secret may carry ANOMALYOPS_PREDICTION_LOG, the shared log's database URL:
  drift and retraining runs then take `env:ANOMALYOPS_PREDICTION_LOG` as their log, so
  the password never becomes a run parameter (which anyone who may list runs can read).
- `image_pull_secrets`: docker-registry Secrets (same namespace) for a private image.
- `drift_state_pvc`: a PersistentVolumeClaim (same namespace) mounted on the drift step at
  DRIFT_STATE_MOUNT, where the alert state (hysteresis, cooldown), verdicts and reports
  outlive each run of a recurring drift run; without it a cluster run has nowhere to keep them.

A YAML file (`--cluster-settings`) holds any of these fields.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from anomalyops.components.steps import IMAGE

IMAGE_ENV = "ANOMALYOPS_IMAGE"
GPU_STEPS = ("train", "evaluate", "adapt", "challenge")
RESOURCE_KEYS = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
# Requests are what the scheduler reserves, limits where the pod is throttled or killed.
STEP_RESOURCES: dict[str, dict[str, str]] = {
    "validate": {"cpu_request": "500m", "cpu_limit": "2", "memory_request": "1Gi",
                 "memory_limit": "4Gi"},
    "train": {"cpu_request": "2", "cpu_limit": "4", "memory_request": "8Gi",
              "memory_limit": "16Gi"},
    "evaluate": {"cpu_request": "1", "cpu_limit": "4", "memory_request": "4Gi",
                 "memory_limit": "8Gi"},
    "export": {"cpu_request": "1", "cpu_limit": "2", "memory_request": "4Gi",
               "memory_limit": "8Gi"},
    "register": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "1Gi",
                 "memory_limit": "2Gi"},
    "deploy": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "1Gi",
               "memory_limit": "4Gi"},
    # Retraining's and drift's own steps, each its own entry (a file may size any of them).
    "collect": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "1Gi",
                "memory_limit": "2Gi"},
    "adapt": {"cpu_request": "2", "cpu_limit": "4", "memory_request": "8Gi",
              "memory_limit": "16Gi"},
    "challenge": {"cpu_request": "1", "cpu_limit": "4", "memory_request": "4Gi",
                  "memory_limit": "8Gi"},
    "drift": {"cpu_request": "500m", "cpu_limit": "2", "memory_request": "1Gi",
              "memory_limit": "4Gi"},
    "alert": {"cpu_request": "100m", "cpu_limit": "500m", "memory_request": "256Mi",
              "memory_limit": "512Mi"},
}  # fmt: skip
PREDICTION_LOG_ENV = "ANOMALYOPS_PREDICTION_LOG"
STORAGE_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3",
               "MLFLOW_S3_ENDPOINT_URL", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME",
               "MLFLOW_TRACKING_PASSWORD", PREDICTION_LOG_ENV)  # fmt: skip
DRIFT_STATE_MOUNT = "/var/lib/anomalyops/drift"


@dataclass
class ClusterSettings:
    image: str = field(default_factory=lambda: os.environ.get(IMAGE_ENV) or IMAGE)
    resources: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> overrides
    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict] = field(default_factory=list)
    storage_secret: str = "anomalyops-storage"
    image_pull_secrets: list[str] = field(default_factory=list)
    drift_state_pvc: str = ""

    @classmethod
    def from_file(cls, path: str | Path) -> ClusterSettings:
        """Read a YAML mapping of these fields; unknown fields are a one-line error."""
        values = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of cluster settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"{path}: unknown cluster setting(s) {unknown}; known: {sorted(known)}"
            )
        settings = cls(**values)
        for step, overrides in settings.resources.items():
            if step not in STEP_RESOURCES or set(overrides) - set(RESOURCE_KEYS):
                raise ValueError(f"{path}: resources.{step}: steps are {sorted(STEP_RESOURCES)}, "
                                 f"keys {list(RESOURCE_KEYS)}")  # fmt: skip
        return settings

    def step_resources(self, step: str) -> dict[str, str]:
        return STEP_RESOURCES[step] | self.resources.get(step, {})

    def apply(self, tasks: dict) -> None:
        """Set image, resources, GPUs, the storage Secret and the drift state volume."""
        from kfp import kubernetes

        for step, task in tasks.items():
            task.set_container_image(self.image)
            resources = self.step_resources(step)
            task.set_cpu_request(resources["cpu_request"]).set_cpu_limit(resources["cpu_limit"])
            task.set_memory_request(resources["memory_request"])
            task.set_memory_limit(resources["memory_limit"])
            if self.image_pull_secrets:
                kubernetes.set_image_pull_secrets(task, list(self.image_pull_secrets))
            if self.storage_secret:
                kubernetes.use_secret_as_env(task, self.storage_secret,
                                             {key: key for key in STORAGE_ENV},
                                             optional=True)  # fmt: skip
            if self.drift_state_pvc and step == "drift":
                kubernetes.mount_pvc(task, self.drift_state_pvc, DRIFT_STATE_MOUNT)
            if self.gpus and step in GPU_STEPS:
                task.set_accelerator_type(self.gpu_resource).set_accelerator_limit(self.gpus)
                for key, value in self.node_selector.items():
                    kubernetes.add_node_selector(task, key, value)
                for toleration in self.tolerations:
                    kubernetes.add_toleration(task, **toleration)

"""Training pipeline: validate → train → evaluate → export → register → deploy.

Locally it runs with `kfp.local` in subprocesses of this interpreter (no Docker, no
Kubernetes); on a cluster the same definition is submitted with `kfp.Client`, and the
compiled YAML beside this file is what a cluster operator can upload by hand. Data and
models travel between steps as KFP artifacts only: validate copies `data` (a bucket URI or
a path the step can read) into its Dataset artifact. Deploy writes the Triton model
repository at `triton_repository`: locally a folder (`deploy_target="repository"`); on a
cluster (`deploy_target="kserve"`) a bucket URI, with the line's InferenceService rolled
to the new version (`kserve_json`: components/deploy/kserve.py KServeSettings, `name` = the
chart's line). `python`
flavour on CPU, `onnxruntime` on GPU; with `triton_url` (a running Triton's model-control
address) the new champion is also loaded there and served at once. Image, resources and
GPUs: cluster_settings.py.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import json
import time
from dataclasses import dataclass
from pathlib import Path

from kfp import dsl

from anomalyops.components.steps.deploy import deploy_component
from anomalyops.components.steps.evaluate import evaluate_component
from anomalyops.components.steps.export import export_component
from anomalyops.components.steps.register import register_component
from anomalyops.components.steps.train import train_component
from anomalyops.components.steps.validate import validate_component
from anomalyops.components.training.folds import FOLDS
from anomalyops.pipelines.cluster_settings import ClusterSettings
from anomalyops.pipelines.runner import kfp_runs

PIPELINE_NAME = "anomalyops-training"
COMPILED = Path(__file__).with_name("training.yaml")


def build_pipeline(settings: ClusterSettings | None = None):
    """The training pipeline with SETTINGS' image, resources and GPUs on its steps."""
    settings = settings or ClusterSettings()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="validate, train, evaluate, export, register and deploy a detector",
    )
    def training_pipeline(
        data: str,
        variant: str,
        tracking_uri: str,
        triton_repository: str,
        triton_flavour: str = "python",
        deploy_target: str = "repository",
        kserve_json: str = "{}",
        detector: str = "patchcore",
        settings_json: str = "{}",
        target_fpr: float = 0.01,
        calibration_folds: int = FOLDS,
        device: str = "auto",
        min_images: int = 10,
        require_uniform_size: bool = False,
        triton_url: str = "",
    ) -> str:
        validated = validate_component(
            data=data, min_images=min_images, require_uniform_size=require_uniform_size
        )
        trained = train_component(
            dataset=validated.outputs["dataset"],
            detector=detector,
            settings_json=settings_json,
            target_fpr=target_fpr,
            calibration_folds=calibration_folds,
            device=device,
        )
        evaluated = evaluate_component(
            model=trained.outputs["model"], dataset=validated.outputs["dataset"], device=device
        )
        exported = export_component(model=trained.outputs["model"])
        registered = register_component(
            model=trained.outputs["model"],
            exported=exported.outputs["exported"],
            metrics=evaluated.outputs["metrics"],
            evaluation_report=evaluated.outputs["report"],
            maps=evaluated.outputs["maps"],
            validation=validated.outputs["manifest"],
            validation_report=validated.outputs["report"],
            variant=variant,
            tracking_uri=tracking_uri,
        )
        deployed = deploy_component(
            decision_json=registered.output,
            repository=triton_repository,
            flavour=triton_flavour,
            triton_url=triton_url,
            target=deploy_target,
            kserve_json=kserve_json,
        )
        tasks = {"validate": validated, "train": trained, "evaluate": evaluated,
                 "export": exported, "register": registered, "deploy": deployed}  # fmt: skip
        # The data, registry and repository change outside KFP's view: never reuse results.
        for task in tasks.values():
            task.set_caching_options(False)
        settings.apply(tasks)
        return deployed.output

    return training_pipeline


training_pipeline = build_pipeline()


def compile_pipeline(path: str | Path = COMPILED, settings: ClusterSettings | None = None) -> Path:
    """Write the pipeline as KFP YAML (IR); the committed copy is this with default settings."""
    return kfp_runs.compile_to(build_pipeline, path, settings)


@dataclass
class LocalRun:
    decision: dict  # the register step's Decision
    deployment: dict  # the deploy step's Deployment
    run_dir: Path  # this run's folder under the kfp.local pipeline root: every step's artifacts
    seconds: float


def latest_run(pipeline_root: str | Path, name: str = PIPELINE_NAME) -> Path | None:
    """The newest run folder of pipeline NAME under a kfp.local pipeline root (by time)."""
    root = Path(pipeline_root)
    runs = sorted(p for p in root.glob(f"{name}-*") if p.is_dir()) if root.is_dir() else []
    return runs[-1] if runs else None


def run_local(
    arguments: dict, pipeline_root: str | Path, pipeline=None, name: str = PIPELINE_NAME
) -> LocalRun:
    """Run the pipeline (default: training) in subprocesses of this interpreter.

    PIPELINE must end in the deploy step's output. Raises if any step fails.
    """
    pipeline_root = kfp_runs.init_local(pipeline_root)
    started = time.perf_counter()
    task = (pipeline or training_pipeline)(**arguments)
    seconds = time.perf_counter() - started
    output = json.loads(task.output)
    run_dir = latest_run(pipeline_root, name)
    return LocalRun(output["decision"], output["deployment"], run_dir, seconds)


def submit(
    arguments: dict,
    host: str,
    settings: ClusterSettings | None = None,
    experiment: str = "anomalyops",
) -> str:
    """Submit to a Kubeflow Pipelines endpoint with kfp.Client; returns the run id."""
    return kfp_runs.submit(build_pipeline, arguments, host, settings, experiment)

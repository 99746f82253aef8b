"""Training pipeline: validate → train → evaluate → export → register → deploy.

Locally it runs with `kfp.local` in subprocesses of this interpreter (no Docker, no
Kubernetes); on a cluster the same definition is submitted with `kfp.Client`, and the
compiled YAML beside this file is what a cluster operator can upload by hand. Deploy
writes the Triton model repository at `triton_repository` (locally a folder; on a cluster
a volume the Triton ServingRuntime reads), `python` flavour on CPU, `onnxruntime` on GPU.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from kfp import dsl

from anomalyops.components.steps.deploy import deploy_component
from anomalyops.components.steps.evaluate import evaluate_component
from anomalyops.components.steps.export import export_component
from anomalyops.components.steps.register import register_component
from anomalyops.components.steps.train import train_component
from anomalyops.components.steps.validate import validate_component

PIPELINE_NAME = "anomalyops-training"
COMPILED = Path(__file__).with_name("training.yaml")


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
    detector: str = "patchcore",
    settings_json: str = "{}",
    target_fpr: float = 0.01,
    calibration_fraction: float = 0.2,
    min_images: int = 10,
    require_uniform_size: bool = False,
) -> str:
    validated = validate_component(
        data=data, min_images=min_images, require_uniform_size=require_uniform_size
    )
    trained = train_component(
        dataset=validated.outputs["dataset"],
        detector=detector,
        settings_json=settings_json,
        target_fpr=target_fpr,
        calibration_fraction=calibration_fraction,
    )
    evaluated = evaluate_component(
        model=trained.outputs["model"], dataset=validated.outputs["dataset"]
    )
    exported = export_component(model=trained.outputs["model"])
    registered = register_component(
        model=trained.outputs["model"],
        exported=exported.outputs["exported"],
        metrics=evaluated.outputs["metrics"],
        evaluation_report=evaluated.outputs["report"],
        maps=evaluated.outputs["maps"],
        validation=validated.outputs["dataset"],
        validation_report=validated.outputs["report"],
        variant=variant,
        tracking_uri=tracking_uri,
    )
    deployed = deploy_component(
        decision_json=registered.output, repository=triton_repository, flavour=triton_flavour
    )
    # The data folder, registry and repository change outside KFP's view: never reuse results.
    for task in (validated, trained, evaluated, exported, registered, deployed):
        task.set_caching_options(False)
    return deployed.output


def compile_pipeline(path: str | Path = COMPILED, pipeline=None) -> Path:
    """Write the pipeline (default: training) as KFP YAML; the committed copy must match."""
    from kfp import compiler

    compiler.Compiler().compile(pipeline or training_pipeline, str(path))
    return Path(path)


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
    from kfp import local

    # The steps run in this interpreter, which has the package IMAGE would provide.
    warnings.filterwarnings("ignore", message=".*non-Python base image", category=RuntimeWarning)
    pipeline_root = Path(pipeline_root).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root))
    started = time.perf_counter()
    task = (pipeline or training_pipeline)(**arguments)
    seconds = time.perf_counter() - started
    output = json.loads(task.output)
    run_dir = latest_run(pipeline_root, name)
    return LocalRun(output["decision"], output["deployment"], run_dir, seconds)


def submit(arguments: dict, host: str, experiment: str = "anomalyops", pipeline=None) -> str:
    """Submit the pipeline (default: training) to a Kubeflow Pipelines endpoint; the run id."""
    import kfp

    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_func(
        pipeline or training_pipeline, arguments=arguments, experiment_name=experiment
    )
    return run.run_id

"""Drift pipeline, meant as a recurring run: check drift, and retrain only when it says so.

The drift step (components/steps/drift.py) compares the newest champion predictions in
the log with the champion's training-time reference and keeps its alert state (minimum
sample size, hysteresis, cooldown) under `drift_out`, shared by every run. Only when it
raises an alert does the few-shot retraining pipeline (pipelines/retraining.py) run,
under `dsl.If`, on `new_good`: a folder or URI the line keeps filled with recent good
images of its current state. Runs through `kfp.local` like the training pipeline; the
compiled YAML beside this file is what a cluster schedules (e.g. as a recurring run).
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from pathlib import Path

from kfp import dsl

from anomalyops.components.steps.drift import alert_component, drift_component
from anomalyops.pipelines.cluster_settings import ClusterSettings
from anomalyops.pipelines.retraining import build_pipeline as build_retraining
from anomalyops.pipelines.runner import kfp_runs

PIPELINE_NAME = "anomalyops-drift"
COMPILED = Path(__file__).with_name("drift.yaml")


def build_pipeline(settings: ClusterSettings | None = None):
    """The drift pipeline with SETTINGS' image, resources and GPUs on its steps."""
    settings = settings or ClusterSettings()
    retraining = build_retraining(settings)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="check a variant's production for drift; retrain few-shot when it drifted",
    )
    def drift_pipeline(
        variant: str,
        prediction_log: str,
        drift_out: str,
        tracking_uri: str,
        new_good: str,
        triton_repository: str,
        reference: str = "",
        drift_settings_json: str = "{}",
        eval_data: str = "",
        triton_flavour: str = "python",
        deploy_target: str = "repository",
        kserve_json: str = "{}",
        target_fpr: float = 0.01,
        views: int = 8,
        device: str = "auto",
        triton_url: str = "",
    ) -> str:
        check = drift_component(
            variant=variant,
            log_db=prediction_log,
            out=drift_out,
            reference=reference,
            tracking_uri=tracking_uri,
            settings_json=drift_settings_json,
        )
        raised = alert_component(verdict=check.outputs["verdict"])
        for task in (check, raised):
            task.set_caching_options(False)
        settings.apply({"drift": check, "alert": raised})
        with dsl.If(raised.output == True):  # noqa: E712 - a KFP condition, not Python
            retraining(
                new_good=new_good,
                variant=variant,
                tracking_uri=tracking_uri,
                triton_repository=triton_repository,
                prediction_log=prediction_log,
                eval_data=eval_data,
                triton_flavour=triton_flavour,
                deploy_target=deploy_target,
                kserve_json=kserve_json,
                target_fpr=target_fpr,
                views=views,
                device=device,
                triton_url=triton_url,
            )
        return check.outputs["verdict"]

    return drift_pipeline


drift_pipeline = build_pipeline()


def compile_pipeline(path: str | Path = COMPILED, settings: ClusterSettings | None = None) -> Path:
    """Write the pipeline as KFP YAML; the committed copy is this with default settings."""
    return kfp_runs.compile_to(build_pipeline, path, settings)


def run_local(arguments: dict, pipeline_root: str | Path) -> dict:
    """Run through kfp.local (subprocesses of this interpreter); the drift verdict."""
    import json

    kfp_runs.init_local(pipeline_root)
    return json.loads(drift_pipeline(**arguments).output)


def submit(arguments: dict, host: str, settings: ClusterSettings | None = None) -> str:
    """Submit to a Kubeflow Pipelines endpoint with kfp.Client; returns the run id."""
    return kfp_runs.submit(build_pipeline, arguments, host, settings)

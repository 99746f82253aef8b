"""Few-shot retraining pipeline: collect → adapt → challenge → export → register → deploy.

A variant's production changed (new supplier, lighting, fixture) or a new variant
starts: k new good images (1 to 16) extend the champion's memory bank instead of a
retraining from scratch (components/training/fewshot.py). Reviewed false alarms join those
normal images, confirmed defects the evaluation set, and the champion is measured on
the same set as the challenger (components/evaluation/challenge.py), so the register step's gate
decides like with like and deploy serves the winner (with `triton_url`, a running
Triton loads it at once). Runs through `kfp.local` like the
training pipeline; the compiled YAML beside this file is what a cluster runs.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from pathlib import Path

from kfp import dsl

from anomalyops.components.steps.adapt import adapt_component
from anomalyops.components.steps.challenge import challenge_component
from anomalyops.components.steps.collect import collect_component
from anomalyops.components.steps.deploy import deploy_component
from anomalyops.components.steps.export import export_component
from anomalyops.components.steps.register import register_component
from anomalyops.components.steps.validate import validate_component
from anomalyops.pipelines.cluster_settings import ClusterSettings
from anomalyops.pipelines.runner import kfp_runs

PIPELINE_NAME = "anomalyops-retraining"
COMPILED = Path(__file__).with_name("retraining.yaml")


def build_pipeline(settings: ClusterSettings | None = None):
    """The retraining pipeline with SETTINGS' image, resources and GPUs on its steps."""
    settings = settings or ClusterSettings()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="few-shot retraining: extend the champion with k new good images and reviews",
    )
    def retraining_pipeline(
        new_good: str,
        variant: str,
        tracking_uri: str,
        triton_repository: str,
        prediction_log: str = "",
        eval_data: str = "",
        triton_flavour: str = "python",
        deploy_target: str = "repository",
        kserve_json: str = "{}",
        settings_json: str = "{}",
        target_fpr: float = 0.01,
        views: int = 8,
        device: str = "auto",
        min_images: int = 1,
        triton_url: str = "",
    ) -> str:
        validated = validate_component(data=new_good, min_images=min_images,
                                       require_uniform_size=False)  # fmt: skip
        collected = collect_component(
            variant=variant, tracking_uri=tracking_uri, prediction_log=prediction_log
        )
        adapted = adapt_component(
            dataset=validated.outputs["dataset"],
            base=collected.outputs["base"],
            feedback=collected.outputs["feedback"],
            settings_json=settings_json,
            target_fpr=target_fpr,
            views=views,
            device=device,
        )
        challenged = challenge_component(
            model=adapted.outputs["model"],
            base=collected.outputs["base"],
            dataset=validated.outputs["dataset"],
            feedback=collected.outputs["feedback"],
            eval_data=eval_data,
            variant=variant,
            tracking_uri=tracking_uri,
        )
        exported = export_component(model=adapted.outputs["model"])
        registered = register_component(
            model=adapted.outputs["model"],
            exported=exported.outputs["exported"],
            metrics=challenged.outputs["metrics"],
            evaluation_report=challenged.outputs["report"],
            maps=challenged.outputs["maps"],
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
        tasks = {"collect": collected, "validate": validated, "adapt": adapted,
                 "challenge": challenged, "export": exported, "register": registered,
                 "deploy": deployed}  # fmt: skip
        # The images, registry, log and repository change outside KFP's view: never reuse.
        for task in tasks.values():
            task.set_caching_options(False)
        settings.apply(tasks)
        return deployed.output

    return retraining_pipeline


retraining_pipeline = build_pipeline()


def compile_pipeline(path: str | Path = COMPILED, settings: ClusterSettings | None = None) -> Path:
    """Write the pipeline as KFP YAML; the committed copy is this with default settings."""
    return kfp_runs.compile_to(build_pipeline, path, settings)


def run_local(arguments: dict, pipeline_root: str | Path):
    """Run through kfp.local (see training.run_local); the register and deploy outcome."""
    from anomalyops.pipelines import training

    return training.run_local(arguments, pipeline_root, retraining_pipeline, PIPELINE_NAME)


def submit(arguments: dict, host: str, settings: ClusterSettings | None = None) -> str:
    """Submit to a Kubeflow Pipelines endpoint with kfp.Client; returns the run id."""
    return kfp_runs.submit(build_pipeline, arguments, host, settings)

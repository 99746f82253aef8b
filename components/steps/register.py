"""Register step: log to MLflow and gate promotion (components/registry/register.py)."""

from pathlib import Path

from kfp.dsl import HTML, Artifact, Input, Metrics, Model

from anomalyops.components.registry.register import Decision, register
from anomalyops.components.steps import component


def register_step(
    model_dir: str,
    metrics: dict,
    variant: str,
    tracking_uri: str,
    eval_dataset_sha256: str,
    reports: dict[str, str],
    export_dir: str | None = None,
) -> Decision:
    """Register with each report under a stable name (KFP artifact files are all 'report').

    EXPORT_DIR (model.onnx + model.json) goes with the version, its lineage stamped.
    """
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        named = []
        for name, source in reports.items():
            source_path = Path(source)
            if not source_path.exists():
                continue
            target = Path(scratch) / name
            if source_path.is_dir():
                shutil.copytree(source_path, target)
            else:
                shutil.copyfile(source_path, target)
            named.append(target)
        return register(
            model_dir, metrics, variant, tracking_uri, named, eval_dataset_sha256,
            export_dir=export_dir,
        )  # fmt: skip


@component
def register_component(
    model: Input[Model],
    exported: Input[Model],
    metrics: Input[Metrics],
    evaluation_report: Input[HTML],
    maps: Input[Artifact],
    validation: Input[Artifact],
    validation_report: Input[HTML],
    variant: str,
    tracking_uri: str,
) -> str:
    """Register the model for VARIANT; returns the decision (JSON) saying if it is champion."""
    import json

    from anomalyops.components.steps.register import register_step

    decision = register_step(
        model.path,
        dict(metrics.metadata),
        variant,
        tracking_uri,
        evaluation_report.metadata["eval_dataset_sha256"],
        {
            "evaluation.html": evaluation_report.path,
            "validation.html": validation_report.path,
            "validation.json": validation.path,
            "sample_maps": maps.path,
        },
        exported.path,
    )
    print(f"registered {decision.variant} v{decision.version}: {decision.reason}")
    return json.dumps(decision.to_dict())

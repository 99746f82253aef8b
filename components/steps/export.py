"""Export step: a trained model folder to the serving contract (model.onnx + model.json)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp.dsl import Input, Model, Output

from anomalyops.components.deploy.export import export
from anomalyops.components.steps import component
from anomalyops.serving.contract.model import ModelContract


def export_step(model_dir: str, out_dir: str) -> ModelContract:
    """Export MODEL_DIR; lineage stays null here because only register knows the version."""
    return export(model_dir, out_dir)


@component
def export_component(model: Input[Model], exported: Output[Model]):
    """Export the trained model; the Model artifact is the exported directory."""
    from anomalyops.components.steps.export import export_step

    contract = export_step(model.path, exported.path)
    exported.metadata.update(
        {
            "kind": contract.kind,
            "input_size": [contract.height, contract.width],
            "onnx_sha256": contract.onnx["sha256"],
            "image_threshold": contract.image_threshold,
        }
    )

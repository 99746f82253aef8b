"""Train step: fit and calibrate a detector (components/training/train.py) as a component."""

import json

from kfp.dsl import Dataset, Input, Model, Output

from anomalyops.components.steps import component
from anomalyops.components.training.train import TrainResult, train


def train_step(
    data: str,
    model_dir: str,
    detector: str,
    settings_json: str,
    target_fpr: float,
    calibration_folds: int,
    device: str = "auto",
) -> TrainResult:
    """Train on DATA into MODEL_DIR; settings arrive as JSON because KFP passes strings."""
    settings = json.loads(settings_json or "{}")
    return train(data, model_dir, detector, settings, calibration_folds, target_fpr,
                 progress=False, device=device)  # fmt: skip


@component
def train_component(
    dataset: Input[Dataset],
    detector: str,
    settings_json: str,
    target_fpr: float,
    calibration_folds: int,
    device: str,
    model: Output[Model],
):
    """Train on the validated Dataset artifact; the Model artifact is the model directory."""
    from anomalyops.components.steps.train import train_step

    result = train_step(
        dataset.path, model.path, detector, settings_json, target_fpr,
        calibration_folds, device,
    )  # fmt: skip
    model.metadata.update(
        {
            "detector": detector,
            "dataset_sha256": result.summary["dataset_sha256"],
            "image_threshold": float(result.image_threshold.threshold),
        }
    )

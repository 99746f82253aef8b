"""Adapt step: few-shot adaptation (components/training/fewshot.py) as a component."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import json

from kfp.dsl import Dataset, Input, Model, Output

from anomalyops.components.steps import component
from anomalyops.components.training.fewshot import AdaptResult


def adapt_step(
    data: str,
    feedback_dir: str,
    base_dir: str,
    model_dir: str,
    settings_json: str,
    target_fpr: float,
    views: int,
    device: str = "auto",
) -> AdaptResult:
    """Extend BASE_DIR (or start a new variant when empty) with DATA's good images and the
    reviewed false alarms in FEEDBACK_DIR."""
    from anomalyops.components.data.augment import Augmentation
    from anomalyops.components.data.feedback import NORMAL, feedback_images
    from anomalyops.components.training.fewshot import adapt, normal_samples

    normal = [s.path for s in normal_samples(data)] + feedback_images(feedback_dir, NORMAL)
    return adapt(
        normal,
        model_dir,
        base=base_dir or None,
        settings=None if base_dir else json.loads(settings_json or "{}"),
        augmentation=Augmentation(views=views),
        target_fpr=target_fpr,
        progress=False,
        device=device,
    )


@component
def adapt_component(
    dataset: Input[Dataset],
    base: Input[Model],
    feedback: Input[Dataset],
    settings_json: str,
    target_fpr: float,
    views: int,
    device: str,
    model: Output[Model],
):
    """Few-shot adapt the champion (or start the variant); the Model artifact is the folder."""
    from anomalyops.components.steps.adapt import adapt_step
    from anomalyops.components.steps.collect import champion_dir

    result = adapt_step(
        dataset.path, feedback.path, champion_dir(base.path, base.metadata) or "",
        model.path,
        settings_json, target_fpr, views, device,
    )  # fmt: skip
    print(f"adapt: {result.thresholds['image']['note']}")
    model.metadata.update(
        {
            "detector": result.detector.kind,
            "dataset_sha256": result.summary["dataset_sha256"],
            "image_threshold": float(result.thresholds["image"]["threshold"]),
            "adapted_from": base.metadata["champion"],
            "normal_images": result.summary["train_images"],
        }
    )

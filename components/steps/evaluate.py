"""Evaluate step: metrics, HTML report and sample anomaly maps as a component."""

import shutil
import tempfile
from pathlib import Path

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from anomalyops.components.evaluation.evaluate import evaluate
from anomalyops.components.steps import component

SAMPLES_PER_KIND = 1  # one map per defect type and one good image


def sample_maps(model_dir: str | Path, data: str | Path, out: str | Path) -> list[Path]:
    """A few anomaly-map overlays (PNG) to look at in the registry next to the numbers."""
    import numpy as np
    from PIL import Image

    from anomalyops.components.data.datasets import FolderDataset, load_split
    from anomalyops.components.reports.report import overlay
    from anomalyops.components.training.train import load_trained

    detector, _ = load_trained(model_dir)
    chosen, seen = [], {}
    for sample in FolderDataset(data).test_samples():
        if seen.get(sample.defect_type, 0) < SAMPLES_PER_KIND:
            seen[sample.defect_type] = seen.get(sample.defect_type, 0) + 1
            chosen.append(sample)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not chosen:
        return []
    config = detector.config
    split = load_split(chosen, config.input_size, "skip", False, False, config.keep_aspect)
    maps = detector.predict(split.images).maps
    vmin, vmax = float(np.min(maps)), float(np.max(maps))
    written = []
    for sample, image, anomaly_map in zip(split.samples, split.images, maps, strict=True):
        path = out / f"{sample.defect_type}_{sample.path.stem}.png"
        Image.fromarray(overlay(image, anomaly_map, vmin, vmax)).save(path)
        written.append(path)
    return written


def evaluate_step(
    model_dir: str, data: str, report_path: str, maps_dir: str, device: str = "auto"
) -> dict:
    """Metrics on DATA's test split plus the evaluation-set hash the promotion gate compares.

    The model folder is an input artifact (read-only on a cluster): evaluate a copy.
    """
    with tempfile.TemporaryDirectory() as scratch:
        model_copy = Path(scratch) / "model"
        shutil.copytree(model_dir, model_copy)
        metrics = evaluate(model_copy, data, report_path, progress=False, device=device)
    sample_maps(model_dir, data, maps_dir)
    return metrics  # its eval_dataset_sha256 covers only the images actually evaluated


@component
def evaluate_component(
    model: Input[Model],
    dataset: Input[Dataset],
    device: str,
    metrics: Output[Metrics],
    report: Output[HTML],
    maps: Output[Artifact],
):
    """Evaluate the model on the dataset's test split; metrics carry the eval-set hash."""
    from anomalyops.components.steps.evaluate import evaluate_step

    result = evaluate_step(model.path, dataset.path, report.path, maps.path, device)
    for key, value in result.items():
        if isinstance(value, int | float):
            metrics.log_metric(key, float(value))
    report.metadata["eval_dataset_sha256"] = result["eval_dataset_sha256"]
    maps.metadata["eval_dataset_sha256"] = result["eval_dataset_sha256"]

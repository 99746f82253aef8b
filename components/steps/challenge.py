"""Challenge step: the retrained model and the champion on one evaluation set.

See components/evaluation/challenge.py for what the set holds. The champion's version is re-tagged
with its metrics on this set, so the register step's gate compares like with like.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
import tempfile
from pathlib import Path

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from anomalyops.components.evaluation.challenge import Challenge
from anomalyops.components.steps import component


def challenge_step(
    model_dir: str,
    base_dir: str | None,
    champion: str,
    data: str,
    feedback_dir: str,
    eval_data: str,
    variant: str,
    tracking_uri: str,
    report_path: str,
    maps_dir: str,
) -> Challenge:
    """Score both models; record the champion's numbers on this set in the registry."""
    from anomalyops.components.data.feedback import DEFECTS, NORMAL, feedback_images
    from anomalyops.components.evaluation.challenge import challenge
    from anomalyops.components.registry.champion import record_evaluation
    from anomalyops.components.steps.evaluate import sample_maps
    from anomalyops.components.training.fewshot import normal_samples
    from anomalyops.serving.storage import download

    new_good = [s.path for s in normal_samples(data)] + feedback_images(feedback_dir, NORMAL)
    Path(maps_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="anomalyops-eval-") as scratch:
        local = download(eval_data, Path(scratch) / "eval") if eval_data else None
        result = challenge(model_dir, base_dir, local, feedback_images(feedback_dir, DEFECTS),
                           new_good, report_path)  # fmt: skip
        if local is not None:
            sample_maps(model_dir, local, maps_dir)
    if result.champion is not None:
        record_evaluation(tracking_uri, variant, champion, result.champion,
                          result.eval_dataset_sha256)  # fmt: skip
    return result


@component
def challenge_component(
    model: Input[Model],
    base: Input[Model],
    dataset: Input[Dataset],
    feedback: Input[Dataset],
    eval_data: str,
    variant: str,
    tracking_uri: str,
    metrics: Output[Metrics],
    report: Output[HTML],
    maps: Output[Artifact],
):
    """Evaluate the challenger beside the champion; metrics carry the eval-set hash."""
    from anomalyops.components.steps.challenge import challenge_step
    from anomalyops.components.steps.collect import champion_dir

    result = challenge_step(
        model.path, champion_dir(base.path, base.metadata), base.metadata["champion"],
        dataset.path, feedback.path, eval_data,
        variant, tracking_uri, report.path, maps.path,
    )  # fmt: skip
    for key, value in result.challenger.items():
        if isinstance(value, int | float):
            metrics.log_metric(key, float(value))
    champion = result.champion or {}
    print(f"challenge on {result.counts}: challenger {result.challenger.get('image_auroc')}, "
          f"champion {champion.get('image_auroc')} image AUROC")  # fmt: skip
    for artifact in (report, maps):
        artifact.metadata["eval_dataset_sha256"] = result.eval_dataset_sha256
    report.metadata["champion_metrics"] = champion
    report.metadata["counts"] = result.counts

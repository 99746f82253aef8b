"""Collect step: what a retraining starts from, gathered where the pipeline can pass it on.

The champion's trained model folder comes from the registry (a new variant has none),
and reviewed predictions from the prediction log: false alarms (normal images) and
confirmed defects (evaluation images), see components/data/feedback.py.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from pathlib import Path

from kfp.dsl import Dataset, Model, Output

from anomalyops.components.steps import component

MODEL_FOLDER = "model"  # registry run artifact folder of the trained model


def collect_step(
    variant: str, tracking_uri: str, prediction_log: str, base_dir: str, feedback_dir: str
) -> dict:
    """Fill BASE_DIR with the champion's model and FEEDBACK_DIR with reviewed images."""
    from anomalyops.components.data.feedback import collect_feedback
    from anomalyops.components.registry.champion import download_champion_model

    champion = download_champion_model(tracking_uri, variant, base_dir)
    Path(base_dir).mkdir(parents=True, exist_ok=True)
    summary = {"champion": champion[0] if champion else ""}
    Path(feedback_dir).mkdir(parents=True, exist_ok=True)
    if prediction_log:
        feedback = collect_feedback(prediction_log, variant, feedback_dir)
        summary |= {"false_alarms": len(feedback.normal), "confirmed_defects":
                    len(feedback.defects), "feedback": feedback.summary()}  # fmt: skip
    else:
        summary |= {"false_alarms": 0, "confirmed_defects": 0, "feedback": "no prediction log"}
    return summary


def champion_dir(base_path: str, base_metadata: dict) -> str | None:
    """Where the collect step put the champion's model inside its artifact (None: none)."""
    return str(Path(base_path) / MODEL_FOLDER) if base_metadata.get("champion") else None


@component
def collect_component(
    variant: str,
    tracking_uri: str,
    prediction_log: str,
    base: Output[Model],
    feedback: Output[Dataset],
):
    """The champion's model (empty for a new variant) and the reviewed images of VARIANT."""
    from anomalyops.components.steps.collect import collect_step

    summary = collect_step(variant, tracking_uri, prediction_log, base.path, feedback.path)
    print(f"collect: champion {summary['champion'] or 'none'}; {summary['feedback']}")
    base.metadata["champion"] = summary["champion"]
    feedback.metadata.update(summary)

import json

import pytest

from anomalyops.components.evaluation.evaluate import evaluate
from anomalyops.components.training.train import load_trained, split_holdout, train
from anomalyops.serving.contract.reference import load_reference


@pytest.fixture(scope="module")
def trained(weld, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    return train(weld, out, "patchcore", progress=False)


def test_holdout_is_disjoint_and_complete():
    fit, held = split_holdout(37, 0.2, seed=0)
    assert len(held) == 7 and set(fit).isdisjoint(held) and len(fit) + len(held) == 37


def test_train_writes_model_thresholds_and_lineage(trained):
    model_dir = trained.model_dir
    detector, thresholds = load_trained(model_dir)
    assert thresholds["image"]["n_good"] == 7 and not thresholds["image"]["guaranteed"]
    summary = json.loads((model_dir / "training.json").read_text())
    assert len(summary["dataset_sha256"]) == 64 and summary["train_images"] == 30
    assert detector.fitted
    reference = load_reference(model_dir)  # held-out scores + every training image's stats
    assert len(reference.scores) == 7 and max(reference.scores) > 0
    assert all(len(values) == 37 for values in reference.statistics.values())


def test_evaluate_reports_metrics_and_html(trained, weld, tmp_path):
    report = tmp_path / "report.html"
    metrics = evaluate(trained.model_dir, weld, report, progress=False)
    assert metrics["image_auroc"] > 0.9 and metrics["pixel_auroc"] > 0.8
    assert 0 < metrics["aupro"] <= 1
    text = report.read_text()
    assert "image_auroc" in text and text.count("data:image/png;base64") >= 10


def test_skipped_test_image_changes_the_evaluation_set(trained, weld, tmp_path):
    import shutil

    data = tmp_path / "weld"
    shutil.copytree(weld, data)
    full = evaluate(trained.model_dir, data, progress=False)
    extra = data / "test" / "good" / "zz_unreadable.png"
    extra.write_bytes(b"\x89PNG broken")  # an extra unreadable file: the same images count
    same = evaluate(trained.model_dir, data, progress=False)
    assert same["test_skipped"] == 1
    assert same["eval_dataset_sha256"] == full["eval_dataset_sha256"]
    victim = sorted((data / "test" / "defective").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # a test image the champion was scored on
    partial = evaluate(trained.model_dir, data, progress=False)
    assert partial["test_skipped"] == 2 and partial["test_images"] == full["test_images"] - 1
    assert partial["eval_dataset_sha256"] != full["eval_dataset_sha256"]

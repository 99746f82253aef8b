import json
from pathlib import Path

import pytest

from anomalyops.components.evaluation.evaluate import evaluate
from anomalyops.components.training.train import load_trained, train
from anomalyops.serving.contract.reference import load_reference


@pytest.fixture(scope="module")
def trained(weld, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    return train(weld, out, "patchcore", progress=False)


def test_train_writes_model_thresholds_and_lineage(trained):
    model_dir = trained.model_dir
    detector, thresholds = load_trained(model_dir)
    # every one of weld's 37 good images is scored out of fold (37 < 99: not guaranteed)
    assert thresholds["image"]["n_good"] == 37 and not thresholds["image"]["guaranteed"]
    summary = json.loads((model_dir / "training.json").read_text())
    assert len(summary["dataset_sha256"]) == 64 and summary["train_images"] == 37
    assert summary["calibration"] == {"method": "cross-fit", "folds": 5, "order": "file name"}
    assert detector.fitted
    reference = load_reference(model_dir)  # out-of-fold scores + every image's statistics
    assert len(reference.scores) == 37 and min(reference.scores) > 0
    # 37 < 99 images: the conformal rank is past the end, so the threshold is the largest
    assert thresholds["image"]["threshold"] == pytest.approx(max(reference.scores))
    highest = summary["highest_held_out"]  # named, highest first: the first set it
    wanted = sorted(reference.scores, reverse=True)[:5]
    assert [h["score"] for h in highest] == pytest.approx(wanted)
    assert all(h["file"].startswith("train/good/") for h in highest)
    assert (Path(summary["data"]) / highest[0]["file"]).is_file()
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

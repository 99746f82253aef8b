"""Reviewed predictions become training data, from either backend and either file store."""

from __future__ import annotations

import pytest

from anomalyops.components.data.feedback import DEFECTS, NORMAL, collect_feedback
from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord


@pytest.mark.parametrize("store", ["folder", "bucket"])
def test_reviewed_images_are_copied_by_verdict(log_url, tmp_path, store, request):
    files = str(tmp_path / "files") if store == "folder" else request.getfixturevalue("s3_bucket")
    with PredictionLog(log_url, files=files) as log:
        alarm, defect, lost = log.write(
            [PredictionRecord("weld", 20.0, 10.0, "anomalous", 1, 1, 1, image=data,
                              image_suffix=".jpg") for data in (b"glare", b"crack", None)]
        )  # fmt: skip
        log.mark(alarm, "false_alarm", "ana")
        log.mark(defect, "confirmed_defect", "ana")
        log.mark(lost, "confirmed_defect", "ana")
    feedback = collect_feedback(log_url, "weld", tmp_path / "out", files)
    assert [p.read_bytes() for p in feedback.normal] == [b"glare"]
    assert [p.name for p in feedback.defects] == [f"prediction_{defect}.jpg"]
    assert feedback.defects[0].parent.name == DEFECTS and feedback.normal[0].parent.name == NORMAL
    assert feedback.missing == [f"prediction {lost}: confirmed_defect, no kept image"]


def test_a_missing_log_is_an_error_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.db: no prediction log there"):
        collect_feedback(tmp_path / "nothing.db", "weld", tmp_path / "out")
    assert not (tmp_path / "nothing.db").exists()

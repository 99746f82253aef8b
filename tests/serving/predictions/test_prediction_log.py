"""The prediction log: rows, kept files, verdicts, windows, retention, v1 migration."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from anomalyops.serving.predictions.log import (
    PredictionLog,
    PredictionRecord,
    UnknownPredictionError,
)


def record(score: float, label: str = "good", **extra) -> PredictionRecord:
    return PredictionRecord("weld", score, 10.0, label, 100.0, 20.0, 50.0, **extra)


def test_write_returns_ids_and_keeps_files(tmp_path):
    with PredictionLog(tmp_path / "log.db") as log:
        anomaly_map = np.full((4, 4), 3.5, dtype=np.float32)
        ids = log.write(
            [record(1.0), record(20.0, "anomalous", image=b"PNGDATA", anomaly_map=anomaly_map)]
        )
        assert ids == [1, 2]
        flagged = log.get(2)
        assert flagged["label"] == "anomalous" and flagged["verdict"] is None
        assert log.file(flagged["image_file"]).read_bytes() == b"PNGDATA"
        assert np.load(log.file(flagged["map_file"])).tolist() == anomaly_map.tolist()
        assert log.file(log.get(1)["image_file"]) is None
        with pytest.raises(ValueError, match="not inside"):
            log.file("../../etc/passwd")


def test_verdicts_latest_wins_and_unknown_id_is_a_clear_error(tmp_path):
    with PredictionLog(tmp_path / "log.db") as log:
        first, second = log.write([record(20.0, "anomalous"), record(30.0, "anomalous")])
        log.mark(first, "confirmed_defect", "ana")
        stored = log.mark(first, "false_alarm", "ben", note="glare")
        assert stored["reviewer"] == "ben" and stored["prediction_id"] == first
        assert log.get(first)["verdict"] == "false_alarm"
        assert [r["id"] for r in log.reviewed("weld", "false_alarm")] == [first]
        assert log.reviewed("weld", "confirmed_defect") == []
        assert [r["id"] for r in log.recent("weld", verdict="unreviewed")] == [second]
        with pytest.raises(UnknownPredictionError, match="no prediction with id 99"):
            log.mark(99, "false_alarm", "ana")
        with pytest.raises(ValueError, match="verdict must be one of"):
            log.mark(first, "maybe", "ana")
        with pytest.raises(ValueError, match="reviewer"):
            log.mark(first, "false_alarm", "  ")


def test_window_is_the_last_scored_rows_oldest_first(tmp_path):
    with PredictionLog(tmp_path / "log.db") as log:
        log.write([record(float(i)) for i in range(10)])
        log.write([PredictionRecord("weld", None, None, "unusable", 0.0, 0.0, 0.0)])
        log.write([PredictionRecord("other", 5.0, 1.0, "good", 1.0, 1.0, 1.0)])
        assert [r["score"] for r in log.window("weld", 3)] == [7.0, 8.0, 9.0]
        assert log.count("weld") == 11 and log.count() == 12


def test_window_of_one_model_version_leaves_other_versions_out(tmp_path):
    with PredictionLog(tmp_path / "log.db") as log:
        log.write([record(float(i), model_version="1") for i in range(5)])
        log.write([record(float(i), model_version="2") for i in range(10, 12)])
        log.write([record(99.0, model_version="1")])
        assert [r["score"] for r in log.window("weld", 10, model_version="2")] == [10.0, 11.0]
        assert [r["score"] for r in log.window("weld", 2, model_version="1")] == [4.0, 99.0]
        assert len(log.window("weld", 100)) == 8


def test_prune_keeps_reviewed_rows_and_removes_files(tmp_path):
    with PredictionLog(tmp_path / "log.db") as log:
        old, reviewed = log.write([record(1.0, image=b"a"), record(2.0, image=b"b")])
        log.mark(reviewed, "false_alarm", "ana")
        kept_file = log.file(log.get(old)["image_file"])
        future = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
        assert log.prune(future) == 1
        assert not kept_file.exists()
        with pytest.raises(UnknownPredictionError):
            log.get(old)
        assert log.get(reviewed)["verdict"] == "false_alarm"


def test_version_1_log_is_migrated_without_losing_rows(tmp_path):
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
        variant TEXT NOT NULL, score REAL NOT NULL, threshold REAL NOT NULL,
        label TEXT NOT NULL CHECK (label IN ('good', 'anomalous')), image_mean REAL NOT NULL,
        image_std REAL NOT NULL, source_size TEXT, model_sha256 TEXT);
        CREATE INDEX predictions_variant_time ON predictions (variant, time);
        INSERT INTO predictions VALUES (7, '2026-01-01T00:00:00', 'weld', 3.0, 9.0, 'good',
                                        120.0, 30.0, '400x200', 'abc');"""
    )
    db.close()
    with PredictionLog(path) as log:
        row = log.get(7)
        assert (row["brightness"], row["contrast"], row["source_size"]) == (120.0, 30.0, "400x200")
        assert log.write([PredictionRecord("weld", None, None, "unusable", 0, 0, 0)]) == [8]
    with PredictionLog(path) as again:  # reopening a migrated log changes nothing
        assert again.count() == 2


def _sqlite_of_another_program(path):
    import sqlite3

    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE contacts (name TEXT)")


def _truncated_log(path):
    from anomalyops.serving.predictions.log import PredictionLog, PredictionRecord

    with PredictionLog(path) as log:
        log.write([PredictionRecord("weld", 1.0, 2.0, "good", 1.0, 1.0, 1.0)] * 50)
    path.write_bytes(path.read_bytes()[:5000])


@pytest.mark.parametrize(
    ("plant", "says"),
    [
        (lambda p: p.write_bytes(b"not a database at all" * 100), "cannot open it"),
        (_truncated_log, "prediction log: "),
        (_sqlite_of_another_program, "not a prediction log"),
    ],
    ids=["garbage", "truncated", "another-program"],
)
def test_an_unusable_log_file_is_named_never_a_sqlite_traceback(plant, says, tmp_path):
    from anomalyops.serving.predictions.log import PredictionLog, PredictionLogError

    path = tmp_path / "predictions.db"
    plant(path)
    before = path.read_bytes()
    with pytest.raises(PredictionLogError, match=str(path)) as raised, PredictionLog(path) as log:
        log.window("weld", 100)
        log.prune("2999-01-01")
    assert says in str(raised.value)
    assert path.read_bytes() == before or says == "prediction log: "


def test_a_read_only_log_is_named(tmp_path, requires):
    """An immutable file (chattr +i): read-only even for root, who ignores file modes."""
    import subprocess

    from anomalyops.serving.predictions.log import PredictionLog, PredictionLogError

    path = tmp_path / "predictions.db"
    with PredictionLog(path) as log:
        log.write([PredictionRecord("weld", 1.0, 2.0, "good", 1.0, 1.0, 1.0)])
    entries = [path, tmp_path]
    immutable = subprocess.run(["chattr", "+i", *map(str, entries)], capture_output=True)
    requires(immutable.returncode == 0, "chattr +i refused here (needs CAP_LINUX_IMMUTABLE)")
    try:
        with pytest.raises(PredictionLogError, match=f"{path}: prediction log: cannot open it"):
            PredictionLog(path).prune("2999-01-01")
    finally:
        subprocess.run(["chattr", "-i", *map(str, entries)], check=True)

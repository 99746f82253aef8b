"""The prediction log on both backends (SQLite, a real PostgreSQL server): rows, kept
files, verdicts, windows, retention, migrations; the file store in a bucket (moto)."""

from __future__ import annotations

import io
import re
import sqlite3
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect

from anomalyops.serving.predictions.database import database_url
from anomalyops.serving.predictions.log import (
    PredictionLog,
    PredictionRecord,
    UnknownPredictionError,
)


def record(score: float, label: str = "good", **extra) -> PredictionRecord:
    return PredictionRecord("weld", score, 10.0, label, 100.0, 20.0, 50.0, **extra)


@pytest.fixture
def log(log_url, tmp_path):
    with PredictionLog(log_url, files=tmp_path / "files") as opened:
        yield opened


def test_write_returns_ids_and_keeps_files(log):
    anomaly_map = np.full((4, 4), 3.5, dtype=np.float32)
    first, second = log.write(
        [record(1.0), record(20.0, "anomalous", image=b"PNGDATA", anomaly_map=anomaly_map)]
    )
    assert second == first + 1
    flagged = log.get(second)
    assert flagged["label"] == "anomalous" and flagged["verdict"] is None
    assert log.read_file(flagged["image_file"]) == b"PNGDATA"
    assert log.file(flagged["image_file"]).read_bytes() == b"PNGDATA"
    assert np.load(log.file(flagged["map_file"])).tolist() == anomaly_map.tolist()
    assert log.file(log.get(first)["image_file"]) is None
    assert log.read_file(None) is None
    with pytest.raises(ValueError, match="not inside"):
        log.file("../../etc/passwd")
    assert log.write([]) == []


def test_bad_label_is_refused_before_anything_is_written(log):
    with pytest.raises(ValueError, match="label must be one of"):
        log.write([record(1.0), record(2.0, "maybe")])
    assert log.count() == 0


def test_verdicts_latest_wins_and_unknown_id_is_a_clear_error(log):
    first, second = log.write([record(20.0, "anomalous"), record(30.0, "anomalous")])
    log.mark(first, "confirmed_defect", "ana")
    stored = log.mark(first, "false_alarm", "ben", note="glare")
    assert stored["reviewer"] == "ben" and stored["prediction_id"] == first
    assert stored["note"] == "glare" and stored["time"]
    assert log.get(first)["verdict"] == "false_alarm"
    assert [r["id"] for r in log.reviewed("weld", "false_alarm")] == [first]
    assert log.reviewed("weld", "confirmed_defect") == []
    assert [r["id"] for r in log.recent("weld", verdict="unreviewed")] == [second]
    assert [r["id"] for r in log.recent("weld", verdict="false_alarm")] == [first]
    with pytest.raises(UnknownPredictionError, match="no prediction with id 99"):
        log.mark(99, "false_alarm", "ana")
    with pytest.raises(ValueError, match="verdict must be one of"):
        log.mark(first, "maybe", "ana")
    with pytest.raises(ValueError, match="reviewer"):
        log.mark(first, "false_alarm", "  ")
    with pytest.raises(UnknownPredictionError, match="no prediction with id 99"):
        log.get(99)


def test_recent_filters_by_line_label_and_time(log):
    log.write([record(1.0, line="L1"), record(20.0, "anomalous", line="L2")])
    log.write([PredictionRecord("other", 5.0, 1.0, "good", 1.0, 1.0, 1.0)])
    assert [r["line"] for r in log.recent("weld")] == ["L2", "L1"]
    assert [r["score"] for r in log.recent(label="anomalous")] == [20.0]
    assert [r["variant"] for r in log.recent(line="L1")] == ["weld"]
    assert len(log.recent(limit=2)) == 2 and len(log.recent()) == 3
    now = datetime.now(UTC)
    assert log.recent(since=(now + timedelta(minutes=1)).isoformat()) == []
    assert len(log.recent(until=(now + timedelta(minutes=1)).isoformat())) == 3


def test_window_is_the_last_scored_rows_oldest_first(log):
    log.write([record(float(i)) for i in range(10)])
    log.write([PredictionRecord("weld", None, None, "unusable", 0.0, 0.0, 0.0)])
    log.write([PredictionRecord("other", 5.0, 1.0, "good", 1.0, 1.0, 1.0)])
    assert [r["score"] for r in log.window("weld", 3)] == [7.0, 8.0, 9.0]
    assert log.count("weld") == 11 and log.count() == 12


def test_window_of_one_model_version_leaves_other_versions_out(log):
    log.write([record(float(i), model_version="1") for i in range(5)])
    log.write([record(float(i), model_version="2") for i in range(10, 12)])
    log.write([record(99.0, model_version="1")])
    assert [r["score"] for r in log.window("weld", 10, model_version="2")] == [10.0, 11.0]
    assert [r["score"] for r in log.window("weld", 2, model_version="1")] == [4.0, 99.0]
    assert len(log.window("weld", 100)) == 8


def test_prune_keeps_reviewed_rows_and_removes_files(log):
    old, reviewed = log.write([record(1.0, image=b"a"), record(2.0, image=b"b")])
    log.mark(reviewed, "false_alarm", "ana")
    old_key, kept_key = log.get(old)["image_file"], log.get(reviewed)["image_file"]
    future = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert log.prune(future) == 1
    assert log.read_file(old_key) is None
    with pytest.raises(UnknownPredictionError):
        log.get(old)
    assert log.get(reviewed)["verdict"] == "false_alarm"
    assert log.read_file(kept_key) == b"b"
    assert log.prune(future) == 0


def test_prune_files_removes_only_old_files_no_row_names(log):
    (kept,) = log.write([record(1.0, image=b"kept")])
    orphan = log.files.put(b"left by a crash", ".png")  # stored, its row never written
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert log.prune_files(datetime.now(UTC).date().isoformat()) == 0  # today's: too new
    assert log.prune_files(tomorrow) == 1
    assert log.read_file(orphan) is None
    assert log.read_file(log.get(kept)["image_file"]) == b"kept"


def test_a_log_that_does_not_exist_is_an_error_for_readers(log_url):
    with pytest.raises(FileNotFoundError, match="no prediction log there"):
        PredictionLog(log_url, create=False)
    with PredictionLog(log_url):
        pass  # created
    with PredictionLog(log_url, create=False) as log:
        assert log.count() == 0


def test_reopening_changes_nothing_and_keeps_every_index(log_url, tmp_path):
    with PredictionLog(log_url, files=tmp_path) as log:
        log.write([record(1.0)])
    with PredictionLog(log_url, files=tmp_path) as log:
        assert log.count() == 1
    engine = create_engine(database_url(log_url))
    indexes = {i["name"] for i in inspect(engine).get_indexes("predictions")}
    engine.dispose()
    assert {"predictions_variant_version_id", "predictions_variant_time"} <= indexes


def test_a_newer_schema_is_refused_naming_the_log(log_url):
    with PredictionLog(log_url) as log:
        where = log.where
    engine = create_engine(database_url(log_url))
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE log_schema SET version = 99")
    engine.dispose()
    says = re.escape(f"{where}: prediction log schema 99 is newer")
    with pytest.raises(RuntimeError, match=says):
        PredictionLog(log_url)


@pytest.mark.parametrize(
    "location, says",
    [("mysql://host/db", "takes sqlite:///PATH"), ("postgresql://u@h:port/db", "not a database")],
)
def test_an_unsupported_url_is_a_clear_error(location, says):
    with pytest.raises(ValueError, match=says):
        PredictionLog(location)


def test_env_location_reads_the_url_from_the_environment(log_url, monkeypatch):
    """`env:NAME` is how a cluster passes the log: the URL stays in a Secret's variable."""
    with PredictionLog(log_url) as direct:
        (written,) = direct.write([record(3.0)])
    monkeypatch.setenv("ANOMALYOPS_PREDICTION_LOG", log_url)
    with PredictionLog("env:ANOMALYOPS_PREDICTION_LOG", create=False) as through_env:
        assert [row["id"] for row in through_env.recent("weld")] == [written]


@pytest.mark.parametrize(
    "location, says",
    [("env:ANOMALYOPS_UNSET_LOG", "ANOMALYOPS_UNSET_LOG is not set"),
     ("env:not-a-name", "not an environment variable name"),
     ("env:ANOMALYOPS_LOOP", "names another variable")],
)  # fmt: skip
def test_env_location_errors_name_the_variable(location, says, monkeypatch):
    monkeypatch.delenv("ANOMALYOPS_UNSET_LOG", raising=False)
    monkeypatch.setenv("ANOMALYOPS_LOOP", "env:ANOMALYOPS_LOOP")
    with pytest.raises(ValueError, match=says):
        database_url(location)


def test_an_unreachable_server_is_one_line_naming_it():
    from anomalyops.serving.ports import free_port

    url = f"postgresql://anomalyops:secret@127.0.0.1:{free_port()}/log"
    with pytest.raises(ConnectionError, match="cannot open the prediction log") as error:
        PredictionLog(url)
    assert "secret" not in str(error.value) and "127.0.0.1" in str(error.value)


def test_a_postgresql_log_without_a_file_store_refuses_images(postgres_url):
    with PredictionLog(postgres_url) as log:
        with pytest.raises(ValueError, match="no file store for kept images"):
            log.write([record(1.0, image=b"x")])
        assert log.count() == 0
        assert log.write([record(1.0)])  # without images it logs


def test_images_in_a_bucket_are_written_read_and_pruned(log_url, s3_bucket):
    with PredictionLog(log_url, files=f"{s3_bucket}/predictions") as log:
        (first,) = log.write([record(20.0, "anomalous", image=b"PNG", anomaly_map=np.ones((2, 2)))])
        row = log.get(first)
        assert log.read_file(row["image_file"]) == b"PNG"
        assert np.load(io.BytesIO(log.read_file(row["map_file"]))).sum() == 4
        with pytest.raises(ValueError, match="not on this machine"):
            log.file(row["image_file"])
        assert sorted(log.files.stored_keys()) == sorted([row["image_file"], row["map_file"]])
        assert log.prune((datetime.now(UTC) + timedelta(seconds=1)).isoformat()) == 1
        assert list(log.files.stored_keys()) == []


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
    with PredictionLog(f"sqlite:///{path}") as again:  # reopening a migrated log changes nothing
        assert again.count() == 2


def test_a_version_2_log_from_before_the_schema_table_opens_as_it_is(tmp_path):
    """Logs written before log_schema existed kept their version in PRAGMA user_version."""
    path = tmp_path / "v2.db"
    with PredictionLog(path) as log:
        log.write([record(1.0)])
    db = sqlite3.connect(path)
    db.executescript("DROP TABLE log_schema; PRAGMA user_version = 2;")
    db.close()
    with PredictionLog(path) as log:
        assert log.count() == 1 and log.get(1)["score"] == 1.0


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

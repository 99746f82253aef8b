"""Durable record of every prediction and of what reviewers said about it (SQLite locally).

Drift checks read the predictions, the review page and `anomalyops review` write verdicts,
and retraining reads both (false alarms join the normal set, confirmed defects the
evaluation set), so images are kept beside the log under `<log>.files/`.

Schema version 2 (`PRAGMA user_version`), table `predictions`, one row per scored image,
committed before the answer:

| column        | type    | meaning                                                        |
|---------------|---------|----------------------------------------------------------------|
| id            | INTEGER | prediction id (what a verdict names)                           |
| time          | TEXT    | UTC ISO-8601 time of the prediction                            |
| variant       | TEXT    | product variant = registered model = Triton model name         |
| line          | TEXT    | production line that sent the image ('' when not said)         |
| model_version | TEXT    | registered version that scored it (Triton's response says)     |
| model_sha256  | TEXT    | sha256 of that version's model.onnx                            |
| score         | REAL    | raw anomaly score (unusable frames too; NULL when not computed) |
| threshold     | REAL    | image threshold applied (after any per-request override)       |
| label         | TEXT    | 'good', 'anomalous' or 'unusable' (outside the training images) |
| brightness    | REAL    | mean grey level of the model input (serving/images/statistics.py)    |
| contrast      | REAL    | grey-level standard deviation of the model input               |
| sharpness     | REAL    | Laplacian variance of the model input                          |
| source_size   | TEXT    | "WxH" of the image as received, before resizing                |
| image_file    | TEXT    | the image as received, relative to the files folder, or NULL   |
| map_file      | TEXT    | anomaly map (float16 .npy), relative to the files folder, or NULL |

Table `verdicts`: id, prediction_id (→ predictions.id), verdict ('false_alarm' or
'confirmed_defect'), reviewer, time, note. A prediction may be marked again; the latest
mark counts, earlier ones stay as history. Version-1 logs are migrated in place on open.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2
LABELS = ("good", "anomalous", "unusable")
VERDICTS = ("false_alarm", "confirmed_defect")
MAX_REVIEWER = 100
MAX_NOTE = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    variant TEXT NOT NULL,
    line TEXT NOT NULL DEFAULT '',
    model_version TEXT,
    model_sha256 TEXT,
    score REAL,
    threshold REAL,
    label TEXT NOT NULL CHECK (label IN ('good', 'anomalous', 'unusable')),
    brightness REAL,
    contrast REAL,
    sharpness REAL,
    source_size TEXT,
    image_file TEXT,
    map_file TEXT
);
CREATE INDEX IF NOT EXISTS predictions_variant_id ON predictions (variant, id);
CREATE INDEX IF NOT EXISTS predictions_variant_time ON predictions (variant, time);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time);
-- a drift check's window of one model version (tests/benchmarks/drift.py: a new champion's
-- 500 rows under a million older ones took 2.1 s to find without it)
CREATE INDEX IF NOT EXISTS predictions_variant_version_id
    ON predictions (variant, model_version, id);
CREATE TABLE IF NOT EXISTS verdicts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prediction_id INTEGER NOT NULL REFERENCES predictions (id),
    verdict TEXT NOT NULL CHECK (verdict IN ('false_alarm', 'confirmed_defect')),
    reviewer TEXT NOT NULL,
    time TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS verdicts_prediction ON verdicts (prediction_id, id);
"""

# Version 1 had image_mean/image_std (now brightness/contrast) and no 'unusable' label;
# SQLite cannot change a CHECK constraint, so the table is rebuilt inside one transaction.
MIGRATE_V1 = """
ALTER TABLE predictions RENAME TO predictions_v1;
DROP INDEX IF EXISTS predictions_variant_time;
{schema}
INSERT INTO predictions (id, time, variant, model_sha256, score, threshold, label,
                         brightness, contrast, source_size)
    SELECT id, time, variant, model_sha256, score, threshold, label, image_mean, image_std,
           source_size FROM predictions_v1;
DROP TABLE predictions_v1;
"""

COLUMNS = (
    "id", "time", "variant", "line", "model_version", "model_sha256", "score", "threshold",
    "label", "brightness", "contrast", "sharpness", "source_size", "image_file", "map_file",
)  # fmt: skip


class PredictionLogError(RuntimeError):
    """The log file cannot be used (damaged, read-only, another program's database)."""


class UnknownPredictionError(KeyError):
    """A verdict or lookup named a prediction id the log does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class PredictionRecord:
    variant: str
    score: float | None
    threshold: float | None
    label: str
    brightness: float
    contrast: float
    sharpness: float
    source_size: str | None = None
    model_version: str | None = None
    model_sha256: str | None = None
    line: str = ""
    image: bytes | None = None  # the encoded image as received, kept for review/retraining
    image_suffix: str = ".png"
    anomaly_map: np.ndarray | None = None  # kept (float16) where a reviewer will look


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class PredictionLog:
    """Append-only SQLite log; WAL mode so a drift job can read while serving writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.files = self.path.with_name(self.path.name + ".files")
        self._lock = threading.Lock()
        with self._errors("cannot open it"):
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._refuse_foreign()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite's errors (a damaged, truncated or read-only file) as one naming the log."""
        try:
            yield
        except sqlite3.Error as error:
            with contextlib.suppress(sqlite3.Error):
                if getattr(self, "_db", None) is not None and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            raise PredictionLogError(f"{self.path}: prediction log: {doing} ({error})") from None

    def _refuse_foreign(self) -> None:
        """Another program's SQLite file is left as it was, not given our tables."""
        tables = {row[0] for row in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}  # fmt: skip
        if tables and "predictions" not in tables:
            raise PredictionLogError(f"{self.path}: a SQLite database without a predictions "
                                     "table: not a prediction log")  # fmt: skip

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path}: prediction log schema {version} is newer than this "
                    f"anomalyops understands ({SCHEMA_VERSION})"
                )
            old = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='predictions'"
            ).fetchone()
            script = MIGRATE_V1.format(schema=SCHEMA) if old and version < 2 else SCHEMA
            self._db.executescript(
                f"BEGIN; {script}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )

    def _keep(self, data: bytes, suffix: str) -> str:
        """Write a file under the files folder (whole or not at all); its relative name."""
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        relative = f"{day}/{uuid.uuid4().hex}{suffix}"
        target = self.files / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
        return relative

    def write(self, records: list[PredictionRecord]) -> list[int]:
        """Log RECORDS (their files first, then the rows in one transaction); their ids."""
        rows = []
        for r in records:
            if r.label not in LABELS:
                raise ValueError(f"prediction label must be one of {LABELS}, got {r.label!r}")
            image = self._keep(r.image, r.image_suffix) if r.image is not None else None
            anomaly_map = None
            if r.anomaly_map is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(r.anomaly_map, dtype=np.float16))
                anomaly_map = self._keep(buffer.getvalue(), ".npy")
            rows.append(
                (_now(), r.variant, r.line, r.model_version, r.model_sha256, r.score,
                 r.threshold, r.label, r.brightness, r.contrast, r.sharpness, r.source_size,
                 image, anomaly_map)
            )  # fmt: skip
        with self._lock, self._errors("cannot write predictions"):
            self._db.execute("BEGIN")
            ids = [
                self._db.execute(
                    f"INSERT INTO predictions ({', '.join(COLUMNS[1:])})"
                    f" VALUES ({', '.join('?' * (len(COLUMNS) - 1))})",
                    row,
                ).lastrowid
                for row in rows
            ]
            self._db.execute("COMMIT")
        return ids

    def _query(self, sql: str, parameters: tuple = ()) -> list[dict[str, Any]]:
        with self._lock, self._errors("cannot read it"):
            return [dict(row) for row in self._db.execute(sql, parameters).fetchall()]

    def get(self, prediction_id: int) -> dict[str, Any]:
        """One prediction with its latest verdict (None when unreviewed)."""
        rows = self._query(f"{_WITH_VERDICT} WHERE p.id = ?", (int(prediction_id),))
        if not rows:
            raise UnknownPredictionError(f"no prediction with id {prediction_id} in {self.path}")
        return rows[0]

    def recent(
        self,
        variant: str | None = None,
        limit: int = 100,
        since: str | None = None,
        until: str | None = None,
        label: str | None = None,
        verdict: str | None = None,
        line: str | None = None,
    ) -> list[dict[str, Any]]:
        """The newest predictions first, each with its latest verdict; every filter optional.

        `verdict` is 'false_alarm', 'confirmed_defect' or 'unreviewed'; times are ISO-8601.
        """
        clauses, parameters = [], []
        for column, value in (("p.variant", variant), ("p.label", label), ("p.line", line)):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if since is not None:
            clauses.append("p.time >= ?")
            parameters.append(since)
        if until is not None:
            clauses.append("p.time < ?")
            parameters.append(until)
        if verdict == "unreviewed":
            clauses.append("v.verdict IS NULL")
        elif verdict is not None:
            clauses.append("v.verdict = ?")
            parameters.append(verdict)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        parameters.append(max(0, int(limit)))
        return self._query(f"{_WITH_VERDICT}{where} ORDER BY p.id DESC LIMIT ?", tuple(parameters))

    def window(
        self, variant: str, size: int, model_version: str | None = None
    ) -> list[dict[str, Any]]:
        """The last SIZE scored predictions of VARIANT (oldest first): a drift check's input.

        With MODEL_VERSION, only rows that version scored: a drift check compares the
        champion's own predictions with the champion's own reference.
        """
        version_clause, parameters = "", [variant]
        if model_version is not None:
            version_clause = " AND model_version = ?"
            parameters.append(str(model_version))
        rows = self._query(
            f"SELECT * FROM predictions WHERE variant = ? AND label != 'unusable'{version_clause}"
            " ORDER BY id DESC LIMIT ?",
            (*parameters, max(0, int(size))),
        )
        return rows[::-1]

    def mark(self, prediction_id: int, verdict: str, reviewer: str, note: str = "") -> dict:
        """Record a reviewer's verdict on a logged prediction; the stored verdict row."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        reviewer = (reviewer or "").strip()
        if not reviewer or len(reviewer) > MAX_REVIEWER:
            raise ValueError(f"reviewer must be 1 to {MAX_REVIEWER} characters, got {reviewer!r}")
        if len(note) > MAX_NOTE:
            raise ValueError(f"note must be at most {MAX_NOTE} characters")
        with self._lock, self._errors("cannot record the verdict"):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if not self._db.execute(
                    "SELECT 1 FROM predictions WHERE id = ?", (int(prediction_id),)
                ).fetchone():
                    raise UnknownPredictionError(
                        f"no prediction with id {prediction_id} in {self.path}"
                    )
                row_id = self._db.execute(
                    "INSERT INTO verdicts (prediction_id, verdict, reviewer, time, note)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (int(prediction_id), verdict, reviewer, _now(), note),
                ).lastrowid
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            row = self._db.execute("SELECT * FROM verdicts WHERE id = ?", (row_id,)).fetchone()
        return dict(row)

    def reviewed(self, variant: str, verdict: str) -> list[dict[str, Any]]:
        """Predictions of VARIANT whose latest verdict is VERDICT, oldest first."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        sql = f"{_WITH_VERDICT} WHERE p.variant = ? AND v.verdict = ? ORDER BY p.id"
        return self._query(sql, (variant, verdict))

    def file(self, relative: str | None) -> Path | None:
        """The path of a kept image or map named by a row (None when none was kept)."""
        if not relative:
            return None
        path = (self.files / relative).resolve()
        if self.files.resolve() not in path.parents:
            raise ValueError(f"{relative!r} is not inside {self.files}")
        return path

    def prune(self, before: str) -> int:
        """Delete unreviewed predictions older than BEFORE (ISO-8601) and their files.

        Reviewed ones stay: retraining and the gate still need them. Returns rows deleted.
        """
        with self._lock, self._errors("cannot prune it"):
            self._db.execute("BEGIN IMMEDIATE")
            doomed = self._db.execute(
                "SELECT id, image_file, map_file FROM predictions WHERE time < ? AND id NOT IN"
                " (SELECT prediction_id FROM verdicts)",
                (before,),
            ).fetchall()
            self._db.executemany("DELETE FROM predictions WHERE id = ?", [(r[0],) for r in doomed])
            self._db.execute("COMMIT")
        for row in doomed:  # after the commit: a crash leaves orphan files, never lost rows
            for relative in (row[1], row[2]):
                if relative:
                    (self.files / relative).unlink(missing_ok=True)
        return len(doomed)

    def count(self, variant: str | None = None) -> int:
        sql, parameters = "SELECT COUNT(*) AS n FROM predictions", ()
        if variant is not None:
            sql, parameters = f"{sql} WHERE variant = ?", (variant,)
        return self._query(sql, parameters)[0]["n"]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# Each prediction with its latest verdict (verdict ids grow, so the max id is the latest).
_WITH_VERDICT = """
SELECT p.*, v.verdict AS verdict, v.reviewer AS reviewer, v.time AS verdict_time,
       v.note AS verdict_note
FROM predictions p
LEFT JOIN verdicts v ON v.id = (SELECT MAX(id) FROM verdicts WHERE prediction_id = p.id)
"""

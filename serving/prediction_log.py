"""Durable record of every prediction, the input of drift monitoring (SQLite locally).

Schema, table `predictions` (one row per scored image, committed before the answer):

| column      | type    | meaning                                                  |
|-------------|---------|----------------------------------------------------------|
| id          | INTEGER | row id                                                   |
| time        | TEXT    | UTC ISO-8601 time of the prediction                      |
| variant     | TEXT    | product variant = Triton model name                      |
| score       | REAL    | raw anomaly score from the model                         |
| threshold   | REAL    | image threshold applied (after any per-request override) |
| label       | TEXT    | 'good' or 'anomalous'                                    |
| image_mean  | REAL    | mean pixel value of the model input (0-255)              |
| image_std   | REAL    | pixel standard deviation of the model input              |
| source_size | TEXT    | "WxH" of the image as received, before resizing          |
| model_sha256| TEXT    | sha256 of the model.onnx that scored it (from model.json)|
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    variant TEXT NOT NULL,
    score REAL NOT NULL,
    threshold REAL NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('good', 'anomalous')),
    image_mean REAL NOT NULL,
    image_std REAL NOT NULL,
    source_size TEXT,
    model_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS predictions_variant_time ON predictions (variant, time);
"""


@dataclass(frozen=True)
class PredictionRecord:
    variant: str
    score: float
    threshold: float
    label: str
    image_mean: float
    image_std: float
    source_size: str | None = None
    model_sha256: str | None = None


class PredictionLog:
    """Append-only SQLite log; WAL mode so a drift job can read while serving writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def write(self, records: list[PredictionRecord]) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        rows = [
            (now, r.variant, r.score, r.threshold, r.label, r.image_mean, r.image_std,
             r.source_size, r.model_sha256)
            for r in records
        ]  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO predictions (time, variant, score, threshold, label, image_mean,"
                " image_std, source_size, model_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

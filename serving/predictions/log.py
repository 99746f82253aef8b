"""Durable record of every prediction and of what reviewers said about it.

Drift checks read the predictions, the review page and `anomalyops review` write
verdicts, and retraining reads both (false alarms join the normal set, confirmed defects
the evaluation set), so the images are kept too. The rows live in a database
(`serving/predictions/database.py`: SQLite by default, PostgreSQL where many processes
share one log), the images and maps in a file store (`serving/predictions/files.py`: a
folder beside a SQLite log, or a bucket) under keys the rows hold.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, IntegrityError

from anomalyops.serving.predictions.database import (
    LABELS,
    SCHEMA_VERSION,
    VERDICTS,
    PredictionLogError,
    connect,
    database_url,
    migrate,
    predictions,
    verdicts,
)
from anomalyops.serving.predictions.files import FileStore, LocalFiles, file_store

__all__ = ["LABELS", "SCHEMA_VERSION", "VERDICTS", "PredictionLog", "PredictionLogError",
           "PredictionRecord"]  # fmt: skip
MAX_REVIEWER = 100
MAX_NOTE = 1000


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


# The latest verdict of each prediction (verdict ids grow, so the max id is the latest).
_marks = verdicts.alias("marks")
_latest = (
    select(func.max(_marks.c.id))
    .where(_marks.c.prediction_id == predictions.c.id)
    .correlate(predictions)
    .scalar_subquery()
)
_WITH_VERDICT = select(
    predictions,
    verdicts.c.verdict,
    verdicts.c.reviewer,
    verdicts.c.time.label("verdict_time"),
    verdicts.c.note.label("verdict_note"),
).select_from(predictions.outerjoin(verdicts, verdicts.c.id == _latest))


class PredictionLog:
    """Append-only log at LOCATION: a path or `sqlite:///path` (SQLite), or `postgresql://`.

    FILES is where kept images and maps go: a folder or a bucket URI (default: the folder
    `<path>.files` beside a SQLite log; a PostgreSQL log keeps images only when given one).
    With CREATE false, a log that does not exist yet is an error naming it (readers such
    as the drift check must not start an empty one).
    """

    def __init__(
        self, location: str | Path, files: str | Path | None = None, create: bool = True
    ) -> None:
        self.url = database_url(location)
        parsed = make_url(self.url)
        self.path = Path(parsed.database) if parsed.drivername == "sqlite" else None
        self.where = str(self.path) if self.path else parsed.render_as_string()
        if files is None and self.path is not None:
            files = self.path.with_name(self.path.name + ".files")
        self.files: FileStore | None = file_store(files) if files is not None else None
        self._engine = connect(self.url, create)
        try:
            migrate(self._engine, self.where, create)
        except DatabaseError as error:
            self._engine.dispose()
            reason = str(error.orig or error).strip().splitlines()[0]
            if self.path is not None:  # a damaged, truncated or read-only SQLite file
                raise PredictionLogError(f"{self.where}: prediction log: cannot open it "
                                         f"({reason})") from None  # fmt: skip
            message = f"{self.where}: cannot open the prediction log: {reason}"
            raise ConnectionError(message) from None
        except BaseException:
            self._engine.dispose()
            raise

    @contextmanager
    def _transaction(self, write: bool = False) -> Iterator[Connection]:
        try:
            connection = self._engine.connect().execution_options(write=write)
            with connection, connection.begin():
                yield connection
        except IntegrityError:  # a constraint the caller handles (a pruned prediction)
            raise
        except DatabaseError as error:  # damaged pages found only when read, a full disk
            reason = str(error.orig or error).strip().splitlines()[0]
            raise PredictionLogError(f"{self.where}: prediction log: {reason}") from None

    def _keep(self, data: bytes, suffix: str) -> str:
        if self.files is None:
            raise ValueError(
                f"{self.where}: no file store for kept images; give the log a folder or "
                "bucket URI for them, or keep none"
            )
        return self.files.put(data, suffix)

    def write(self, records: list[PredictionRecord]) -> list[int]:
        """Log RECORDS (their files first, then the rows in one transaction); their ids."""
        rows = []
        for r in records:
            if r.label not in LABELS:
                raise ValueError(f"prediction label must be one of {LABELS}, got {r.label!r}")
            anomaly_map = None
            if r.anomaly_map is not None:
                buffer = io.BytesIO()
                np.save(buffer, np.asarray(r.anomaly_map, dtype=np.float16))
                anomaly_map = self._keep(buffer.getvalue(), ".npy")
            rows.append(
                {"time": _now(), "variant": r.variant, "line": r.line,
                 "model_version": r.model_version, "model_sha256": r.model_sha256,
                 "score": r.score, "threshold": r.threshold, "label": r.label,
                 "brightness": r.brightness, "contrast": r.contrast, "sharpness": r.sharpness,
                 "source_size": r.source_size, "map_file": anomaly_map,
                 "image_file": self._keep(r.image, r.image_suffix) if r.image is not None
                 else None}
            )  # fmt: skip
        if not rows:
            return []
        statement = insert(predictions).returning(predictions.c.id, sort_by_parameter_order=True)
        with self._transaction(write=True) as connection:
            return list(connection.execute(statement, rows).scalars())

    def _query(self, statement: Any) -> list[dict[str, Any]]:
        with self._transaction() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]

    def get(self, prediction_id: int) -> dict[str, Any]:
        """One prediction with its latest verdict (None when unreviewed)."""
        rows = self._query(_WITH_VERDICT.where(predictions.c.id == int(prediction_id)))
        if not rows:
            raise UnknownPredictionError(f"no prediction with id {prediction_id} in {self.where}")
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
        statement = _WITH_VERDICT
        p = predictions.c
        for column, value in ((p.variant, variant), (p.label, label), (p.line, line)):
            if value is not None:
                statement = statement.where(column == value)
        if since is not None:
            statement = statement.where(p.time >= since)
        if until is not None:
            statement = statement.where(p.time < until)
        if verdict == "unreviewed":
            statement = statement.where(verdicts.c.verdict.is_(None))
        elif verdict is not None:
            statement = statement.where(verdicts.c.verdict == verdict)
        return self._query(statement.order_by(p.id.desc()).limit(max(0, int(limit))))

    def window(
        self, variant: str, size: int, model_version: str | None = None
    ) -> list[dict[str, Any]]:
        """The last SIZE scored predictions of VARIANT (oldest first): a drift check's input.

        With MODEL_VERSION, only rows that version scored: a drift check compares the
        champion's own predictions with the champion's own reference.
        """
        p = predictions.c
        statement = select(predictions).where(p.variant == variant, p.label != "unusable")
        if model_version is not None:
            statement = statement.where(p.model_version == str(model_version))
        rows = self._query(statement.order_by(p.id.desc()).limit(max(0, int(size))))
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
        for field, text in (("reviewer", reviewer), ("note", note)):
            hidden = [c for c in text if unicodedata.category(c) in ("Cc", "Cf")]
            if hidden:  # NUL, ESC, newlines, RTL overrides: they forge or hide what is shown
                raise ValueError(f"{field} must not hold control or formatting characters, "
                                 f"got {hidden[0]!r}")  # fmt: skip
        unknown = UnknownPredictionError(f"no prediction with id {prediction_id} in {self.where}")
        row = {"prediction_id": int(prediction_id), "verdict": verdict, "reviewer": reviewer,
               "time": _now(), "note": note}  # fmt: skip
        try:
            with self._transaction(write=True) as connection:
                found = connection.execute(
                    select(predictions.c.id).where(predictions.c.id == int(prediction_id))
                ).first()
                if found is None:
                    raise unknown
                stored = connection.execute(insert(verdicts).returning(verdicts), row).one()
        except IntegrityError:  # the prediction was pruned between the look-up and the insert
            raise unknown from None
        return dict(stored._mapping)

    def reviewed(self, variant: str, verdict: str) -> list[dict[str, Any]]:
        """Predictions of VARIANT whose latest verdict is VERDICT, oldest first."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        return self._query(
            _WITH_VERDICT.where(predictions.c.variant == variant, verdicts.c.verdict == verdict)
            .order_by(predictions.c.id)
        )  # fmt: skip

    def read_file(self, key: str | None) -> bytes | None:
        """The bytes of a kept image or map named by a row (None when none was kept)."""
        if not key or self.files is None:
            return None
        return self.files.get(key)

    def file(self, key: str | None) -> Path | None:
        """The local path of a kept file (None when none was kept); local stores only."""
        if not key:
            return None
        if not isinstance(self.files, LocalFiles):
            raise ValueError(f"{self.where}: kept files are in {self.files and self.files.location}"
                             ", not on this machine; read them with read_file")  # fmt: skip
        return self.files.path(key)

    def prune(self, before: str) -> int:
        """Delete unreviewed predictions older than BEFORE (ISO-8601) and their files.

        Reviewed ones stay: retraining and the gate still need them. Returns rows deleted.
        Files go after the commit: a crash leaves orphan files (`prune_files` removes
        them), never rows whose images are gone.
        """
        p = predictions.c
        reviewed = select(verdicts.c.id).where(verdicts.c.prediction_id == p.id).exists()
        statement = (
            predictions.delete()
            .where(p.time < before, ~reviewed)
            .returning(p.id, p.image_file, p.map_file)
        )
        with self._transaction(write=True) as connection:
            doomed = connection.execute(statement).all()
        if self.files is not None:
            for row in doomed:
                for key in (row.image_file, row.map_file):
                    if key:
                        self.files.delete(key)
        return len(doomed)

    def prune_files(self, older_than: str) -> int:
        """Delete kept files of days before OLDER_THAN (ISO) that no row names; the count.

        What `prune` leaves behind when it is stopped between its commit and the deletes,
        and files of writes that failed after storing them. A file whose row is still
        being written is seconds old, never days, so only earlier days are candidates.
        """
        if self.files is None:
            return 0
        day = datetime.fromisoformat(older_than[:10]).date()
        candidates = {key for key in self.files.stored_keys() if key[:10] < day.isoformat()}
        if not candidates:
            return 0
        p = predictions.c
        # A row is written after its files, so rows naming a candidate are older than the
        # day after the newest candidate day: after `prune` that is mostly reviewed rows.
        until = (day + timedelta(days=1)).isoformat()
        named: set[str] = set()
        with self._transaction() as connection:
            for row in connection.execute(select(p.image_file, p.map_file).where(p.time < until)):
                named.update(row)
        orphans = candidates - named
        for key in orphans:
            self.files.delete(key)
        return len(orphans)

    def count(self, variant: str | None = None) -> int:
        """Rows in the log (of VARIANT when given)."""
        statement = select(func.count()).select_from(predictions)
        if variant is not None:
            statement = statement.where(predictions.c.variant == variant)
        with self._transaction() as connection:
            return connection.execute(statement).scalar_one()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

"""Where the prediction log lives: one SQLAlchemy Core schema on SQLite or PostgreSQL.

A database URL picks the store: `sqlite:///path` (or a plain path) is the embedded
default, one file on one machine; `postgresql://user:password@host/db` is the store a
cluster shares (every transformer replica, the review page and the drift job write and
read it at once; SQLite's WAL mode does not work over a network filesystem). The same
tables, indexes, statements and migrations run on both.

Schema version 2, table `predictions`, one row per scored image, committed before the
answer:

| column        | type    | meaning                                                        |
|---------------|---------|----------------------------------------------------------------|
| id            | integer | prediction id (what a verdict names), grows with each insert   |
| time          | text    | UTC ISO-8601 time of the prediction                            |
| variant       | text    | product variant = registered model = Triton model name         |
| line          | text    | production line that sent the image ('' when not said)         |
| model_version | text    | registered version that scored it (Triton's response says)     |
| model_sha256  | text    | sha256 of that version's model.onnx                            |
| score         | real    | raw anomaly score (unusable frames too; NULL when not computed) |
| threshold     | real    | image threshold applied (after any per-request override)       |
| label         | text    | 'good', 'anomalous' or 'unusable' (outside the training images) |
| brightness    | real    | mean grey level of the model input (serving/images/statistics.py) |
| contrast      | real    | grey-level standard deviation of the model input               |
| sharpness     | real    | Laplacian variance of the model input                          |
| source_size   | text    | "WxH" of the image as received, before resizing                |
| image_file    | text    | key of the image as received in the files store, or NULL       |
| map_file      | text    | key of the anomaly map (float16 .npy) in the files store, or NULL |

Table `verdicts`: id, prediction_id (→ predictions.id), verdict ('false_alarm' or
'confirmed_defect'), reviewer, time, note. Table `log_schema`: the schema version (SQLite
logs written before it existed kept it in `PRAGMA user_version`). Version-1 logs (SQLite
only) are migrated in place on open.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import NullPool

from anomalyops.serving.contract.labels import LABELS

SCHEMA_VERSION = 2
VERDICTS = ("false_alarm", "confirmed_defect")
# SQLite's AUTOINCREMENT keeps ids of pruned rows from coming back (a verdict names one).
ID = BigInteger().with_variant(Integer, "sqlite")
ENV_PREFIX = "env:"  # a location read from the environment: env:ANOMALYOPS_PREDICTION_LOG
BUSY_TIMEOUT_S = 30  # how long a SQLite writer waits for another's transaction to end

metadata = MetaData()
predictions = Table(
    "predictions", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("time", Text, nullable=False),
    Column("variant", Text, nullable=False),
    Column("line", Text, nullable=False, server_default=""),
    Column("model_version", Text),
    Column("model_sha256", Text),
    Column("score", Double),
    Column("threshold", Double),
    Column("label", Text, CheckConstraint(f"label IN {LABELS}"), nullable=False),
    Column("brightness", Double),
    Column("contrast", Double),
    Column("sharpness", Double),
    Column("source_size", Text),
    Column("image_file", Text),
    Column("map_file", Text),
    Index("predictions_variant_id", "variant", "id"),
    Index("predictions_variant_time", "variant", "time"),
    Index("predictions_time", "time"),
    # a drift check's window of one model version (tests/benchmarks/drift.py: a new
    # champion's 500 rows under a million older ones took 2.1 s to find without it)
    Index("predictions_variant_version_id", "variant", "model_version", "id"),
    sqlite_autoincrement=True,
)  # fmt: skip
verdicts = Table(
    "verdicts", metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("prediction_id", ID, ForeignKey("predictions.id"), nullable=False),
    Column("verdict", Text, CheckConstraint(f"verdict IN {VERDICTS}"), nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("time", Text, nullable=False),
    Column("note", Text, nullable=False, server_default=""),
    Index("verdicts_prediction", "prediction_id", "id"),
    sqlite_autoincrement=True,
)  # fmt: skip
log_schema = Table("log_schema", metadata, Column("version", Integer, nullable=False))

# Version 1 had image_mean/image_std (now brightness/contrast) and no 'unusable' label; a
# CHECK constraint cannot be changed in SQLite, so the table is rebuilt in one transaction.
V1_COPY = """
INSERT INTO predictions (id, time, variant, model_sha256, score, threshold, label,
                         brightness, contrast, source_size)
    SELECT id, time, variant, model_sha256, score, threshold, label, image_mean, image_std,
           source_size FROM predictions_v1
"""


def database_url(location: str | Path) -> str:
    """The SQLAlchemy URL of a log LOCATION: a URL, a plain path meaning SQLite, or `env:NAME`.

    `postgresql://` is taken with the psycopg 3 driver (the one in requirements.lock).
    `env:NAME` is the URL held in environment variable NAME: on a cluster a Secret puts
    it there, so a password never travels as a pipeline run parameter or command line.
    """
    text_location = str(location)
    if text_location.startswith(ENV_PREFIX):
        text_location = _from_environment(text_location.removeprefix(ENV_PREFIX))
    if "://" not in text_location:
        return f"sqlite:///{Path(text_location)}"
    try:
        url = make_url(text_location)
    except (ArgumentError, ValueError) as error:
        shown = re.sub(r"://[^@/]*@", "://***@", text_location)  # no password in messages
        raise ValueError(f"{shown}: not a database URL ({error})") from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if url.drivername == "sqlite" and url.database:
        return text_location
    raise ValueError(
        f"{url.render_as_string()}: the prediction log takes sqlite:///PATH, a plain path "
        "or postgresql://USER:PASSWORD@HOST/DB"
    )


def _from_environment(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{ENV_PREFIX}{name[:80]!r}: not an environment variable name")
    value = os.environ.get(name, "")
    if not value:
        raise ValueError(f"{ENV_PREFIX}{name}: environment variable {name} is not set "
                         "(on a cluster a Secret sets it, e.g. anomalyops-storage)")  # fmt: skip
    if value.startswith(ENV_PREFIX):
        raise ValueError(f"{ENV_PREFIX}{name}: {name} names another variable; give the URL")
    return value


class PredictionLogError(RuntimeError):
    """The log cannot be used (damaged, truncated, read-only, another program's database)."""


def connect(url: str, create: bool) -> Engine:
    """An engine on URL (from `database_url`); SQLite gets WAL, FULL sync and foreign keys.

    With CREATE false a missing SQLite file is an error naming it, never a new empty log.
    """
    if url.startswith("sqlite"):
        path = Path(make_url(url).database)
        if not create and not path.is_file():
            raise FileNotFoundError(f"{path}: no prediction log there")
        if path.is_file() and path.stat().st_size:
            _refuse_foreign(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection per checkout; SQLite connections are cheap, and none is shared
        # between the threads of a server.
        engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": BUSY_TIMEOUT_S})

        @event.listens_for(engine, "connect")
        def _sqlite_settings(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy's begin event says BEGIN
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                dbapi_connection.execute(f"PRAGMA {pragma}")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Connection) -> None:
            # A writer takes the lock at BEGIN: a deferred one that upgrades later can fail
            # with "database is locked" at once instead of waiting out the busy timeout.
            write = connection.get_execution_options().get("write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


def _refuse_foreign(path: Path) -> None:
    """Read-only look before WAL mode rewrites the header: another program's SQLite file
    (or a file that is no database) is refused and left byte for byte as it was."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as look:
            tables = {row[0] for row in look.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}  # fmt: skip
    except sqlite3.Error as error:
        raise PredictionLogError(f"{path}: prediction log: cannot open it ({error})") from None
    if tables and not tables & {"predictions", "log_schema"}:
        raise PredictionLogError(f"{path}: a SQLite database without a predictions table: "
                                 "not a prediction log (left as it was)")  # fmt: skip


def migrate(engine: Engine, where: str, create: bool) -> None:
    """Bring the schema to SCHEMA_VERSION (tables, indexes, v1 -> v2), once, under a lock."""
    with engine.connect().execution_options(write=True) as connection, connection.begin():
        if engine.dialect.name == "postgresql":
            # replicas starting together: one migrates, the others wait and find it done
            connection.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        tables = set(inspect(connection).get_table_names())
        if tables and not tables & {"predictions", "log_schema"}:
            raise PredictionLogError(f"{where}: a database without a predictions table: not "
                                     "a prediction log (left as it was)")  # fmt: skip
        if not create and "predictions" not in tables:
            raise FileNotFoundError(f"{where}: no prediction log there (no predictions table)")
        version = _version(connection, tables)
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{where}: prediction log schema {version} is newer than this anomalyops "
                f"understands ({SCHEMA_VERSION})"
            )
        if "predictions" in tables and version < 2:
            connection.execute(text("ALTER TABLE predictions RENAME TO predictions_v1"))
            connection.execute(text("DROP INDEX IF EXISTS predictions_variant_time"))
            predictions.create(connection)
            connection.execute(text(V1_COPY))
            connection.execute(text("DROP TABLE predictions_v1"))
        metadata.create_all(connection, checkfirst=True)
        for table in (predictions, verdicts):  # indexes added since a table was created
            for index in table.indexes:
                index.create(connection, checkfirst=True)
        if version != SCHEMA_VERSION or "log_schema" not in tables:
            connection.execute(log_schema.delete())
            connection.execute(log_schema.insert().values(version=SCHEMA_VERSION))


def _version(connection: Connection, tables: set[str]) -> int:
    if "log_schema" in tables:
        return connection.execute(log_schema.select()).scalar() or 0
    if connection.dialect.name == "sqlite":
        return connection.exec_driver_sql("PRAGMA user_version").scalar()
    return 0

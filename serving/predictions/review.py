"""Review page for plant QA: the latest flagged images of a line, marked in one key press.

This module holds what the page is made of (filters, verdicts, references, limits);
serving/predictions/routes.py the routes and serving/predictions/app.py the app.

One small FastAPI app, run beside the transformer as its own process (`anomalyops review
serve`), reading and writing the same prediction log: the page shows each flagged image
with its anomaly map, score, threshold and model version; a click or a key stores a
false alarm or a confirmed defect through `PredictionLog.mark`, with who and when; it
counts false alarms per day and draws the logged scores against the training reference.

There is no login here: the app runs behind the cluster's ingress and authentication,
which names the reviewer in a header (X-Forwarded-User by default) and must strip that
header from outside requests. Without the header the page asks for a name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, Field, field_validator

from anomalyops.serving.contract.reference import (
    REFERENCE_FILE,
    Reference,
    ReferenceError,
    load_reference,
)
from anomalyops.serving.predictions.log import (
    MAX_NOTE,
    MAX_REVIEWER,
    PredictionLog,
)
from anomalyops.serving.triton.repository import served_version

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
USER_HEADER = "X-Forwarded-User"
MAX_LIMIT = 100  # cards per page
SUMMARY_DAYS = 14
SUMMARY_ROWS = 20_000  # flagged rows read for the per-day counts
HISTOGRAM_ROWS = 5_000  # logged scores drawn against the reference
DISPLAY_SIZE = 384  # longest side of a picture on the page
MAX_ID = 2**63 - 1  # SQLite's integer range
MAX_BODY = 8192  # a verdict with the longest note fits in a fraction of this
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self'; script-src 'self'; style-src 'self';"
        " connect-src 'self'; form-action 'self'; base-uri 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Filters(BaseModel):
    """The page's query: every field bounded; an empty field means 'any'."""

    variant: str | None = Field(default=None, max_length=100)
    line: str | None = Field(default=None, max_length=100)
    label: Literal["anomalous", "good", "unusable", "any"] = "anomalous"
    verdict: Literal["any", "unreviewed", "false_alarm", "confirmed_defect"] = "any"
    since: str | None = Field(default=None, max_length=40)
    until: str | None = Field(default=None, max_length=40)
    limit: int = Field(default=24, ge=1, le=MAX_LIMIT)

    @field_validator("variant", "line", "since", "until", mode="before")
    @classmethod
    def _blank_is_any(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("since", "until")
    @classmethod
    def _utc_time(cls, value: str | None) -> str | None:
        """An ISO date or time (UTC when no zone is given), in the log's own format."""
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError("expected an ISO date or time, e.g. 2026-11-24T08:00") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds")

    def query(self) -> dict[str, Any]:
        """Keyword arguments for PredictionLog.recent."""
        return {
            "variant": self.variant,
            "line": self.line,
            "label": None if self.label == "any" else self.label,
            "verdict": None if self.verdict == "any" else self.verdict,
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
        }


class VerdictBody(BaseModel):
    verdict: Literal["false_alarm", "confirmed_defect"]
    reviewer: str | None = Field(default=None, max_length=MAX_REVIEWER)
    note: str = Field(default="", max_length=MAX_NOTE)


class References:
    """The reference a variant's scores are drawn against, re-read when its file changes.

    Either one reference.json for every variant (`--reference`), or the Triton model
    repository, where the version folder each variant serves holds its own.
    """

    def __init__(self, reference: str | Path | None = None, repository: str | Path | None = None):
        self.reference = Path(reference) if reference else None
        self.repository = Path(repository) if repository else None
        self._cache: dict[Path, tuple[float, Reference]] = {}
        if self.reference is not None:
            self.load(self._file(self.reference))  # a wrong path fails at start

    @staticmethod
    def _file(path: Path) -> Path:
        return path / REFERENCE_FILE if path.is_dir() else path

    def path(self, variant: str | None) -> Path | None:
        if self.reference is not None:
            return self._file(self.reference)
        if self.repository is None or variant is None:
            return None
        version = served_version(self.repository / variant)
        return self.repository / variant / str(version) / REFERENCE_FILE if version else None

    def load(self, path: Path) -> Reference:
        mtime = path.stat().st_mtime if path.is_file() else -1.0
        cached = self._cache.get(path)
        if cached is None or cached[0] != mtime:
            self._cache[path] = (mtime, load_reference(path))
        return self._cache[path][1]

    def scores(self, variant: str | None) -> tuple[list[float] | None, str]:
        """Reference scores for VARIANT and a note on where they came from (or why none)."""
        path = self.path(variant)
        if path is None:
            why = "choose a variant" if self.repository else "no --reference given"
            return None, f"no reference ({why})"
        try:
            return self.load(path).scores, f"held-out good images of {path}"
        except ReferenceError as error:
            return None, f"no reference: {error}"


def one_line(errors: Sequence[Any]) -> str:
    """Validation errors as one line naming each field: `query.limit: ...; body.verdict: ...`."""
    return "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in errors)


@dataclass
class Review:
    """What every route of one review app reads: the log, references and page settings."""

    log: PredictionLog
    references: References
    variant: str | None
    user_header: str
    pages: Environment = field(default_factory=lambda: Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=True))  # fmt: skip

"""Review page for plant QA: the latest flagged images of a line, marked in one key press.

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

import io
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader
from PIL import Image
from pydantic import BaseModel, Field, ValidationError, field_validator

from anomalyops.serving.contract.reference import (
    REFERENCE_FILE,
    Reference,
    ReferenceError,
    load_reference,
)
from anomalyops.serving.images.decode import ImageDecodeError, decode_image
from anomalyops.serving.images.heatmap import map_range, overlay
from anomalyops.serving.predictions.log import (
    MAX_NOTE,
    MAX_REVIEWER,
    PredictionLog,
    UnknownPredictionError,
)
from anomalyops.serving.predictions.stats import daily_false_alarms, score_histogram
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
PredictionId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


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


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A log row as the page and API show it: file names become URLs."""
    shown = {k: v for k, v in row.items() if k not in ("image_file", "map_file")}
    shown["image_url"] = f"predictions/{row['id']}/image.png" if row["image_file"] else None
    shown["overlay_url"] = f"predictions/{row['id']}/overlay.png" if row["image_file"] else None
    return shown


def _png(picture: np.ndarray) -> Response:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    # Kept files never change: the browser may keep the picture.
    headers = {"Cache-Control": "private, max-age=86400"}
    return Response(buffer.getvalue(), media_type="image/png", headers=headers)


def _shrink(image: np.ndarray) -> np.ndarray:
    height, width = image.shape[:2]
    scale = DISPLAY_SIZE / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def create_app(
    log_path: str | Path,
    references: References | None = None,
    variant: str | None = None,
    user_header: str = USER_HEADER,
) -> FastAPI:
    """The review app on the prediction log at LOG_PATH; VARIANT preselects the filter."""
    prediction_log = PredictionLog(log_path)
    references = references or References()
    pages = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    app = FastAPI(title="anomalyops review", docs_url=None, redoc_url=None)
    app.state.log = prediction_log
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        message = one_line(error.errors())
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": message}, status_code=422)
        return PlainTextResponse(f"bad request: {message}", status_code=422)

    def row_or_404(prediction_id: int) -> dict[str, Any]:
        try:
            return prediction_log.get(prediction_id)
        except UnknownPredictionError as error:
            raise HTTPException(404, str(error)) from None

    def summary(filters: Filters) -> list[dict[str, Any]]:
        since = (datetime.now(UTC) - timedelta(days=SUMMARY_DAYS)).date().isoformat()
        rows = prediction_log.recent(
            filters.variant, SUMMARY_ROWS, since=since, label="anomalous", line=filters.line
        )
        return [
            {"day": d.day, "flagged": d.flagged, "reviewed": d.reviewed,
             "false_alarms": d.false_alarms, "confirmed": d.confirmed, "share": d.share}
            for d in daily_false_alarms(rows)
        ]  # fmt: skip

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, filters: Annotated[Filters, Query()]) -> HTMLResponse:
        if variant and "variant" not in request.query_params:
            filters = filters.model_copy(update={"variant": variant})
        rows = [_public(row) for row in prediction_log.recent(**filters.query())]
        scored = prediction_log.recent(
            filters.variant, HISTOGRAM_ROWS, filters.since, filters.until, line=filters.line
        )
        reference, reference_note = references.scores(filters.variant)
        threshold = next((r["threshold"] for r in scored if r["threshold"] is not None), None)
        histogram = score_histogram([r["score"] for r in scored], reference, threshold)
        reviewer = request.headers.get(user_header, "").strip()[:MAX_REVIEWER]
        html = pages.get_template("review.html").render(
            filters=filters, rows=rows, days=summary(filters), histogram=histogram,
            reference_note=reference_note, reviewer=reviewer,
            shown_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            root=request.scope.get("root_path", "").rstrip("/"),
        )  # fmt: skip
        return HTMLResponse(html)

    @app.get("/api/predictions")
    def predictions(filters: Annotated[Filters, Query()]) -> list[dict[str, Any]]:
        return [_public(row) for row in prediction_log.recent(**filters.query())]

    @app.get("/api/predictions/{prediction_id}")
    def prediction(prediction_id: PredictionId) -> dict[str, Any]:
        return _public(row_or_404(prediction_id))

    @app.post("/api/predictions/{prediction_id}/verdict")
    async def mark(prediction_id: PredictionId, request: Request) -> dict[str, Any]:
        # JSON only: a cross-site form cannot send it without the browser asking first.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send the verdict as application/json")
        data = b""
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_BODY:
                raise HTTPException(413, f"a verdict is at most {MAX_BODY} bytes of JSON")
        try:
            body = VerdictBody.model_validate_json(data)
        except ValidationError as error:
            raise HTTPException(422, one_line(error.errors())) from None
        reviewer = request.headers.get(user_header, "").strip() or (body.reviewer or "").strip()
        if not reviewer:
            raise HTTPException(
                422, f"reviewer: give your name (no {user_header} header from the ingress)"
            )
        try:
            stored = prediction_log.mark(prediction_id, body.verdict, reviewer, body.note)
        except UnknownPredictionError as error:
            raise HTTPException(404, str(error)) from None
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        log.info("prediction %d marked %s by %s", prediction_id, body.verdict, reviewer)
        return stored

    @app.get("/api/summary")
    def false_alarms(filters: Annotated[Filters, Query()]) -> list[dict[str, Any]]:
        return summary(filters)

    @app.get("/predictions/{prediction_id}/image.png")
    def image(prediction_id: PredictionId) -> Response:
        return _png(_shrink(_kept_image(prediction_log, row_or_404(prediction_id))))

    @app.get("/predictions/{prediction_id}/overlay.png")
    def overlay_png(prediction_id: PredictionId) -> Response:
        row = row_or_404(prediction_id)
        picture = _shrink(_kept_image(prediction_log, row))
        map_path = prediction_log.file(row["map_file"])
        if map_path is None or not map_path.is_file():
            return _png(picture)  # no map kept: the image alone
        anomaly_map = np.load(map_path, allow_pickle=False).astype(np.float32).squeeze()
        if anomaly_map.ndim != 2:
            raise HTTPException(500, f"prediction {prediction_id}: anomaly map is not 2-D")
        height, width = picture.shape[:2]
        scaled = np.asarray(
            Image.fromarray(anomaly_map).resize((width, height), Image.Resampling.BILINEAR)
        )
        return _png(overlay(picture, scaled, *map_range(scaled)))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)  # browsers ask; nothing to show

    @app.get("/healthz")
    def health() -> dict[str, Any]:
        return {"status": "ok", "predictions": prediction_log.count()}

    return app


def _kept_image(prediction_log: PredictionLog, row: dict[str, Any]) -> np.ndarray:
    path = prediction_log.file(row["image_file"])
    if path is None or not path.is_file():
        raise HTTPException(404, f"prediction {row['id']}: no image was kept")
    try:
        return decode_image(path, f"prediction {row['id']}")
    except ImageDecodeError as error:
        raise HTTPException(422, str(error)) from None


def serve(
    log_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8090,
    reference: str | Path | None = None,
    repository: str | Path | None = None,
    variant: str | None = None,
    user_header: str = USER_HEADER,
    root_path: str = "",
) -> None:
    """Run the review app with uvicorn until interrupted.

    ROOT_PATH is the prefix the ingress serves it under (e.g. /review) and strips.
    """
    import uvicorn

    app = create_app(log_path, References(reference, repository), variant, user_header)
    print(
        f"review page on http://{host}:{port}/ for {app.state.log.path}"
        f" ({app.state.log.count()} predictions)",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, root_path=root_path, log_level="warning")

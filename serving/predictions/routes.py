"""The review app's routes: the page, the JSON API (predictions, verdicts, summary), pictures.

Each route reads its app's `Review` (serving/predictions/review.py) from the request, so
one module serves every app `create_app` builds.
"""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from pydantic import ValidationError

from anomalyops.serving import metrics
from anomalyops.serving.contract.labels import ANOMALOUS
from anomalyops.serving.images.decode import ImageDecodeError, decode_image
from anomalyops.serving.images.heatmap import map_range, overlay
from anomalyops.serving.predictions.log import MAX_REVIEWER, UnknownPredictionError
from anomalyops.serving.predictions.review import (
    DISPLAY_SIZE,
    HISTOGRAM_ROWS,
    MAX_BODY,
    MAX_ID,
    SUMMARY_DAYS,
    SUMMARY_ROWS,
    Filters,
    Review,
    VerdictBody,
    one_line,
)
from anomalyops.serving.predictions.stats import daily_false_alarms, score_histogram

log = logging.getLogger(__name__)
router = APIRouter()
PredictionId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


def review(request: Request) -> Review:
    return request.app.state.review


ReviewApp = Annotated[Review, Depends(review)]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A log row as the page and API show it: file names become URLs."""
    shown = {k: v for k, v in row.items() if k not in ("image_file", "map_file")}
    shown["image_url"] = f"predictions/{row['id']}/image.png" if row["image_file"] else None
    shown["overlay_url"] = f"predictions/{row['id']}/overlay.png" if row["image_file"] else None
    return shown


def _row_or_404(app: Review, prediction_id: int) -> dict[str, Any]:
    try:
        return app.log.get(prediction_id)
    except UnknownPredictionError as error:
        raise HTTPException(404, str(error)) from None


def _summary(app: Review, filters: Filters) -> list[dict[str, Any]]:
    since = (datetime.now(UTC) - timedelta(days=SUMMARY_DAYS)).date().isoformat()
    rows = app.log.recent(filters.variant, SUMMARY_ROWS, since=since, label=ANOMALOUS,
                          line=filters.line)  # fmt: skip
    return [
        {"day": d.day, "flagged": d.flagged, "reviewed": d.reviewed,
         "false_alarms": d.false_alarms, "confirmed": d.confirmed, "share": d.share}
        for d in daily_false_alarms(rows)
    ]  # fmt: skip


@router.get("/", response_class=HTMLResponse)
def page(request: Request, app: ReviewApp, filters: Annotated[Filters, Query()]) -> HTMLResponse:
    if app.variant and "variant" not in request.query_params:
        filters = filters.model_copy(update={"variant": app.variant})
    rows = [_public(row) for row in app.log.recent(**filters.query())]
    scored = app.log.recent(filters.variant, HISTOGRAM_ROWS, filters.since, filters.until,
                            line=filters.line)  # fmt: skip
    reference, reference_note = app.references.scores(filters.variant)
    threshold = next((r["threshold"] for r in scored if r["threshold"] is not None), None)
    histogram = score_histogram([r["score"] for r in scored], reference, threshold)
    reviewer = request.headers.get(app.user_header, "").strip()[:MAX_REVIEWER]
    html = app.pages.get_template("review.html").render(
        filters=filters, rows=rows, days=_summary(app, filters), histogram=histogram,
        reference_note=reference_note, reviewer=reviewer,
        shown_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        root=request.scope.get("root_path", "").rstrip("/"),
    )  # fmt: skip
    return HTMLResponse(html)


@router.get("/api/predictions")
def predictions(app: ReviewApp, filters: Annotated[Filters, Query()]) -> list[dict[str, Any]]:
    return [_public(row) for row in app.log.recent(**filters.query())]


@router.get("/api/predictions/{prediction_id}")
def prediction(app: ReviewApp, prediction_id: PredictionId) -> dict[str, Any]:
    return _public(_row_or_404(app, prediction_id))


@router.post("/api/predictions/{prediction_id}/verdict")
async def mark(app: ReviewApp, prediction_id: PredictionId, request: Request) -> dict[str, Any]:
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
    reviewer = request.headers.get(app.user_header, "").strip() or (body.reviewer or "").strip()
    if not reviewer:
        raise HTTPException(
            422, f"reviewer: give your name (no {app.user_header} header from the ingress)"
        )
    try:
        stored = app.log.mark(prediction_id, body.verdict, reviewer, body.note)
    except UnknownPredictionError as error:
        raise HTTPException(404, str(error)) from None
    except ValueError as error:
        raise HTTPException(422, str(error)) from None
    metrics.observe_verdict(_row_or_404(app, prediction_id)["variant"], body.verdict)
    log.info("prediction %d marked %s by %s", prediction_id, body.verdict, reviewer)
    return stored


@router.get("/api/summary")
def false_alarms(app: ReviewApp, filters: Annotated[Filters, Query()]) -> list[dict[str, Any]]:
    return _summary(app, filters)


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


def _kept_image(app: Review, row: dict[str, Any]) -> np.ndarray:
    data = app.log.read_file(row["image_file"])  # a folder or a bucket, as the log keeps them
    if data is None:
        raise HTTPException(404, f"prediction {row['id']}: no image was kept")
    try:
        return decode_image(data, f"prediction {row['id']}")
    except ImageDecodeError as error:
        raise HTTPException(422, str(error)) from None


@router.get("/predictions/{prediction_id}/image.png")
def image(app: ReviewApp, prediction_id: PredictionId) -> Response:
    return _png(_shrink(_kept_image(app, _row_or_404(app, prediction_id))))


@router.get("/predictions/{prediction_id}/overlay.png")
def overlay_png(app: ReviewApp, prediction_id: PredictionId) -> Response:
    row = _row_or_404(app, prediction_id)
    picture = _shrink(_kept_image(app, row))
    kept = app.log.read_file(row["map_file"])
    if kept is None:
        return _png(picture)  # no map kept: the image alone
    anomaly_map = np.load(io.BytesIO(kept), allow_pickle=False).astype(np.float32).squeeze()
    if anomaly_map.ndim != 2:
        raise HTTPException(500, f"prediction {prediction_id}: anomaly map is not 2-D")
    height, width = picture.shape[:2]
    scaled = np.asarray(
        Image.fromarray(anomaly_map).resize((width, height), Image.Resampling.BILINEAR)
    )
    return _png(overlay(picture, scaled, *map_range(scaled)))


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> Response:
    return Response(status_code=204)  # browsers ask; nothing to show


@router.get("/healthz")
def health(app: ReviewApp) -> dict[str, Any]:
    return {"status": "ok", "predictions": app.log.count()}

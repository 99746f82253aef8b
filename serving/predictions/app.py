"""The review app itself: FastAPI with security headers, one-line errors and the routes.

`anomalyops review serve` runs it beside the transformer, on the same prediction log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from anomalyops.serving.contract.names import check_name
from anomalyops.serving.metrics import metrics_app
from anomalyops.serving.predictions import routes
from anomalyops.serving.predictions.log import PredictionLog
from anomalyops.serving.predictions.review import (
    HERE,
    SECURITY_HEADERS,
    USER_HEADER,
    References,
    Review,
    one_line,
)


def create_app(
    log_path: str | Path,
    references: References | None = None,
    variant: str | None = None,
    user_header: str = USER_HEADER,
    files: str | None = None,
) -> FastAPI:
    """The review app on the prediction log at LOG_PATH (a path or a database URL; kept
    images in FILES, by default beside a SQLite log); VARIANT preselects the filter."""
    if variant is not None:
        check_name(variant)
    app = FastAPI(title="anomalyops review", docs_url=None, redoc_url=None)
    app.state.log = PredictionLog(log_path, files, create=False)
    app.mount("/metrics", metrics_app())  # verdicts by kind, for Prometheus
    app.state.review = Review(app.state.log, references or References(), variant, user_header)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(security_headers)
    app.exception_handler(RequestValidationError)(validation_error)
    app.include_router(routes.router)
    return app


async def security_headers(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    response.headers.update(SECURITY_HEADERS)
    return response


async def validation_error(request: Request, error: RequestValidationError) -> Response:
    message = one_line(error.errors())
    if request.url.path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=422)
    return PlainTextResponse(f"bad request: {message}", status_code=422)


def serve(
    log_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8090,
    reference: str | Path | None = None,
    repository: str | Path | None = None,
    variant: str | None = None,
    user_header: str = USER_HEADER,
    root_path: str = "",
    files: str | None = None,
) -> None:
    """Run the review app with uvicorn until interrupted.

    ROOT_PATH is the prefix the ingress serves it under (e.g. /review) and strips.
    """
    import uvicorn

    app = create_app(log_path, References(reference, repository), variant, user_header, files)
    print(
        f"review page on http://{host}:{port}/ for {app.state.log.where}"
        f" ({app.state.log.count()} predictions)",
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, root_path=root_path, log_level="warning")

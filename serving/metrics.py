"""Prometheus metrics of the serving side: what a plant's line, a reviewer and a drift check do.

The transformer runs in KServe's ModelServer, which already answers `GET /metrics` from
prometheus_client's default registry (kserve/protocol/rest/server.py, `metrics_handler`),
so the transformer's series live there and come out on its own port. The review page
mounts `metrics_app()`; `serve`'s front (serving/triton/front.py) answers `GET /metrics`
on a port of its own, `--metrics-port` (the bundled Triton's own metrics are off there). The drift
check is a batch job that ends before any scrape, so it pushes its gauges to a
Pushgateway (`push_drift`, `ANOMALYOPS_PUSHGATEWAY`), the pattern Prometheus documents
for batch jobs.

Names follow Prometheus's conventions (base units, `_total` counters). The chart's
PrometheusRule (charts/anomalyops/templates/prometheusrule.yaml) alerts on them; its
expressions are tested with `promtool test rules` (tests/charts/rules/).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_asgi_app,
    push_to_gateway,
)

PUSHGATEWAY_ENV = "ANOMALYOPS_PUSHGATEWAY"
# Request latency buckets (s): the serving benchmark's p50 is ~50 ms for one image, 360 ms
# for eight on a CPU; a GPU line answers in a few ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

PREDICTIONS = Counter(
    "anomalyops_predictions_total",
    "Images scored and logged, by the label they got (unusable: a frame outside the "
    "training images' bounds, e.g. a dead camera).",
    ["variant", "line", "model_version", "label"],
)
REQUESTS = Counter(
    "anomalyops_requests_total",
    "Prediction requests answered, by protocol and outcome (ok, rejected: 4xx, error: 5xx).",
    ["variant", "protocol", "outcome"],
)
LATENCY = Histogram(
    "anomalyops_request_duration_seconds",
    "Time from a prediction request's arrival to its answer (decode, Triton, label, log).",
    ["variant"],
    buckets=LATENCY_BUCKETS,
)
DECODE_REJECTIONS = Counter(
    "anomalyops_decode_rejections_total",
    "Images refused before scoring (too large, not an image, bad base64), by reason.",
    ["variant", "reason"],
)
FRONT_REQUESTS = Counter(
    "anomalyops_front_requests_total",
    "Requests at the plant port in front of Triton, by route (health, metadata, config, "
    "infer, refused: off the allow-list), model (only models Triton knows) and HTTP status.",
    ["route", "model", "code"],
)
FRONT_LATENCY = Histogram(
    "anomalyops_front_request_duration_seconds",
    "Time from a plant's request at the front to its answer (checks and Triton).",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
FRONT_HELD_BYTES = Gauge(
    "anomalyops_front_held_bytes",
    "Request body bytes the front holds at once (refused with 503 above its budget).",
)
VERDICTS = Counter(
    "anomalyops_verdicts_total",
    "Reviewers' verdicts stored, by kind (false_alarm, confirmed_defect).",
    ["variant", "verdict"],
)


def observe_prediction(variant: str, line: str, model_version: str | None, label: str) -> None:
    """Count one logged image (call once per row the transformer writes)."""
    PREDICTIONS.labels(variant, line or "", model_version or "", label).inc()


def observe_request(variant: str, protocol: str, outcome: str, seconds: float) -> None:
    """Count one answered request and its latency; OUTCOME is ok, rejected or error."""
    REQUESTS.labels(variant, protocol, outcome).inc()
    LATENCY.labels(variant).observe(seconds)


def observe_decode_rejection(variant: str, reason: str) -> None:
    """Count one image refused before scoring; REASON is a short fixed word, not a message."""
    DECODE_REJECTIONS.labels(variant, reason).inc()


def observe_front(route: str, model: str | None, code: int, seconds: float) -> None:
    """Count one request the front answered; MODEL only once Triton has said it knows it."""
    FRONT_REQUESTS.labels(route, model or "", str(code)).inc()
    FRONT_LATENCY.labels(route).observe(seconds)


def observe_verdict(variant: str, verdict: str) -> None:
    """Count one stored verdict (the review page and `anomalyops review mark`)."""
    VERDICTS.labels(variant, verdict).inc()


def metrics_app(registry: CollectorRegistry = REGISTRY) -> Any:
    """An ASGI app answering the text exposition format: `app.mount("/metrics", ...)`."""
    return make_asgi_app(registry)


def drift_registry(verdict: Mapping[str, Any]) -> CollectorRegistry:
    """A drift check's outcome as gauges in a registry of its own (what one push replaces).

    `anomalyops_drift_alert` is the alert state after the check (1 while drifting, through
    hysteresis), `anomalyops_drift_raised` 1 when this check raised a new alert,
    `anomalyops_drift_ratio` each column's distance over its threshold (1 = the mark).
    """
    registry = CollectorRegistry()
    variant = verdict["variant"]
    labels = ["variant"]
    Gauge("anomalyops_drift_alert", "Drift alert state after the last check (1: drifting).",
          labels, registry=registry).labels(variant).set(bool(verdict["drifting"]))  # fmt: skip
    Gauge("anomalyops_drift_raised", "1 when the last check raised a new drift alert.",
          labels, registry=registry).labels(variant).set(bool(verdict["drift"]))  # fmt: skip
    Gauge("anomalyops_drift_samples", "Logged predictions the last check compared.",
          labels, registry=registry).labels(variant).set(verdict.get("samples") or 0)  # fmt: skip
    Gauge("anomalyops_drift_last_check_timestamp_seconds", "When the last check ran.",
          labels, registry=registry).labels(variant).set_to_current_time()  # fmt: skip
    ratio = Gauge("anomalyops_drift_ratio", "Last drift distance over its threshold, per column.",
                  ["variant", "column"], registry=registry)  # fmt: skip
    for column, result in (verdict.get("columns") or {}).items():
        ratio.labels(variant, column).set(float(result["ratio"]))
    return registry


def push_drift(verdict: Mapping[str, Any], gateway: str | None = None) -> bool:
    """Push a drift check's gauges to GATEWAY (default: $ANOMALYOPS_PUSHGATEWAY).

    Grouped by job and variant, so each variant's last check replaces its previous one.
    Returns False (nothing sent) when no gateway is configured: the local default.
    """
    gateway = gateway or os.environ.get(PUSHGATEWAY_ENV)
    if not gateway:
        return False
    push_to_gateway(
        gateway,
        job="anomalyops-drift",
        registry=drift_registry(verdict),
        grouping_key={"variant": verdict["variant"]},
        timeout=10,
    )
    return True

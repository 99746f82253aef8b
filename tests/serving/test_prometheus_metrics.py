"""Metrics as Prometheus scrapes them: a real HTTP /metrics after real observations, and the
drift check's gauges through a real Pushgateway (Debian's `prometheus-pushgateway`)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import urllib.request

import pytest
import uvicorn
from fastapi import FastAPI
from k8s_schemas import require_or_skip
from prometheus_client.parser import text_string_to_metric_families

from anomalyops.serving import metrics
from anomalyops.serving.ports import free_port


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample at URL as {(name, sorted labels): value}, parsed like Prometheus does."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def wait_for(url: str, process: subprocess.Popen | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if (process and process.poll() is not None) or time.monotonic() > deadline:
                pytest.fail(f"nothing answered at {url}")
            time.sleep(0.1)


@pytest.fixture
def metrics_server():
    """The metrics app mounted on a FastAPI app, served by uvicorn on 127.0.0.1."""
    app = FastAPI()
    app.mount("/metrics", metrics.metrics_app())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}/metrics/"
    wait_for(url)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def test_observations_are_counted_on_a_scraped_metrics_endpoint(metrics_server):
    before = scrape(metrics_server)
    unusable = ("anomalyops_predictions_total",
                (("label", "unusable"), ("line", "L7"), ("model_version", "3"),
                 ("variant", "metrics-test")))  # fmt: skip
    for label in ("good", "good", "unusable"):
        metrics.observe_prediction("metrics-test", "L7", "3", label)
    metrics.observe_request("metrics-test", "v1", "ok", 0.04)
    metrics.observe_request("metrics-test", "v1", "ok", 2.0)
    metrics.observe_decode_rejection("metrics-test", "too_large")
    metrics.observe_verdict("metrics-test", "false_alarm")
    after = scrape(metrics_server)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert after[unusable] - before.get(unusable, 0.0) == 1
    assert grew("anomalyops_predictions_total", variant="metrics-test", line="L7",
                model_version="3", label="good") == 2  # fmt: skip
    assert grew("anomalyops_requests_total", variant="metrics-test", protocol="v1",
                outcome="ok") == 2  # fmt: skip
    assert grew("anomalyops_request_duration_seconds_bucket", variant="metrics-test",
                le="0.05") == 1  # fmt: skip
    assert grew("anomalyops_request_duration_seconds_count", variant="metrics-test") == 2
    assert grew("anomalyops_decode_rejections_total", variant="metrics-test",
                reason="too_large") == 1  # fmt: skip
    assert grew("anomalyops_verdicts_total", variant="metrics-test", verdict="false_alarm") == 1


VERDICT = {
    "variant": "weld", "drift": True, "drifting": True, "samples": 800,
    "columns": {"score": {"ratio": 1.57}, "brightness": {"ratio": 0.4}},
}  # fmt: skip


def test_drift_gauges_reach_a_real_pushgateway(tmp_path):
    binary = shutil.which("prometheus-pushgateway")
    require_or_skip(binary is not None, "prometheus-pushgateway not installed (make test does)")
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}",
         f"--persistence.file={tmp_path / 'pushgateway.data'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        gateway = f"127.0.0.1:{port}"
        wait_for(f"http://{gateway}/-/ready", process)
        assert metrics.push_drift(VERDICT, gateway) is True
        samples = scrape(f"http://{gateway}/metrics")
        job = (("instance", ""), ("job", "anomalyops-drift"))

        def value(name: str, **labels: str) -> float:
            return samples[(name, tuple(sorted({**dict(job), **labels}.items())))]

        assert value("anomalyops_drift_alert", variant="weld") == 1
        assert value("anomalyops_drift_raised", variant="weld") == 1
        assert value("anomalyops_drift_ratio", variant="weld", column="score") == 1.57
        assert value("anomalyops_drift_samples", variant="weld") == 800
        # the next check of the variant replaces the last one: the alert clears
        metrics.push_drift({**VERDICT, "drift": False, "drifting": False, "columns": {}}, gateway)
        samples = scrape(f"http://{gateway}/metrics")
        assert value("anomalyops_drift_alert", variant="weld") == 0
        assert not any(name == "anomalyops_drift_ratio" for name, _ in samples)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_no_gateway_configured_sends_nothing(monkeypatch):
    monkeypatch.delenv(metrics.PUSHGATEWAY_ENV, raising=False)
    assert metrics.push_drift(VERDICT) is False


def test_a_drift_check_survives_a_dead_gateway(tmp_path, monkeypatch, caplog):
    """check_drift pushes where $ANOMALYOPS_PUSHGATEWAY points; unreachable: a warning."""
    from drift_log import log_rows, make_reference

    from anomalyops.components.drift.check import DriftSettings, check_drift
    from anomalyops.serving.predictions.log import PredictionLog

    reference = make_reference(tmp_path / "reference")
    log_rows(tmp_path / "log.db", 20, "1")
    monkeypatch.setenv(metrics.PUSHGATEWAY_ENV, f"127.0.0.1:{free_port()}")  # nothing there
    with PredictionLog(tmp_path / "log.db") as log:
        verdict = check_drift(log, "weld", reference, tmp_path / "drift", "1",
                              DriftSettings(min_samples=50))  # fmt: skip
    assert verdict.status == "insufficient data"
    assert (tmp_path / "drift" / "weld").is_dir()
    assert "could not push the verdict to the Pushgateway" in caplog.text

"""The chart's PrometheusRule, as helm renders it, evaluated by the real promtool on
synthetic series (Debian's `prometheus` package; `make test` installs it)."""

from __future__ import annotations

import copy
import shutil
import subprocess

import pytest
import yaml
from k8s_schemas import require_or_skip

PROMTOOL = shutil.which("promtool")
ENABLE = ("--set", "monitoring.prometheusRule.enabled=true")


def rule_groups(render, *extra: str) -> list[dict]:
    (rule,) = [d for d in render("default", *ENABLE, *extra) if d["kind"] == "PrometheusRule"]
    return copy.deepcopy(rule["spec"]["groups"])  # render's objects are cached: never mutate


def promtool(*args: str, cwd) -> subprocess.CompletedProcess:
    require_or_skip(PROMTOOL is not None, "promtool not found: apt-get install prometheus")
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alert(name: str, **labels: str) -> dict:
    return {"exp_labels": {"alertname": name, **labels}}


# (alert, interval, input series, [(eval time, firing alerts' labels)])
CASES = [
    ("AnomalyopsDriftAlert", "1m",
     {'anomalyops_drift_alert{variant="weld"}': "0 0 1 1",
      'anomalyops_drift_alert{variant="bottle"}': "0 0 0 0"},
     [("1m", []), ("3m", [{"variant": "weld", "severity": "warning"}])]),
    ("AnomalyopsFalseAlarmShareHigh", "1h",
     {  # weld: every reviewed flag a false alarm; bottle: 1 in 4; tile: too few reviews
      'anomalyops_verdicts_total{variant="weld",verdict="false_alarm"}': "0+1x30",
      'anomalyops_verdicts_total{variant="weld",verdict="confirmed_defect"}': "0+0x30",
      'anomalyops_verdicts_total{variant="bottle",verdict="false_alarm"}': "0+1x30",
      'anomalyops_verdicts_total{variant="bottle",verdict="confirmed_defect"}': "0+3x30",
      'anomalyops_verdicts_total{variant="tile",verdict="false_alarm"}': "0+0.2x30"},
     [("26h", [{"variant": "weld", "severity": "warning"}])]),
    ("AnomalyopsUnusableShareHigh", "1m",
     {  # L1: 30 % of frames unusable (a dead camera); L2: 10 %
      'anomalyops_predictions_total{variant="weld",line="L1",model_version="3",label="unusable"}':
          "0+3x40",
      'anomalyops_predictions_total{variant="weld",line="L1",model_version="3",label="good"}':
          "0+7x40",
      'anomalyops_predictions_total{variant="weld",line="L2",model_version="3",label="unusable"}':
          "0+1x40",
      'anomalyops_predictions_total{variant="weld",line="L2",model_version="3",label="good"}':
          "0+9x40"},
     [("5m", []), ("30m", [{"variant": "weld", "line": "L1", "severity": "critical"}])]),
    ("AnomalyopsLatencyP99High", "1m",
     {  # weld: 5 % of requests between 1 and 2.5 s, so p99 ~2.2 s; bottle all under 0.5 s
      'anomalyops_request_duration_seconds_bucket{variant="weld",le="0.5"}': "0+90x30",
      'anomalyops_request_duration_seconds_bucket{variant="weld",le="1.0"}': "0+95x30",
      'anomalyops_request_duration_seconds_bucket{variant="weld",le="2.5"}': "0+100x30",
      'anomalyops_request_duration_seconds_bucket{variant="weld",le="+Inf"}': "0+100x30",
      'anomalyops_request_duration_seconds_bucket{variant="bottle",le="0.5"}': "0+100x30",
      'anomalyops_request_duration_seconds_bucket{variant="bottle",le="+Inf"}': "0+100x30"},
     [("5m", []), ("20m", [{"variant": "weld", "severity": "warning"}])]),
    ("AnomalyopsNoPredictions", "1m",
     {  # L1 stops at 20 min; L2 never; L3's pod restarts and goes on; L4's pod dies
      'anomalyops_predictions_total{variant="weld",line="L1",label="good"}': "0+5x20 100x40",
      'anomalyops_predictions_total{variant="weld",line="L2",label="good"}': "0+5x60",
      'anomalyops_predictions_total{variant="weld",line="L3",label="good",pod="a"}':
          "0+5x20 stale",
      'anomalyops_predictions_total{variant="weld",line="L3",label="good",pod="b"}':
          "_x25 0+5x35",
      'anomalyops_predictions_total{variant="weld",line="L4",label="good",pod="a"}':
          "0+5x20 stale"},
     [("30m", []),
      ("60m", [{"variant": "weld", "line": "L1", "severity": "critical"},
               {"variant": "weld", "line": "L4", "severity": "critical"}])]),
]  # fmt: skip


def test_rules_pass_promtools_check_with_their_annotations(render, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(render)}))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


@pytest.mark.parametrize("name, interval, series, expected", CASES, ids=[c[0] for c in CASES])
def test_each_alert_fires_on_its_series_and_only_there(
    render, tmp_path, name, interval, series, expected
):
    groups = rule_groups(render)
    for group in groups:  # promtool compares annotations too; the check above covers them
        group["rules"] = [
            {k: v for k, v in r.items() if k != "annotations"}
            for r in group["rules"]
            if r["alert"] == name
        ]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": interval,
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name,
                     "exp_alerts": [alert(name, **labels) for labels in firing]}
                    for at, firing in expected
                ],
            }
        ],
    }  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_come_from_values(render, tmp_path):
    """A share set in values reaches the expression: 30 % unusable no longer alerts at 0.4."""
    groups = rule_groups(render, "--set-json", "monitoring.prometheusRule.unusableShare=0.4")
    (rule,) = [r for g in groups for r in g["rules"] if r["alert"].startswith("AnomalyopsUnusable")]
    assert "> 0.4" in rule["expr"]

"""The chart's shared-state templates: log retention CronJobs, MLflow's db upgrade hook,
the monitoring objects (off by default, on when asked)."""

from __future__ import annotations

LINES = ("--set-json", 'lines=[{"name": "weld-1", "variant": "weld", "storageUri": "s3://m/w1"},'
         '{"name": "weld-2", "variant": "weld", "storageUri": "s3://m/w2"}]')  # fmt: skip
SHARED = ("--set", "predictionStore.database.existingSecret=prediction-log",
          "--set", "predictionStore.files=s3://plant-a/predictions")  # fmt: skip


def component(objects: list[dict], kind: str, name: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind
            and o["metadata"]["labels"].get("app.kubernetes.io/component") == name]  # fmt: skip


def container(job: dict) -> dict:
    spec = job["spec"]["jobTemplate"]["spec"] if job["kind"] == "CronJob" else job["spec"]
    (only,) = spec["template"]["spec"]["containers"]
    return only


def test_sqlite_logs_are_pruned_per_line_on_their_volume(render):
    jobs = component(render("default", *LINES), "CronJob", "log-prune")
    assert [j["metadata"]["name"] for j in jobs] == [
        "rel-anomalyops-weld-1-prune", "rel-anomalyops-weld-2-prune"]  # fmt: skip
    claims = [v["persistentVolumeClaim"]["claimName"]
              for j in jobs for v in j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]  # fmt: skip
    assert claims == ["rel-anomalyops-weld-1-predictions", "rel-anomalyops-weld-2-predictions"]
    prune = container(jobs[0])
    assert prune["args"] == ["log", "prune", "--log-db=$(ANOMALYOPS_PREDICTION_LOG)",
                             "--older-than=30d"]  # fmt: skip
    (log_env,) = [e for e in prune["env"] if e["name"] == "ANOMALYOPS_PREDICTION_LOG"]
    assert log_env["value"].endswith("/predictions.db")


def test_a_shared_postgresql_log_is_pruned_once_with_its_bucket(render):
    (job,) = component(render("default", *LINES, *SHARED), "CronJob", "log-prune")
    prune = container(job)
    assert "--log-files=s3://plant-a/predictions" in prune["args"]
    env = {e["name"]: e for e in prune["env"]}
    assert env["ANOMALYOPS_PREDICTION_LOG"]["valueFrom"]["secretKeyRef"] == {
        "name": "prediction-log", "key": "url"}  # fmt: skip
    assert env["ANOMALYOPS_PREDICTION_FILES"]["value"] == "s3://plant-a/predictions"
    assert "volumes" not in job["spec"]["jobTemplate"]["spec"]["template"]["spec"] or all(
        "persistentVolumeClaim" not in v
        for v in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    )


def test_mlflow_on_an_external_database_is_upgraded_before_install_and_upgrade(render):
    assert component(render("default"), "Job", "mlflow-db-upgrade") == []  # SQLite: none
    (job,) = component(render("external-mlflow"), "Job", "mlflow-db-upgrade")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    upgrade = container(job)
    assert upgrade["command"] == ["mlflow", "db", "upgrade"]
    (uri,) = upgrade["env"][:1]
    assert uri["name"] == "MLFLOW_BACKEND_STORE_URI" and "secretKeyRef" in uri["valueFrom"]


def test_monitoring_objects_are_off_by_default_and_rendered_when_enabled(render):
    kinds = {"PodMonitor", "PrometheusRule"}
    assert not [o for o in render("default", *LINES) if o["kind"] in kinds]
    objects = render("default", *LINES, "--set", "monitoring.podMonitor.enabled=true",
                     "--set", "monitoring.prometheusRule.enabled=true")  # fmt: skip
    found = sorted(o["kind"] for o in objects if o["kind"] in kinds)
    assert found == ["PodMonitor", "PodMonitor", "PrometheusRule"]

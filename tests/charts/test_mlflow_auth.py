"""MLflow in the chart runs MLflow's basic-auth app: only the admin (the pipeline's
identity) may register versions and move aliases; the drift CronJobs sign in as a reader
a post-install Job creates; the chart never writes a credential."""

from __future__ import annotations

import configparser

import pytest


def mlflow_container(objects: list[dict]) -> dict:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"
                     and o["metadata"]["name"].endswith("-mlflow")]  # fmt: skip
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container["env"]}


def test_the_server_runs_the_basic_auth_app_with_a_read_only_default(render):
    objects = render("default")
    container = mlflow_container(objects)
    assert "--app-name=basic-auth" in container["args"]
    env = env_of(container)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "anomalyops-mlflow-admin", "key": "password"}  # fmt: skip
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    ini = configparser.ConfigParser()
    ini.read_string(config["data"]["basic_auth.ini"])
    assert ini["mlflow"]["default_permission"] == "READ"  # users cannot move aliases
    assert ini["mlflow"]["database_uri"] == "sqlite:////mlflow/basic_auth.db"  # on the PVC
    assert "admin_password" not in ini["mlflow"]  # from the Secret, never in a ConfigMap
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth")
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"] == mount["mountPath"] + "/basic_auth.ini"
    # /health stays open (mlflow/server/auth _UNPROTECTED_PATH_PREFIXES): probes need no login
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_drift_signs_in_as_the_reader_that_the_hook_creates(render):
    objects = render("external-mlflow")
    (job,) = [
        o
        for o in objects
        if o["kind"] == "Job"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "mlflow-users"
    ]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    users = job["spec"]["template"]["spec"]["containers"][0]
    assert users["command"] == ["python", "-m", "anomalyops.components.registry.auth_users"]
    admin = env_of(users)["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"]
    assert admin["name"] == "anomalyops-mlflow-admin"
    reader = env_of(users)["ANOMALYOPS_MLFLOW_READER"]["valueFrom"]["secretKeyRef"]
    (cron,) = [
        o
        for o in objects
        if o["kind"] == "CronJob"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "drift"
    ]
    drift = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    login = env_of(drift)["MLFLOW_TRACKING_USERNAME"]["valueFrom"]["secretKeyRef"]
    assert login == reader and login["name"] == "anomalyops-mlflow-reader"  # never the admin


@pytest.mark.parametrize("value_set", ["default", "external-mlflow"])
def test_auth_can_be_turned_off(render, value_set):
    objects = render(value_set, "--set", "mlflow.auth.enabled=false")
    assert "--app-name=basic-auth" not in mlflow_container(objects)["args"]
    assert not [o for o in objects if o["kind"] == "ConfigMap"
                or o["metadata"]["name"].endswith("-mlflow-users")]  # fmt: skip
    (cron, *_) = [o for o in objects if o["kind"] == "CronJob"] or [None]
    if cron:
        drift = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert "MLFLOW_TRACKING_USERNAME" not in env_of(drift)


def test_an_external_database_needs_its_auth_config(helm):
    from chart_values import CHART

    result = helm(
        "template",
        "rel",
        str(CHART),
        "--set",
        "mlflow.backendStore.existingSecret=db,mlflow.artifacts.destination=s3://b/m",
    )
    assert result.returncode != 0 and "mlflow.auth.configSecret" in result.stderr

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


def _rendered_server(objects: list[dict], root, port: int) -> tuple[list[str], dict[str, str]]:
    """The chart's MLflow command line and auth settings, moved from the pod's paths to ROOT.

    Only places change (host, port, the PVC's stores, allowed hosts); the app, its
    default permission and authorization function are the rendered ones.
    """
    container = mlflow_container(objects)
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    ini = configparser.ConfigParser()
    ini.read_string(config["data"]["basic_auth.ini"])
    ini["mlflow"]["database_uri"] = f"sqlite:///{root / 'basic_auth.db'}"
    with open(root / "basic_auth.ini", "w") as out:
        ini.write(out)
    moved = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1",
             "--backend-store-uri": f"sqlite:///{root / 'mlflow.db'}",
             "--artifacts-destination": str(root / "artifacts"),
             "--allowed-hosts": f"127.0.0.1:{port},localhost:{port}"}  # fmt: skip
    args = [a if a.split("=")[0] not in moved else f"{a.split('=')[0]}={moved[a.split('=')[0]]}"
            for a in container["args"]]  # fmt: skip
    env = env_of(container)
    # What the pod gets from its Secrets, given values here; plain values as rendered.
    from_secrets = {"MLFLOW_AUTH_ADMIN_USERNAME": "pipeline",
                    "MLFLOW_AUTH_ADMIN_PASSWORD": "pipeline-Pass-1",
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key"}  # fmt: skip
    assert all("secretKeyRef" in env[name]["valueFrom"] for name in from_secrets)
    settings = {name: e["value"] for name, e in env.items() if "value" in e} | from_secrets
    settings["MLFLOW_AUTH_CONFIG_PATH"] = str(root / "basic_auth.ini")
    settings["HOME"] = str(root)
    return [*container["command"], *args], settings


def test_rendered_auth_runs_live_and_only_the_pipeline_moves_the_champion(
    render, tmp_path, monkeypatch
):
    """The chart's MLflow settings on a real `mlflow server --app-name basic-auth`: the
    hook's reader is created, reads the champion, and is refused when it tries to move it."""
    import os
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from anomalyops.components.registry import auth_users
    from anomalyops.components.registry.champion import champion_version
    from anomalyops.components.registry.server import mlflow_executable
    from anomalyops.serving.ports import free_port

    port = free_port()
    (tmp_path / "artifacts").mkdir()
    command, settings = _rendered_server(render("default"), tmp_path, port)
    assert command[:2] == ["mlflow", "server"]
    command[0] = mlflow_executable()  # the rendered `mlflow`, from this environment
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                              env=os.environ | settings, start_new_session=True)  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:  # /health is open: the chart's probes sign in with nothing
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not become healthy"
            time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{uri}/api/2.0/mlflow/registered-models/search", timeout=10)
        assert anonymous.value.code == 401

        # The post-install hook, as the chart runs it: the admin creates the reader, twice.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "pipeline")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pipeline-Pass-1")
        monkeypatch.setenv("ANOMALYOPS_MLFLOW_READER", "drift")
        monkeypatch.setenv("ANOMALYOPS_MLFLOW_READER_PASSWORD", "drift-reader-Pass-1")
        assert auth_users.main([uri]) == 0
        assert auth_users.main([uri]) == 0  # an existing reader is left as it is

        admin = MlflowClient(uri)  # the pipeline's identity registers and moves the alias
        admin.create_registered_model("weld")
        run = admin.create_run(experiment_id="0").info.run_id
        version = admin.create_model_version("weld", f"runs:/{run}/model", run_id=run).version
        admin.set_registered_model_alias("weld", "champion", version)

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "drift")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "drift-reader-Pass-1")
        assert champion_version(uri, "weld") == version  # the drift CronJob reads it
        with pytest.raises(MlflowException) as refused:
            MlflowClient(uri).set_registered_model_alias("weld", "champion", version)
        assert refused.value.error_code == "PERMISSION_DENIED"
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
        with pytest.raises(MlflowException):
            MlflowClient(uri).get_registered_model("weld")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
            server.wait(timeout=30)
        log.close()

"""`pipeline run --host` through the real `kfp.Client` against a STAND-IN for the Kubeflow
Pipelines API server (no KFP can run here): a local HTTP server that answers the four
calls kfp 2.17's client makes to submit a run (kfp/client/client.py: `get_kfp_healthz`,
`get_experiment` by name, `create_experiment`, `run_pipeline` -> `run_service_create_run`,
and `create_recurring_run` -> `recurring_run_service_create_recurring_run`, all under
/apis/v2beta1) and records what it received, headers included. It proves what we send, not that a
real KFP accepts it: the compiled spec itself is checked against the committed YAML."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from anomalyops.pipelines.cli.main import main
from anomalyops.pipelines.cluster_settings import DRIFT_STATE_MOUNT


class StandIn(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, dict]]] = []
    headers_seen: ClassVar[list[dict]] = []
    multi_user: ClassVar[bool] = False

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, {}))
        self.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._answer({"multi_user": self.multi_user})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._answer({"experiments": [], "total_size": 0})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.received.append(("POST", self.path, body))
        self.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/apis/v2beta1/recurringruns":
            self._answer({"recurring_run_id": "rr-1", "display_name": body.get("display_name")})
        elif self.path == "/apis/v2beta1/experiments":
            self._answer({"experiment_id": "exp-1", "display_name": body.get("display_name")})
        elif self.path == "/apis/v2beta1/runs":
            self._answer({"run_id": "run-1", "display_name": body.get("display_name"),
                          "experiment_id": body.get("experiment_id")})  # fmt: skip
        else:
            self.send_error(404)

    def log_message(self, *_: object) -> None:  # quiet
        pass


@pytest.fixture
def kfp_api():
    StandIn.received, StandIn.headers_seen, StandIn.multi_user = [], [], False
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_training_run_is_submitted_with_bucket_uris_and_the_compiled_spec(kfp_api, capsys):
    line = '{"name": "weld-line1", "namespace": "plant"}'
    code = main(["pipeline", "run", "training", "--data", "s3://plant-a/weld", "--variant",
                 "weld", "--host", kfp_api, "--tracking-uri", "http://mlflow.plant:5000",
                 "--triton-repository", "s3://plant-a-models/triton", "--deploy-target",
                 "kserve", "--kserve-json", line])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "submitted training run run-1" in capsys.readouterr().out
    posts = {path: body for method, path, body in StandIn.received if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["display_name"] == "anomalyops"
    run = posts["/apis/v2beta1/runs"]
    assert run["experiment_id"] == "exp-1"
    parameters = run["runtime_config"]["parameters"]
    assert parameters["data"] == "s3://plant-a/weld" and parameters["variant"] == "weld"
    assert parameters["tracking_uri"] == "http://mlflow.plant:5000"
    assert parameters["triton_repository"] == "s3://plant-a-models/triton"
    assert parameters["deploy_target"] == "kserve"
    # With a platform spec (Secrets as env), kfp sends {pipeline_spec, platform_spec}.
    spec = run["pipeline_spec"]
    executors = spec["pipeline_spec"]["deploymentSpec"]["executors"]
    kubernetes = spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]
    assert kubernetes["executors"]["exec-train-component"]["secretAsEnv"][0]["secretName"] == (
        "anomalyops-storage"
    )
    assert {"exec-validate-component", "exec-train-component", "exec-deploy-component"} <= set(
        executors
    )


DRIFT = ["pipeline", "run", "drift", "--variant", "weld", "--log-db",
         "env:ANOMALYOPS_PREDICTION_LOG", "--new-good", "s3://plant-a/new-good",
         "--tracking-uri", "http://mlflow.plant:5000", "--triton-repository",
         "s3://plant-a-models/triton", "--deploy-target", "kserve", "--kserve-json",
         '{"name": "anomalyops-weld-line-1", "namespace": "plant"}',
         "--drift-out", "/mnt/drift"]  # fmt: skip


@pytest.fixture
def state_volume(tmp_path):
    """Cluster settings naming the PVC the drift step keeps its alert state on."""
    path = tmp_path / "cluster.yaml"
    path.write_text("drift_state_pvc: anomalyops-drift-state\n")
    return path


def test_drift_is_scheduled_as_a_recurring_run(kfp_api, capsys, state_volume):
    code = main([*DRIFT[:-2], "--host", kfp_api, "--schedule", "0 17 * * * *",
                 "--cluster-settings", str(state_volume)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "scheduled drift recurring run rr-1" in capsys.readouterr().out
    posts = {path: body for method, path, body in StandIn.received if method == "POST"}
    assert "/apis/v2beta1/runs" not in posts  # a schedule, not a run now
    job = posts["/apis/v2beta1/recurringruns"]
    assert job["trigger"] == {"cron_schedule": {"cron": "0 17 * * * *"}}
    assert job["max_concurrency"] == "1" or job["max_concurrency"] == 1
    assert job["no_catchup"] is True and job["mode"] == "ENABLE"
    assert job["experiment_id"] == "exp-1" and job["display_name"] == "anomalyops-drift-weld"
    parameters = job["runtime_config"]["parameters"]
    # The log's URL stays in the steps' Secret: the parameter only names the variable.
    assert parameters["prediction_log"] == "env:ANOMALYOPS_PREDICTION_LOG"
    assert "exec-drift-component" in job["pipeline_spec"]["pipeline_spec"]["deploymentSpec"][
        "executors"]  # fmt: skip
    # The alert state lives on the PVC, mounted where the drift step is told to keep it.
    assert parameters["drift_out"] == DRIFT_STATE_MOUNT
    kubernetes = job["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    drift_step = kubernetes["deploymentSpec"]["executors"]["exec-drift-component"]
    (mount,) = drift_step["pvcMount"]
    assert mount["mountPath"] == DRIFT_STATE_MOUNT
    assert "anomalyops-drift-state" in json.dumps(mount)
    secret_keys = [k["envVar"] for k in drift_step["secretAsEnv"][0]["keyToEnv"]]
    assert "ANOMALYOPS_PREDICTION_LOG" in secret_keys


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--log-db": "postgresql://drift:s3cr3t@log.plant/anomalyops"}, "env:ANOMALYOPS_"),
        ({"--drift-out": None}, "drift_state_pvc"),
    ],
    ids=["password-in-parameters", "no-state-volume"],
)
def test_drift_runs_that_would_leak_or_lose_state_are_refused(kfp_api, capsys, change, message):
    argv = list(DRIFT)
    for option, value in change.items():
        at = argv.index(option)
        argv[at : at + 2] = [] if value is None else [option, value]
    assert main([*argv, "--host", kfp_api]) == 2
    err = capsys.readouterr().err
    assert message in err and "s3cr3t" not in err
    assert not [r for r in StandIn.received if r[0] == "POST"]


def test_multi_user_kubeflow_gets_namespace_token_and_service_account(kfp_api, tmp_path,
                                                                        capsys):  # fmt: skip
    StandIn.multi_user = True
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    code = main([*DRIFT, "--host", kfp_api, "--namespace", "team-vision", "--token-file",
                 str(token), "--service-account", "default-editor"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "namespace team-vision" in capsys.readouterr().out
    assert {h.get("authorization") for h in StandIn.headers_seen} == {"Bearer s3cr3t-token"}
    lookups = [path for method, path, _ in StandIn.received
               if method == "GET" and path.startswith("/apis/v2beta1/experiments")]  # fmt: skip
    assert lookups and all("namespace=team-vision" in path for path in lookups)
    posts = {path: body for method, path, body in StandIn.received if method == "POST"}
    assert posts["/apis/v2beta1/experiments"]["namespace"] == "team-vision"
    assert posts["/apis/v2beta1/runs"]["service_account"] == "default-editor"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--schedule", "17 * * * *"], "6 fields"),
        (["--token-file", "/nonexistent/token"], "/nonexistent/token"),
    ],
)
def test_bad_kfp_options_are_refused_before_anything_is_sent(kfp_api, capsys, extra, message):
    assert main([*DRIFT, "--host", kfp_api, *extra]) != 0
    assert message in capsys.readouterr().err
    assert not [r for r in StandIn.received if r[0] == "POST"]


def test_kfp_options_without_host_are_refused(capsys):
    assert main([*DRIFT[:-4], "--schedule", "0 17 * * * *"]) != 0
    assert "--schedule need --host" in capsys.readouterr().err

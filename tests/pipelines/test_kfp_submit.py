"""`pipeline run --host` through the real `kfp.Client` against a STAND-IN for the Kubeflow
Pipelines API server (no KFP can run here): a local HTTP server that answers the four
calls kfp 2.17's client makes to submit a run (kfp/client/client.py: `get_kfp_healthz`,
`get_experiment` by name, `create_experiment`, `run_pipeline` -> `run_service_create_run`,
all under /apis/v2beta1) and records what it received. It proves what we send, not that a
real KFP accepts it: the compiled spec itself is checked against the committed YAML."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from anomalyops.pipelines.cli.main import main


class StandIn(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, dict]]] = []

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, {}))
        if self.path.startswith("/apis/v2beta1/healthz"):
            self._answer({"multi_user": False})
        elif self.path.startswith("/apis/v2beta1/experiments"):
            self._answer({"experiments": [], "total_size": 0})
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.received.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
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
    StandIn.received = []
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

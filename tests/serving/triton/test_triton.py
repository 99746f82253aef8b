"""A real Triton (bundled in nvidia-pytriton) serving the python flavour: scores, bad
requests, and `anomalyops serve` supervising it."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from anomalyops.serving.images.decode import load_image
from anomalyops.serving.ports import free_port


def _infer(url, model, array, datatype="UINT8"):
    client = triton_http.InferenceServerClient(url)
    try:
        tensor = triton_http.InferInput("image", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        return client.infer(model, [tensor])
    finally:
        client.close()


@pytest.fixture(scope="module")
def weld_images(weld):
    paths = sorted((weld / "test" / "defective").glob("*"))[:2]
    paths += sorted((weld / "test" / "good").glob("*"))[:2]
    return np.stack([load_image(p, (256, 256)) for p in paths])


def test_triton_scores_like_onnxruntime(triton, weld_export, weld_images):
    expected_map, expected = ort.InferenceSession(str(weld_export / "model.onnx")).run(
        None, {"image": weld_images}
    )
    for model in ("weld", "weld-line2"):  # two variants in one repository
        result = _infer(triton.url, model, weld_images)
        np.testing.assert_allclose(result.as_numpy("score")[:, 0], expected, rtol=1e-5)
        np.testing.assert_allclose(result.as_numpy("anomaly_map"), expected_map, atol=1e-4)


@pytest.mark.parametrize(
    ("array", "datatype", "message"),
    [
        (np.zeros((1, 256, 256, 3), np.float32), "FP32", "data-type"),
        (np.zeros((1, 128, 128, 3), np.uint8), "UINT8", "shape"),
        (np.zeros((1, 256, 256), np.uint8), "UINT8", "shape"),
    ],
    ids=["wrong-dtype", "wrong-size", "wrong-rank"],
)
def test_bad_tensors_get_400_and_server_keeps_serving(
    triton, weld_images, array, datatype, message
):
    with pytest.raises(InferenceServerException) as caught:
        _infer(triton.url, "weld", array, datatype)
    assert caught.value.status() == "400" and message in caught.value.message()
    assert _infer(triton.url, "weld", weld_images[:1]).as_numpy("score").shape == (1, 1)


def test_missing_input_and_unknown_model_are_4xx(triton):
    base = f"http://{triton.url}/v2/models"
    missing = httpx.post(f"{base}/weld/infer", json={"inputs": []}, timeout=30)
    assert missing.status_code == 400 and "image" in missing.json()["error"]
    body = {"inputs": [{"name": "image", "shape": [1, 2], "datatype": "UINT8", "data": [1, 2]}]}
    unknown = httpx.post(f"{base}/no_such_line/infer", json=body, timeout=30)
    assert 400 <= unknown.status_code < 500 and "no_such_line" in unknown.json()["error"]
    assert httpx.get(f"{base}/weld/ready", timeout=5).status_code == 200


def test_instances_share_the_cpu_budget(weld_export, weld_images, triton_server, tmp_path,
                                        monkeypatch):  # fmt: skip
    """instances x threads stays within the server's CPUs; a pinned count is used as is."""
    from anomalyops.serving.triton.repository import add_model

    monkeypatch.setenv("ANOMALYOPS_THREADS", "4")
    add_model(tmp_path, "shared", weld_export, instances=2)
    add_model(tmp_path, "pinned", weld_export, threads=1)
    with triton_server(tmp_path) as server:
        for model in ("shared", "pinned"):
            assert _infer(server.url, model, weld_images).as_numpy("score").shape == (4, 1)
        logs = server.logs()
    chosen = re.findall(r"instance (\w+): (\d+) onnxruntime threads \(([^)]*)\)", logs)
    assert sorted(chosen) == [
        ("pinned_0_0", "1", "the config's threads parameter"),
        ("shared_0_0", "2", "ANOMALYOPS_THREADS, shared by 2 instances"),
        ("shared_0_1", "2", "ANOMALYOPS_THREADS, shared by 2 instances"),
    ]


def test_server_stops_cleanly(python_repository, triton_server):
    with triton_server(python_repository) as server:
        assert httpx.get(f"http://{server.url}/v2/health/ready", timeout=5).status_code == 200
    assert server.process.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{server.url}/v2/health/live", timeout=2)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Serve:
    """`anomalyops serve` as plants and operators run it: a process with its own output."""

    def __init__(self, repository: Path, port: int, triton_port: int, out: Path) -> None:
        self.out = out
        with open(out, "wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "anomalyops.pipelines.cli", "serve", "--repository",
                 str(repository), "--port", str(port), "--triton-port", str(triton_port)],
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.port = port

    def text(self) -> str:
        return self.out.read_text()

    def wait_ready(self) -> int:
        """Wait until serving; returns tritonserver's pid."""
        _wait_for(lambda: "plants:" in self.text() or self.process.poll() is not None, 120,
                  "serve to be ready")  # fmt: skip
        assert self.process.poll() is None, self.text()
        return _children(self.process.pid)[0]

    def score(self, image: np.ndarray) -> float:
        return float(_infer(f"127.0.0.1:{self.port}", "weld", image).as_numpy("score")[0, 0])


@pytest.mark.slow  # four Triton starts: ~110 s on the shared 2-core machine
def test_serve_supervises_triton(python_repository, triton_server, weld_images, tmp_path):
    """Restart after kill -9 (reported), no orphan after SIGTERM or SIGKILL, taken port refused."""
    port, triton_port = free_port(), free_port()
    serve = Serve(python_repository, port, triton_port, tmp_path / "serve.log")
    try:
        first = serve.wait_ready()
        before = serve.score(weld_images[:1])
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: "tritonserver restarted" in serve.text(), 120, "a restart")
        assert "tritonserver died (killed by SIGKILL" in serve.text()
        assert serve.score(weld_images[:1]) == pytest.approx(before, rel=1e-6)

        # A second serve on the same ports refuses at once, naming the port.
        other = subprocess.run(
            [sys.executable, "-m", "anomalyops.pipelines.cli", "serve", "--repository",
             str(python_repository), "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert other.returncode == 2 and f"127.0.0.1:{port} (front) is already in use" in (
            other.stderr
        )

        second = _children(serve.process.pid)[0]
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(60) == 0
        assert not _alive(second) and "stopped" in serve.text()
    finally:
        if serve.process.poll() is None:
            serve.process.kill()

    # Even a SIGKILLed serve leaves no Triton behind (it dies with its parent).
    serve = Serve(python_repository, port, triton_port, tmp_path / "serve2.log")
    triton = serve.wait_ready()
    serve.process.kill()
    serve.process.wait()
    _wait_for(lambda: not _alive(triton), 30, "tritonserver to exit after serve was killed")

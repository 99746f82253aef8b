"""A real Triton (bundled in nvidia-pytriton) serving the python flavour: scores, bad requests."""

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from anomalyops.serving.imaging import load_image


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


def test_server_stops_cleanly(python_repository):
    from anomalyops.serving.triton import TritonServer, triton_venv

    if not (triton_venv() / "bin" / "python").exists():
        pytest.skip("Triton environment absent: run `make triton-venv`")
    with TritonServer(python_repository) as server:
        assert httpx.get(f"http://{server.url}/v2/health/ready", timeout=5).status_code == 200
    assert server.process.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{server.url}/v2/health/live", timeout=2)

"""KServe's real ModelServer running the transformer in front of the real local Triton."""

import base64
import contextlib
import io
import os
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from anomalyops.serving.contract.model import load_contract
from anomalyops.serving.ports import free_port
from anomalyops.serving.predictions.log import PredictionLog
from anomalyops.serving.transformer.server import TransformerProcess

# Tight caps so the tests can plant each fault cheaply; defaults are in transformer.Settings.
OPTIONS = ["--max_image_mb", "2", "--max_instances", "40", "--max_body_mb", "8"]


@pytest.fixture(scope="module")
def transformer(triton, python_repository, tmp_path_factory):
    db = tmp_path_factory.mktemp("log") / "predictions.db"
    with TransformerProcess(
        "weld", triton.url, python_repository, db, free_port(), options=OPTIONS
    ) as url:
        yield url, db


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def predict(url, instances, headers=None):
    return httpx.post(f"{url}:predict", json={"instances": instances}, headers=headers, timeout=60)


def first(folder):
    return sorted(folder.glob("*"))[0].read_bytes()


def test_scores_labels_masks_and_logs_full_rows(transformer, weld, python_repository):
    url, db = transformer
    good, bad = first(weld / "test" / "good"), first(weld / "test" / "defective")
    contract = load_contract(python_repository / "weld" / "1")
    response = predict(
        url, [{"image": b64(good)}, {"image": b64(bad), "sensitivity": 2.0, "line": "L7"}],
        headers={"X-Line": "L2"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    one, two = response.json()["predictions"]
    assert one["threshold"] == pytest.approx(contract.image_threshold)
    assert two["threshold"] == pytest.approx(contract.image_threshold / 2)
    for item in (one, two):
        assert item["model_version"] == "1" and item["problems"] == []
        assert item["label"] == ("anomalous" if item["score"] > item["threshold"] else "good")
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask_png"]))))
        assert set(np.unique(mask)) <= {0, 255}
    # Weld's crops keep their aspect: each mask is cut to its own image's box, not 256².
    for item, sent in zip((one, two), (good, bad), strict=True):
        height, width = np.asarray(Image.open(io.BytesIO(sent))).shape[:2]
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask_png"]))))
        assert contract.keep_aspect and mask.shape == (round(height * 256 / width), 256)
    override = predict(url, [{"image": b64(good), "threshold": 1e9}]).json()["predictions"][0]
    assert override["label"] == "good" and override["score"] == pytest.approx(one["score"])
    with PredictionLog(db) as log:
        rows = [log.get(item["id"]) for item in (one, two)]
        assert [r["line"] for r in rows] == ["L2", "L7"]  # header, then the instance's own
        for row, item, sent in zip(rows, (one, two), (good, bad), strict=True):
            assert row["variant"] == "weld" and row["model_version"] == "1"
            assert row["model_sha256"] == contract.onnx["sha256"]
            assert row["score"] == pytest.approx(item["score"]) and row["label"] == item["label"]
            assert row["contrast"] > 0 and row["sharpness"] > 0 and row["source_size"]
            assert log.file(row["image_file"]).read_bytes() == sent  # as received
            kept_map = log.file(row["map_file"])
            assert (kept_map is not None) == (item["label"] == "anomalous")
            if kept_map:  # the map of the image's own box, as the mask
                mask = Image.open(io.BytesIO(base64.b64decode(item["mask_png"])))
                assert np.load(kept_map).shape == np.asarray(mask).shape


def test_blank_and_tiny_frames_are_unusable_and_logged(transformer, weld):
    url, db = transformer
    crop = np.asarray(Image.open(io.BytesIO(first(weld / "test" / "good"))).convert("RGB"))
    frames = [np.zeros((256, 256, 3), np.uint8), np.full((256, 256, 3), 255, np.uint8),
              np.ascontiguousarray(crop[:40, :40])]  # fmt: skip
    response = predict(url, [{"image": b64(png(f))} for f in frames])
    assert response.status_code == 200, response.text
    items = response.json()["predictions"]
    assert [item["label"] for item in items] == ["unusable"] * 3
    assert "brightness 0 outside" in items[0]["problems"][0]
    assert any("contrast 0 outside" in p for p in items[1]["problems"])
    assert "size 40x40 below" in items[2]["problems"][0]
    assert all(isinstance(item["score"], float) for item in items)  # scored, never 'good'
    with PredictionLog(db) as log:
        assert [log.get(item["id"])["label"] for item in items] == ["unusable"] * 3


def test_more_images_than_tritons_max_batch_are_split(transformer, python_repository, weld):
    url, _ = transformer
    config = (python_repository / "weld" / "config.pbtxt").read_text()
    assert "max_batch_size: 32" in config
    images = sorted((weld / "test" / "good").glob("*"))[:4]
    instances = [{"image": b64(images[i % 4].read_bytes())} for i in range(33)]
    response = predict(url, instances)
    assert response.status_code == 200, response.text
    scores = [item["score"] for item in response.json()["predictions"]]
    assert len(scores) == 33 and scores[32] == pytest.approx(scores[0], rel=1e-5)


def test_v2_open_inference_protocol(transformer, weld):
    url, _ = transformer
    good, bad = first(weld / "test" / "good"), first(weld / "test" / "defective")
    v1 = predict(url, [{"image": b64(good)}, {"image": b64(bad)}]).json()["predictions"]
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                    "data": [b64(good)["b64"], b64(bad)["b64"]]}],
        "parameters": {"sensitivity": 2.0, "line": "L3"},
    }  # fmt: skip
    v2_url = url.replace("/v1/models/weld", "/v2/models/weld/infer")
    response = httpx.post(v2_url, json=body, timeout=60)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    assert outputs["score"] == pytest.approx([p["score"] for p in v1], rel=1e-5)
    assert outputs["threshold"] == pytest.approx([p["threshold"] / 2 for p in v1])
    assert outputs["model_version"] == ["1", "1"] and len(outputs["id"]) == 2
    assert outputs["label"] == [
        "anomalous" if s > t else "good"
        for s, t in zip(outputs["score"], outputs["threshold"], strict=True)
    ]
    body["parameters"] = {"sensitivity": 1e-320}
    refused = httpx.post(v2_url, json=body, timeout=60)
    assert refused.status_code == 400 and "parameters.sensitivity" in refused.text
    body["inputs"][0]["datatype"] = "FP32"
    assert httpx.post(v2_url, json=body, timeout=60).status_code == 400


def bomb(side: int) -> bytes:
    """A small PNG that would inflate to side² pixels."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ([{"image": b64(b"\x89PNG\r\n\x1a\n\x00\x00")}], "not a decodable image"),
        ([{"image": b64(bomb(10_000))}], "decompression bomb"),  # 100 MP: PIL refuses
        ([{"image": b64(bomb(8_200))}], "exceeds the limit"),  # 67 MP: our pixel cap
        ([{"image": b64(os.urandom(3 << 20))}], "encoded bytes exceeds the limit"),
        ([{"image": "%%% not base64"}], "bad base64"),
        ([{"picture": "x"}], "missing field 'image'"),
        ([{"image": b64(b"x"), "sensitivity": -1}], "instances[0].sensitivity"),
        ([{"image": b64(b"x"), "sensitivity": 1e-320}], "instances[0].sensitivity"),
        ([{"image": b64(b"x"), "threshold": 1e300}], "instances[0].threshold"),
        ([{"image": b64(b"x"), "line": "x" * 65}], "instances[0].line"),
        ([{"image": b64(b"x")}] * 41, "send 1 to 40 per request"),
        ([], "instances"),
    ],
    ids=["truncated", "decompression-bomb", "oversize", "encoded-cap", "bad-base64",
         "missing-image", "negative-sensitivity", "tiny-sensitivity", "huge-threshold",
         "long-line", "too-many", "no-instances"],
)  # fmt: skip
def test_bad_requests_are_400_and_serving_goes_on(transformer, weld, instances, message):
    url, _ = transformer
    response = predict(url, instances)
    assert response.status_code == 400, response.text
    assert message in response.text
    assert predict(url, [{"image": b64(first(weld / "test" / "good"))}]).status_code == 200


def test_request_body_over_the_cap_is_refused_unread(transformer):
    url, _ = transformer
    response = httpx.post(f"{url}:predict", content=b"x" * (9 << 20), timeout=60)
    assert response.status_code == 413 and "exceeds the limit" in response.text


def test_unknown_variant_is_404(transformer):
    url, _ = transformer
    response = httpx.post(url.replace("weld", "nope") + ":predict", json={"instances": []})
    assert response.status_code == 404


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on PORT (from /proc/net/tcp*)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.split(":")
                if int(hex_port, 16) == port and state == "0A":
                    found.add(address)
    return found


def test_binds_loopback_by_default(transformer):
    url, _ = transformer
    port = int(url.split(":")[2].split("/")[0])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0


def test_kserve_and_tritonclient_http_share_a_process():
    code = "import kserve, tritonclient.http, anomalyops.serving.transformer"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


def test_triton_down_is_503_not_answering(triton_server, python_repository, weld, tmp_path):
    """While Triton restarts the plant gets 503 (retry), not a 500 parse error."""
    import shutil

    from anomalyops.serving.triton.front import Front

    repository = tmp_path / "repository"  # its own copy: this Triton writes its own token
    shutil.copytree(python_repository, repository)
    log_db = tmp_path / "log.db"
    with (
        triton_server(repository) as server,
        Front(server.url, free_port()) as front,
        TransformerProcess(
            "weld", front.url, repository, log_db, free_port(), options=OPTIONS
        ) as url,  # fmt: skip
    ):
        image = b64(first(weld / "test" / "good"))
        assert predict(url, [{"image": image}]).status_code == 200
        server.stop()
        answer = predict(url, [{"image": image}])
        assert answer.status_code == 503, answer.text
        assert "not answering" in answer.json()["error"]


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_real_requests_by_label_and_outcome(transformer, weld):
    url, _ = transformer
    scrape = url.split("/v1/")[0] + "/metrics"
    before = httpx.get(scrape, timeout=30).text
    good = b64(first(weld / "test" / "good"))
    black = b64(png(np.zeros((256, 256, 3), np.uint8)))
    assert predict(url, [{"image": good}, {"image": black}]).status_code == 200
    assert predict(url, [{"image": {"b64": "not base64!"}}]).status_code == 400
    assert predict(url, [{"image": b64(b"GIF89a not really")}]).status_code == 400
    after = httpx.get(scrape, timeout=30).text
    for name, labels, grew in [
        ("anomalyops_predictions_total", {"variant": "weld", "label": "unusable"}, 1),
        ("anomalyops_requests_total", {"variant": "weld", "protocol": "v1", "outcome": "ok"}, 1),
        (
            "anomalyops_requests_total",
            {"variant": "weld", "protocol": "v1", "outcome": "rejected"},
            2,
        ),
        ("anomalyops_decode_rejections_total", {"variant": "weld", "reason": "not_image"}, 1),
    ]:
        assert _metric(after, name, **labels) - _metric(before, name, **labels) == grew, name
    assert _metric(after, "anomalyops_request_duration_seconds_count", variant="weld") > 0


def test_starts_unready_before_triton_and_serves_once_it_answers(
    triton_server, python_repository, weld, tmp_path
):
    """A pod's transformer may start before its Triton: unready (503), never exit 2."""
    import shutil
    import time

    repository = tmp_path / "repository"
    shutil.copytree(python_repository, repository)
    port = free_port()
    harness = TransformerProcess("weld", f"127.0.0.1:{port}", repository, tmp_path / "log.db",
                                 free_port(), options=OPTIONS)  # fmt: skip
    with pytest.raises(RuntimeError, match="did not start"):  # waits for ready, never exits
        harness.startup_timeout = 8
        harness.__enter__()
    harness.startup_timeout = 120
    harness.process = subprocess.Popen(harness.command, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline, status = time.monotonic() + 60, None
        while status is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):  # not listening yet
                status = httpx.get(harness.url, timeout=5).status_code
            time.sleep(0.5)
        # KServe answers a registered, unready model 503 (kserve/errors.py, ModelNotReady)
        assert status == 503 and harness.process.poll() is None  # alive and unready
        answer = predict(harness.url, [{"image": b64(first(weld / "test" / "good"))}])
        assert answer.status_code == 503
        with triton_server(repository, http_port=port):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not harness._ready():
                time.sleep(0.5)
            answer = predict(harness.url, [{"image": b64(first(weld / "test" / "good"))}])
            assert answer.status_code == 200, answer.text
    finally:
        harness.__exit__()

"""KServe's real ModelServer running the transformer in front of the real local Triton."""

import base64
import io
import os
import sqlite3
import subprocess
import sys

import httpx
import numpy as np
import pytest
from PIL import Image

from anomalyops.serving.contract import load_contract
from anomalyops.serving.transformer import TransformerProcess
from anomalyops.serving.triton import free_port


@pytest.fixture(scope="module")
def transformer(triton, weld_export, tmp_path_factory):
    db = tmp_path_factory.mktemp("log") / "predictions.db"
    with TransformerProcess("weld", triton.url, weld_export, db, free_port()) as url:
        yield url, db


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def predict(url, instances):
    return httpx.post(f"{url}:predict", json={"instances": instances}, timeout=60)


def test_scores_labels_masks_and_logs(transformer, weld, weld_export):
    url, db = transformer
    good = sorted((weld / "test" / "good").glob("*"))[0].read_bytes()
    bad = sorted((weld / "test" / "defective").glob("*"))[0].read_bytes()
    contract = load_contract(weld_export)
    response = predict(url, [{"image": b64(good)}, {"image": b64(bad), "sensitivity": 2.0}])
    assert response.status_code == 200, response.text
    first, second = response.json()["predictions"]
    assert first["threshold"] == pytest.approx(contract.image_threshold)
    assert second["threshold"] == pytest.approx(contract.image_threshold / 2)
    for item in (first, second):
        assert item["label"] == ("anomalous" if item["score"] > item["threshold"] else "good")
        mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(item["mask_png"]))))
        assert mask.shape == (256, 256) and set(np.unique(mask)) <= {0, 255}
    override = predict(url, [{"image": b64(good), "threshold": 1e9}]).json()["predictions"][0]
    assert override["label"] == "good" and override["score"] == pytest.approx(first["score"])
    rows = sqlite3.connect(db).execute("SELECT variant, score, label, contrast FROM predictions")
    rows = rows.fetchall()
    assert len(rows) == 3 and rows[0][0] == "weld" and rows[0][1] == pytest.approx(first["score"])
    assert all(row[3] > 0 for row in rows)


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
        ([{"image": b64(bomb(8_200))}], "exceeds the limit"),  # 67 MP: our MAX_PIXELS
        ([{"image": "%%% not base64"}], "bad base64"),
        ([{"picture": "x"}], "missing field 'image'"),
        ([{"image": b64(b"x"), "sensitivity": -1}], "sensitivity"),
        ([], "instances"),
    ],
    ids=["truncated", "decompression-bomb", "oversize", "bad-base64", "missing-image",
         "bad-sensitivity", "no-instances"],
)  # fmt: skip
def test_bad_requests_are_400_and_serving_goes_on(transformer, weld, instances, message):
    url, _ = transformer
    response = predict(url, instances)
    assert response.status_code == 400, response.text
    assert message in response.text
    good = sorted((weld / "test" / "good").glob("*"))[0].read_bytes()
    assert predict(url, [{"image": b64(good)}]).status_code == 200


def test_unknown_variant_is_404(transformer):
    url, _ = transformer
    response = httpx.post(url.replace("weld", "nope") + ":predict", json={"instances": []})
    assert response.status_code == 404


def test_kserve_and_tritonclient_http_share_a_process():
    code = "import kserve, tritonclient.http, anomalyops.serving.transformer"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))

"""The transformer applies the contract of the version Triton actually serves."""

import base64
import json
import shutil

import httpx
import pytest

from anomalyops.serving.ports import free_port
from anomalyops.serving.predictions.log import PredictionLog
from anomalyops.serving.transformer.server import TransformerProcess
from anomalyops.serving.triton.repository import add_model


def score(url, image: bytes) -> dict:
    body = {"instances": [{"image": {"b64": base64.b64encode(image).decode()}}]}
    response = httpx.post(f"{url}:predict", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


@pytest.mark.slow  # two Triton starts
def test_follows_the_served_version_without_a_restart(weld_export, weld, triton_server, tmp_path):
    repository, db = tmp_path / "repository", tmp_path / "log.db"
    add_model(repository, "weld", weld_export, "python")
    stale = (repository / "weld" / "model.json").read_text()
    retrained = tmp_path / "v2"  # same graph, a model.json with its own threshold
    shutil.copytree(weld_export, retrained)
    body = json.loads((retrained / "model.json").read_text())
    body["thresholds"]["image"]["threshold"] *= 3
    body["lineage"]["model_version"] = "2"
    (retrained / "model.json").write_text(json.dumps(body))
    image = sorted((weld / "test" / "good").glob("*"))[0].read_bytes()
    server = triton_server(repository, http_port=free_port()).start()
    try:
        with TransformerProcess("weld", server.url, repository, db, free_port()) as url:
            before = score(url, image)
            server.stop()  # Triton is restarted serving version 2 (a deploy, done crudely)
            add_model(repository, "weld", retrained, "python")
            (repository / "weld" / "model.json").write_text(stale)  # must not be read
            server.start()
            after = score(url, image)
    finally:
        server.stop()
    assert (before["model_version"], after["model_version"]) == ("1", "2")
    assert after["threshold"] == pytest.approx(3 * before["threshold"])
    assert after["score"] == pytest.approx(before["score"], rel=1e-5)
    with PredictionLog(db) as log:
        rows = [log.get(item["id"]) for item in (before, after)]
    assert [r["model_version"] for r in rows] == ["1", "2"]
    assert rows[1]["threshold"] == pytest.approx(after["threshold"])


def tampered(repository, tmp_path, change):
    """A copy of REPOSITORY as the transformer sees it, with CHANGE applied to version 1."""
    copy = tmp_path / "view"
    shutil.copytree(repository, copy)
    change(copy / "weld" / "1")
    return copy


def smaller_input(folder):
    body = json.loads((folder / "model.json").read_text())
    body["input"]["height"] = 128
    (folder / "model.json").write_text(json.dumps(body))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (smaller_input, r"input 'image' is TYPE_UINT8 \[256, 256, 3\] in Triton, "
                        r"TYPE_UINT8 \[128, 256, 3\] in model.json"),
        (lambda folder: (folder / "reference.json").unlink(), r"reference\.json: missing"),
        (lambda folder: shutil.rmtree(folder), r"weld/1: missing; Triton serves 'weld' version 1"),
    ],
    ids=["model.json-disagrees", "no-reference", "no-version-folder"],
)  # fmt: skip
def test_a_contract_that_cannot_serve_fails_at_start(
    triton, python_repository, tmp_path, change, message
):
    view = tampered(python_repository, tmp_path, change)
    process = TransformerProcess("weld", triton.url, view, tmp_path / "log.db", free_port(),
                                 startup_timeout=60)  # fmt: skip
    with pytest.raises(RuntimeError, match=message) as failure:
        process.__enter__()
    assert "Traceback" not in str(failure.value)  # one clear line, not a stack trace
    assert process.process.returncode == 2

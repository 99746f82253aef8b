"""The plant client and `anomalyops infer` against the real local Triton."""

import time

import numpy as np
import pytest
from PIL import Image

from anomalyops.pipelines.cli.main import main
from anomalyops.serving.contract.model import load_contract
from anomalyops.serving.ports import free_port
from anomalyops.serving.triton.client import InferenceError, TritonClient


def test_client_scores_batches_and_reports_bad_files(triton, weld, weld_export, tmp_path):
    good = sorted((weld / "test" / "good").glob("*"))[:3]
    bad = sorted((weld / "test" / "defective").glob("*"))[:2]
    corrupt = tmp_path / "truncated.png"
    corrupt.write_bytes(bad[0].read_bytes()[:200])
    with TritonClient(triton.url, "weld", batch_size=2) as client:
        results = client.score_files([*good, corrupt, *bad])
    assert [r.error is None for r in results] == [True, True, True, False, True, True]
    assert "truncated.png" in results[3].error
    threshold = load_contract(weld_export).image_threshold
    for result in results[:3] + results[4:]:
        assert result.label == ("anomalous" if result.score > threshold else "good")
        height, width = np.asarray(Image.open(result.name)).shape[:2]  # the image's box
        assert result.anomaly_map.shape == (round(height * 256 / width), 256)
    assert min(r.score for r in results[4:]) > min(r.score for r in results[:3])


def test_unknown_model_is_a_clear_error(triton):
    with (
        TritonClient(triton.url, "no_such_line", retries=0) as client,
        pytest.raises(InferenceError, match="no_such_line"),
    ):
        client.metadata()


def test_connection_refused_is_retried_then_reported():
    started = time.monotonic()
    client = TritonClient(f"127.0.0.1:{free_port()}", "weld", timeout=2, retries=2, backoff=0.1)
    with client, pytest.raises(InferenceError, match=r"127\.0\.0\.1"):
        client.metadata()
    assert time.monotonic() - started >= 0.3  # waited 0.1 + 0.2 between tries


def test_infer_cli(triton, weld, tmp_path, capsys):
    image = sorted((weld / "test" / "good").glob("*"))[0]
    corrupt = tmp_path / "bad.jpg"
    corrupt.write_bytes(b"not an image")
    code = main(["infer", "--url", triton.url, "--model", "weld", str(image), str(corrupt)])
    out, err = capsys.readouterr()
    assert code == 1  # one image failed
    assert image.name in out and ("good" in out or "anomalous" in out)
    assert "bad.jpg" in err and "not a decodable image" in err


def test_infer_cli_labels_with_the_answering_version_and_flags_blank_frames(
    triton, python_repository, weld, tmp_path, capsys
):
    from PIL import Image

    image = sorted((weld / "test" / "good").glob("*"))[0]
    black = tmp_path / "black.png"
    Image.new("RGB", (256, 256)).save(black)
    code = main(["infer", "--url", triton.url, "--model", "weld",
                 "--repository", str(python_repository), str(image), str(black)])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    lines = dict(line.split("\t", 1) for line in out.splitlines())
    assert lines[str(black)].endswith("unusable\tv1")
    assert not lines[str(image)].endswith("unusable\tv1")
    assert "black.png: brightness 0 outside" in err
    main(["infer", "--url", triton.url, "--model", "weld", str(black)])
    assert "no --repository" in capsys.readouterr().err  # says the check did not run

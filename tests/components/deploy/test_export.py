"""Export parity: the ONNX graph (onnxruntime) scores like the in-process detector.

PatchCore's in-process path searches its bank with faiss; the exported graph uses matrix
products, so this compares two genuinely different implementations on real weld images.
Measured on weld (efficientnet_lite0, 256 px): score |Δ| ≤ 3e-5 (relative ≤ 1e-6), map
|Δ| ≤ 2e-4 on maps peaking near 60; the asserted tolerance leaves room for other CPUs.
"""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from parity import ATOL, MAP_RTOL, RTOL

from anomalyops.components.deploy.export import DATA_FILE, export
from anomalyops.components.detectors import create
from anomalyops.components.training.train import train
from anomalyops.serving.contract.model import ContractError, load_contract, parse_contract


@pytest.fixture(scope="module", params=["patchcore", "two-scale", "padim"])
def trained(request, weld, tmp_path_factory):
    kind = "padim" if request.param == "padim" else "patchcore"
    settings = {"coreset_ratio": 0.01} if kind == "patchcore" else {}
    if request.param == "two-scale":  # the graph resizes (by 2.67) and fuses as fit did
        settings["coarse_size"] = (96, 96)
    out = tmp_path_factory.mktemp(request.param) / "model"
    return train(weld, out, kind, settings, calibration_folds=2, progress=False)


def run_onnx(directory, images):
    session = ort.InferenceSession(str(directory / "model.onnx"))
    anomaly_map, score = session.run(["anomaly_map", "score"], {"image": images})
    return anomaly_map, score


def test_onnx_matches_in_process_detector(trained, weld_splits, tmp_path):
    _, test = weld_splits
    images = test.images[::20]  # good and defective, 7 images
    contract = export(trained.model_dir, tmp_path / "export")
    anomaly_map, score = run_onnx(tmp_path / "export", images)
    expected = trained.detector.predict(images)
    assert anomaly_map.shape == (len(images), 1, 256, 256) and anomaly_map.dtype == np.float32
    np.testing.assert_allclose(score, expected.scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(anomaly_map[:, 0], expected.maps, rtol=MAP_RTOL, atol=ATOL)
    assert contract.kind == trained.detector.kind
    assert contract.image_threshold == pytest.approx(trained.image_threshold.threshold)
    assert contract.dataset_sha256 == trained.summary["dataset_sha256"]


def test_contract_round_trips_with_lineage(trained, tmp_path):
    export(trained.model_dir, tmp_path, lineage={"mlflow_run_id": "abc"}, threads=2)
    contract = load_contract(tmp_path)
    assert contract.input_size == (256, 256) and contract.channels == 3
    assert contract.keep_aspect  # weld's 400-wide crops keep their shape (auto settings)
    body = json.loads((tmp_path / "model.json").read_text())
    assert body["input"]["keep_aspect"] is True
    del body["input"]["keep_aspect"]  # an export from before the field: stretched
    assert not parse_contract(body).keep_aspect
    body["input"]["keep_aspect"] = "yes"
    with pytest.raises(ContractError, match=r"input\.keep_aspect"):
        parse_contract(body)
    assert contract.threads == 2  # pinned per serving instance; auto when left out
    assert contract.lineage["mlflow_run_id"] == "abc"
    assert contract.lineage["model_version"] is None
    assert contract.thresholds["pixel"]["target_fpr"] == pytest.approx(0.001)
    assert contract.normalisation["image_scale"] == pytest.approx(contract.image_threshold)
    graph = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    assert [i.name for i in graph.graph.input] == ["image"]
    assert graph.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert (tmp_path / "reference.json").read_bytes() == (
        trained.model_dir / "reference.json"
    ).read_bytes()  # what production should look like travels with the export


def test_external_data_export_still_matches(trained, weld_splits, tmp_path):
    if trained.detector.kind != "patchcore":
        pytest.skip("one detector is enough for the external-data path")
    images = weld_splits[1].images[:2]
    contract = export(trained.model_dir, tmp_path, external_data_bytes=0)
    assert contract.onnx["external_data"] and (tmp_path / DATA_FILE).stat().st_size > 1e6
    assert (tmp_path / "model.onnx").stat().st_size < 1e6
    _, score = run_onnx(tmp_path, images)
    np.testing.assert_allclose(score, trained.detector.predict(images).scores, RTOL, ATOL)


def test_bad_contract_names_the_field(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 1, "input": {}}))
    with pytest.raises(ContractError, match="'height'"):
        load_contract(tmp_path)
    with pytest.raises(ContractError, match="missing"):
        load_contract(tmp_path / "nowhere")


def test_export_needs_thresholds_for_a_detector_object(trained, tmp_path):
    with pytest.raises(ValueError, match="thresholds"):
        export(trained.detector, tmp_path)
    with pytest.raises(ValueError, match="threads"):
        export(trained.model_dir, tmp_path / "out", threads=0)


def test_intensity_standardisation_is_in_the_graph(weld_splits, tmp_path):
    train, test = weld_splits
    detector = create("patchcore", standardise=True).fit(train.images[:8], progress=False)
    thresholds = {"image": {"threshold": 1.0}, "pixel": {"threshold": 1.0}}
    export(detector, tmp_path, thresholds)
    images = test.images[:3]
    _, score = run_onnx(tmp_path, images)
    np.testing.assert_allclose(score, detector.predict(images).scores, RTOL, ATOL)
    # Dimmer, flatter lighting (x·0.5 + 100) moves these scores by ~1.7 % with the
    # standardisation in the graph; without it they move by ~6 %.
    relit = (images.astype(np.float32) * 0.5 + 100).round().astype(np.uint8)
    _, shifted = run_onnx(tmp_path, relit)
    np.testing.assert_allclose(shifted, score, rtol=0.03)


def test_lighting_gain_is_undone_in_the_graph_before_tiling(weld_splits, tmp_path):
    train, test = weld_splits
    settings = {"tile_size": (128, 128), "coreset_ratio": 0.01}
    images, darker = test.images[:3], (test.images[:3] * 0.7).round().astype(np.uint8)
    moved = {}
    for reference in (None, 60.0):
        detector = create("patchcore", gain_reference=reference, **settings)
        detector.fit(train.images[:4], progress=False)
        thresholds = {"image": {"threshold": 1.0}, "pixel": {"threshold": 1.0}}
        export(detector, tmp_path / str(reference), thresholds)
        _, score = run_onnx(tmp_path / str(reference), images)
        np.testing.assert_allclose(score, detector.predict(images).scores, RTOL, ATOL)
        _, shifted = run_onnx(tmp_path / str(reference), darker)
        moved[reference] = float(np.abs(shifted / score - 1).max())
    # Each whole image, not each tile, is scaled to mean 60: 30 % less light leaves what
    # the tiles see within rounding (weld's dark pixels lose a grey level), and moves
    # the scores half as much (measured 1.2 % against 2.4 %).
    seen = [detector.model.ungained(torch.from_numpy(x)) for x in (images, darker)]
    assert all(abs(float(x.mean()) - 60.0) < 1.5 for x in seen)  # 60 · mean / (mean + 1)
    assert (
        float((seen[0] - seen[1]).abs().mean())
        < 1.0
        < float(np.abs(images - darker.astype(float)).mean())
    )
    assert moved[60.0] < 0.6 * moved[None]

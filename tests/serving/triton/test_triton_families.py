"""Every detector family served by the real Triton exactly as PatchCore is: serving reads
only the contract (model.onnx + model.json), so a short-trained model of each kind must
score through Triton as `predict` scores in process. PatchCore's one-scale 256² graph is
test_triton.py's; here its other layouts: two scales (what parts near 512² get by
default, detectors/auto.py) and tiles with a whole-image coarse scale."""

import numpy as np
import pytest
import tritonclient.http as triton_http
from parity import ATOL, MAP_RTOL, RTOL

from anomalyops.components.detectors import DETECTORS

# Few steps: the point is the contract, not accuracy (tests/benchmarks/detectors.py).
QUICK = {"steps": 6, "batch_size": 2, "validate_every": 3}
KINDS = sorted(set(DETECTORS) - {"patchcore"})
# Small sizes: the same graph as at 512², a quarter of the pixels.
LAYOUTS = {
    "patchcore-two-scale": {"input_size": (128, 128), "coarse_size": (64, 64)},
    "patchcore-tiled": {"input_size": (128, 192), "tile_size": (64, 64), "coarse_size": (64, 96)},
}


def quick_settings(kind: str) -> dict:
    learned = {"steps"} <= {f for f in DETECTORS[kind].config_class.__dataclass_fields__}
    return QUICK if learned else {}


MODELS = {kind: (kind, quick_settings(kind)) for kind in KINDS} | {
    name: ("patchcore", {**layout, "coreset_ratio": 0.01}) for name, layout in LAYOUTS.items()
}


@pytest.fixture(scope="module")
def exports(weld, tmp_path_factory):
    from anomalyops.components.deploy.export import export
    from anomalyops.components.training.train import train

    root = tmp_path_factory.mktemp("families")
    for name, (kind, settings) in MODELS.items():
        train(weld, root / name, kind, settings, calibration_folds=2, progress=False)
        export(root / name, root / f"{name}-export")
    return root


@pytest.fixture(scope="module")
def served(exports, triton_server, tmp_path_factory):
    from anomalyops.serving.triton.repository import build_repository

    repository = tmp_path_factory.mktemp("families-repo") / "repository"
    models = {f"weld-{name}": exports / f"{name}-export" for name in MODELS}
    build_repository(repository, models, "python")
    with triton_server(repository) as server:
        yield server


@pytest.mark.parametrize("name", MODELS)
def test_each_family_scores_through_triton_as_in_process(name, served, exports, weld):
    from anomalyops.components.data.datasets import FolderDataset
    from anomalyops.components.training.train import load_trained

    detector = load_trained(exports / name)[0]
    config = detector.config
    dataset = FolderDataset(weld)
    test = dataset.load_test(config.input_size, progress=False, keep_aspect=config.keep_aspect)
    images = test.images[:3]
    expected = detector.predict(images)
    client = triton_http.InferenceServerClient(served.url)
    try:
        tensor = triton_http.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        result = client.infer(f"weld-{name}", [tensor])
    finally:
        client.close()
    scores, maps = result.as_numpy("score")[:, 0], result.as_numpy("anomaly_map")[:, 0]
    np.testing.assert_allclose(scores, expected.scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(maps, expected.maps, rtol=MAP_RTOL, atol=ATOL)

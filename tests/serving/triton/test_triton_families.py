"""Every detector family served by the real Triton exactly as PatchCore is: serving reads
only the contract (model.onnx + model.json), so a short-trained model of each kind must
score through Triton as `predict` scores in process."""

import numpy as np
import pytest
import tritonclient.http as triton_http
from parity import ATOL, MAP_RTOL, RTOL

from anomalyops.components.detectors import DETECTORS

# Few steps: the point is the contract, not accuracy (tests/benchmarks/detectors.py).
QUICK = {"steps": 6, "batch_size": 2, "validate_every": 3}
KINDS = sorted(set(DETECTORS) - {"patchcore"})  # PatchCore: test_triton.py


def quick_settings(kind: str) -> dict:
    learned = {"steps"} <= {f for f in DETECTORS[kind].config_class.__dataclass_fields__}
    return QUICK if learned else {}


@pytest.fixture(scope="module")
def exports(weld, tmp_path_factory):
    from anomalyops.components.deploy.export import export
    from anomalyops.components.training.train import train

    root = tmp_path_factory.mktemp("families")
    for kind in KINDS:
        train(weld, root / kind, kind, quick_settings(kind), calibration_folds=2, progress=False)
        export(root / kind, root / f"{kind}-export")
    return root


@pytest.fixture(scope="module")
def served(exports, triton_server, tmp_path_factory):
    from anomalyops.serving.triton.repository import build_repository

    repository = tmp_path_factory.mktemp("families-repo") / "repository"
    models = {f"weld-{kind}": exports / f"{kind}-export" for kind in KINDS}
    build_repository(repository, models, "python")
    with triton_server(repository) as server:
        yield server


@pytest.mark.parametrize("kind", KINDS)
def test_each_family_scores_through_triton_as_in_process(kind, served, exports, weld_splits):
    from anomalyops.components.training.train import load_trained

    images = weld_splits[1].images[:3]
    expected = load_trained(exports / kind)[0].predict(images)
    client = triton_http.InferenceServerClient(served.url)
    try:
        tensor = triton_http.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images)
        result = client.infer(f"weld-{kind}", [tensor])
    finally:
        client.close()
    scores, maps = result.as_numpy("score")[:, 0], result.as_numpy("anomaly_map")[:, 0]
    np.testing.assert_allclose(scores, expected.scores, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(maps, expected.maps, rtol=MAP_RTOL, atol=ATOL)

"""CFLOW-AD: flow mechanics (small noise images) and one real-data check (weld).

The ImageNet backbone even for mechanics: at 64² it costs no more than a random one and,
unlike a random one, it is the same in every detector, so seeds can be compared.
"""

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from planted import plant_checkerboard

from anomalyops.components.deploy.export import export_onnx
from anomalyops.components.detectors import create, load_detector
from anomalyops.components.detectors.cflow.flow import ConditionalFlow, positional_encoding

SMALL = {"input_size": (64, 64), "steps": 60, "validate_every": 20, "positions": 128}


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def fitted(images):
    return create("cflow", **SMALL).fit(images, progress=False)


def test_fit_predict_shapes_and_finite_scores(fitted, images):
    prediction = fitted.predict(images[:5])
    assert prediction.scores.shape == (5,) and prediction.scores.dtype == np.float32
    assert prediction.maps.shape == (5, 64, 64) and prediction.maps.dtype == np.float32
    assert np.isfinite(prediction.scores).all() and np.isfinite(prediction.maps).all()
    np.testing.assert_allclose(prediction.scores, prediction.maps.reshape(5, -1).max(1))
    # The map is the scale count minus likelihoods of at most about 1 each.
    assert prediction.maps.max() <= len(fitted.model.flows) + 1e-5


def test_training_lowers_the_loss(fitted):
    losses = fitted.log.losses  # mean per-dimension NLL per 20 steps
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.1, losses


def test_flow_log_likelihood_is_the_change_of_variables():
    """Per-dimension log-likelihood = (log|det ∂z/∂x| + log N(z)) / C, the Jacobian taken
    by autograd through blocks whose (zero-initialised) last layers were moved."""
    flow = ConditionalFlow(6, (2, 2), 8, 3, 1.9, torch.Generator().manual_seed(0)).double()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        flow.mean.normal_(generator=generator)
        flow.std.uniform_(0.5, 2.0, generator=generator)
        for block in flow.blocks:
            block.out.weight.normal_(0, 0.5, generator=generator)
    condition = flow.condition[3]

    def transform(x: torch.Tensor) -> torch.Tensor:
        z = (x - flow.mean) / flow.std
        for index, block in enumerate(flow.blocks):
            z = block(z, condition)[0]
            if index < len(flow.permutations):
                z = z[flow.permutations[index]]
        return z

    x = 2 * torch.randn(6, generator=generator, dtype=torch.float64)
    z = transform(x)
    jacobian = torch.autograd.functional.jacobian(transform, x)
    # The standardisation's log-det is a per-scale constant the flow leaves out.
    log_det = torch.linalg.slogdet(jacobian)[1] + flow.std.log().sum()
    expected = (log_det - 0.5 * z @ z) / 6 - 0.5 * math.log(2 * math.pi)
    with torch.no_grad():
        assert float(flow.log_likelihood(x, condition)) == pytest.approx(float(expected))
    assert not torch.equal(z, (x - flow.mean) / flow.std)  # the blocks did move it


def test_positional_encoding_tells_positions_apart():
    codes = positional_encoding(128, 16, 16)
    assert codes.shape == (256, 128)
    distances = torch.cdist(codes, codes) + torch.eye(256) * 1e3
    assert float(distances.min()) > 0.1
    with pytest.raises(ValueError, match="multiple of 4"):
        positional_encoding(130, 4, 4)


def test_save_load_gives_identical_scores_and_maps(fitted, images, tmp_path):
    before = fitted.predict(images)
    again = load_detector(fitted.save(tmp_path / "model")).predict(images)
    np.testing.assert_array_equal(before.scores, again.scores)
    np.testing.assert_array_equal(before.maps, again.maps)


def test_onnx_graph_matches_predict(fitted, images, tmp_path):
    export_onnx(fitted, tmp_path / "model.onnx", external_data_bytes=2**31)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    anomaly_map, score = session.run(["anomaly_map", "score"], {"image": images[:7]})
    expected = fitted.predict(images[:7])
    np.testing.assert_allclose(score, expected.scores, rtol=1e-4)
    np.testing.assert_allclose(anomaly_map[:, 0], expected.maps, rtol=1e-4, atol=1e-5)


def test_same_seed_same_scores_and_refit_forgets(fitted, images):
    again = create("cflow", **SMALL).fit(images, progress=False)
    np.testing.assert_array_equal(fitted.predict(images).scores, again.predict(images).scores)
    # A refit (a cross-fitting fold) starts from the seeded weights, not the trained ones.
    fresh = create("cflow", **SMALL).fit(images[:8], progress=False)
    again.fit(images[:8], progress=False)
    np.testing.assert_array_equal(fresh.predict(images).scores, again.predict(images).scores)
    other = create("cflow", **SMALL, seed=1).fit(images, progress=False)
    assert not np.array_equal(fitted.predict(images).scores, other.predict(images).scores)


def test_a_planted_defect_scores_above_its_clean_image(weld_splits):
    train, test = weld_splits
    detector = create("cflow", steps=150, positions=256).fit(train.images, progress=False)
    clean = test.images[test.labels == 0][:4]
    planted = plant_checkerboard(clean, 112, 112)
    scores = detector.predict(np.concatenate([clean, planted])).scores
    assert (scores[4:] > scores[:4]).all()

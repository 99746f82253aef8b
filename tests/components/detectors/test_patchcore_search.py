"""PatchCore search: HNSW against exact search, and the blocked graph against both."""

import faiss
import numpy as np
import pytest
import torch

from anomalyops.components.detectors import create
from anomalyops.components.detectors.patchcore import torch_model
from anomalyops.components.detectors.patchcore.search import build_index, recall_at_1
from anomalyops.components.metrics import auroc


@pytest.mark.xfail(
    reason="known gap (issue #10): one weld query in ~1 300 lands on an HNSW node far from its "
    "true nearest entry (excess 4.7e4), also at efSearch 128; recall@1 stays >= 0.999",
    strict=False,
)
def test_hnsw_finds_the_nearest_entry_and_keeps_accuracy(weld_splits):
    train, test = weld_splits
    exact = create("patchcore", coreset_ratio=0.25, search="exact").fit(train.images, False)
    approximate = create("patchcore", coreset_ratio=0.25, search="hnsw")
    approximate.model.memory_bank = exact.model.memory_bank
    approximate.fitted = True
    bank = exact.model.memory_bank.numpy()
    with torch.inference_mode():
        embedding = exact.model.embed(torch.from_numpy(test.images[::8]))
    queries = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]).numpy()
    measured = recall_at_1(bank, queries, build_index(bank, "hnsw"))
    assert measured["recall_at_1"] >= 0.97, measured
    assert measured["distance_excess_mean"] < 0.005, measured
    a, b = exact.predict(test.images).scores, approximate.predict(test.images).scores
    assert (b >= a - 1e-3).all()  # an approximate neighbour is never nearer
    assert abs(auroc(test.labels, a) - auroc(test.labels, b)) < 0.01


def test_blocked_graph_matches_exact_search_on_a_bank_of_many_blocks(weld_splits, monkeypatch):
    train, test = weld_splits
    detector = create("patchcore", coreset_ratio=0.1, search="exact").fit(train.images, False)
    monkeypatch.setattr(torch_model, "SCORE_CHUNK", 500)
    assert len(detector.model.memory_bank) > 3 * 500
    images = test.images[:4]
    with torch.inference_mode():
        graph = detector.model(torch.from_numpy(images))
    expected = detector.predict(images)
    np.testing.assert_allclose(graph.score.numpy(), expected.scores, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(graph.anomaly_map[:, 0].numpy(), expected.maps, atol=1e-3)
    assert detector.model.scratch_bytes_per_image() == 3 * 1024 * 500 * 4


def test_hnsw_index_is_rebuilt_identically(rng):
    bank = rng.normal(size=(6000, 24)).astype(np.float32)
    queries = rng.normal(size=(500, 24)).astype(np.float32)
    first, second = build_index(bank, "auto"), build_index(bank, "auto")
    assert isinstance(first, faiss.IndexHNSWFlat)
    np.testing.assert_array_equal(first.search(queries, 1)[0], second.search(queries, 1)[0])

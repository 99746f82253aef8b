"""PatchCore search: HNSW against exact search, and the blocked graph against both."""

import faiss
import numpy as np
import pytest
import torch

from anomalyops.components.detectors import create
from anomalyops.components.detectors.patchcore import torch_model
from anomalyops.components.detectors.patchcore.search import (
    Exclusion,
    build_index,
    nearest_distance,
    recall_at_1,
)


def test_hnsw_finds_the_nearest_entry_and_image_scores_are_exact(weld_splits):
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
    a, b = exact.predict(test.images), approximate.predict(test.images)
    # an approximate neighbour is never nearer (up to the rounding of exact search's
    # |q|² - 2q·b + |b|² for near-zero distances, a few hundredths after the square root)
    assert (b.maps >= a.maps - 0.05).all()
    # each tile's largest distances are re-searched exactly: the scores are exact search's
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-5, atol=1e-4)


def test_exact_peaks_recover_a_far_miss(rng):
    bank = rng.normal(size=(5000, 16)).astype(np.float32)
    queries = rng.normal(size=(4, 64, 16)).astype(np.float32)
    index = build_index(bank, "hnsw")
    index.hnsw.efSearch = 1  # a poor search: many answers far from the true nearest
    exact = np.sqrt(build_index(bank, "exact").search(queries.reshape(-1, 16), 1)[0][:, 0])
    rough = np.sqrt(index.search(queries.reshape(-1, 16), 1)[0][:, 0])
    assert (rough > exact + 1e-4).mean() > 0.2  # the search really misses
    found = nearest_distance(index, queries.reshape(-1, 16), groups=4).reshape(4, 64)
    np.testing.assert_allclose(found.max(axis=1), exact.reshape(4, 64).max(axis=1), rtol=1e-5)
    assert (found >= exact.reshape(4, 64) - 1e-4).all()


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


def test_excluded_rows_are_never_answered_and_peaks_match_a_bank_without_them(rng):
    """Filtered search (one index, some rows left out) against an index built without
    them: exact search agrees everywhere, HNSW on every group's maximum (the score)."""
    bank = rng.normal(size=(6000, 16)).astype(np.float32)
    queries = np.concatenate([bank[:64], rng.normal(size=(192, 16)).astype(np.float32)])
    excluded = np.zeros(len(bank), dtype=bool)
    excluded[:3000] = True  # every query's own row among them
    without = np.sqrt(build_index(bank[~excluded], "exact").search(queries, 1)[0][:, 0])
    assert (without[:64] > 0.5).all()  # the copies' own rows would have answered 0
    exclusion = Exclusion(excluded)
    exact = nearest_distance(build_index(bank, "exact"), queries, exclusion=exclusion)
    np.testing.assert_allclose(exact, without, rtol=1e-5, atol=1e-5)
    found = nearest_distance(build_index(bank, "hnsw"), queries, groups=4, exclusion=exclusion)
    np.testing.assert_allclose(
        found.reshape(4, -1).max(axis=1), without.reshape(4, -1).max(axis=1), rtol=1e-5
    )
    assert (found >= without - 1e-4).all()


def test_excluding_every_row_is_refused():
    with pytest.raises(ValueError, match="left no bank entry"):
        Exclusion(np.ones(100, dtype=bool))

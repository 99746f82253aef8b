"""Nearest-neighbour search over PatchCore's memory bank, exact or approximate.

Exact search costs patches × bank × dims per image, so it grows with the bank (bottle:
167 ms/img at a 10 % bank on 2 cores); an HNSW graph answers in roughly log(bank) steps.
On a GPU PatchCore does not come here: exact search there is the exported graph's own
blocked matrix products in torch (PatchCoreModel.nearest_distances), which needs no
faiss-gpu build to match the CUDA wheel.
"""

from __future__ import annotations

import faiss
import numpy as np

SEARCHES = ("auto", "exact", "hnsw")
# Below this many entries exact search is about as fast as HNSW and has nothing to miss.
EXACT_BELOW = 4096
HNSW_NEIGHBOURS = 32  # graph degree M
HNSW_BUILD_EFFORT = 64  # efConstruction
HNSW_SEARCH_EFFORT = 48  # efSearch: recall@1 ≥ 0.99 on bottle/tile banks (see benchmark)
PEAK_CHECKS = 8  # each tile's largest HNSW answers re-searched exactly at first


def resolve(search: str, bank_size: int) -> str:
    """The search `auto` means on the CPU: exact on a small bank, HNSW otherwise."""
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if search != "auto":
        return search
    return "exact" if bank_size < EXACT_BELOW else "hnsw"


def build_index(bank: np.ndarray, search: str = "auto") -> faiss.Index:
    """A faiss index over the bank's rows (float32 N×D)."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    if resolve(search, len(bank)) == "exact":
        index = faiss.IndexFlatL2(bank.shape[1])
    else:
        index = faiss.IndexHNSWFlat(bank.shape[1], HNSW_NEIGHBOURS)
        index.hnsw.efConstruction = HNSW_BUILD_EFFORT
        index.hnsw.efSearch = HNSW_SEARCH_EFFORT
        # One thread: a multi-threaded HNSW build links nodes in a racy order, and a
        # saved-then-loaded detector must score exactly as before.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            index.add(bank)
        finally:
            faiss.omp_set_num_threads(threads)
        return index
    index.add(bank)
    return index


def nearest_distance(index: faiss.Index, queries: np.ndarray, groups: int = 1) -> np.ndarray:
    """Euclidean distance from each query row to its nearest bank entry.

    The queries are `groups` equal runs (a tile's patches). With an approximate index the
    largest distance of every group is made exact: an HNSW answer is a real bank entry, so
    its distance is never below the true one, and re-searching exactly each group's top
    answers until no unchecked answer exceeds the group's exact maximum gives that maximum
    exactly. Image scores are then what exact search gives; a rare far miss (recall@1
    0.999) can only raise a low point of the map, never the score.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    squared = index.search(queries, 1)[0][:, 0]
    if isinstance(index, faiss.IndexHNSW):
        squared = _exact_peaks(faiss.downcast_index(index.storage), queries, squared, groups)
    return np.sqrt(np.maximum(squared, 0))


def _exact_peaks(
    exact: faiss.Index, queries: np.ndarray, squared: np.ndarray, groups: int
) -> np.ndarray:
    """SQUARED with each group's largest approximate distances replaced by exact ones."""
    per_group = squared.reshape(groups, -1).copy()
    checked = np.zeros(per_group.shape, dtype=bool)
    top = np.argsort(-per_group, axis=1)[:, :PEAK_CHECKS]
    pending = np.zeros_like(checked)
    np.put_along_axis(pending, top, True, axis=1)
    while pending.any():
        rows = np.flatnonzero(pending)
        per_group.flat[rows] = exact.search(queries[rows], 1)[0][:, 0]
        checked |= pending
        peak = np.where(checked, per_group, -np.inf).max(axis=1, keepdims=True)
        pending = ~checked & (per_group > peak)
    return per_group.reshape(-1)


def recall_at_1(bank: np.ndarray, queries: np.ndarray, index: faiss.Index) -> dict[str, float]:
    """How often `index` finds the exact nearest entry, and how far off its distance is."""
    exact = build_index(bank, "exact")
    true_squared, true_ids = exact.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    found_squared, found_ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    true_d = np.sqrt(np.maximum(true_squared[:, 0], 0))
    found_d = np.sqrt(np.maximum(found_squared[:, 0], 0))
    excess = (found_d - true_d) / np.maximum(true_d, 1e-6)
    return {
        "recall_at_1": float((found_ids[:, 0] == true_ids[:, 0]).mean()),
        "distance_excess_mean": float(excess.mean()),
        "distance_excess_max": float(excess.max()),
    }

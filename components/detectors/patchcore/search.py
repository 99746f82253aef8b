"""Nearest-neighbour search over PatchCore's memory bank, exact or approximate.

Exact search costs patches × bank × dims per image, so it grows with the bank (bottle:
167 ms/img at a 10 % bank on 2 cores); an HNSW graph answers in roughly log(bank) steps.
On a GPU faiss' exact search is fast enough and there is nothing to approximate.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

SEARCHES = ("auto", "exact", "hnsw")
# Below this many entries exact search is about as fast as HNSW and has nothing to miss.
EXACT_BELOW = 4096
HNSW_NEIGHBOURS = 32  # graph degree M
HNSW_BUILD_EFFORT = 64  # efConstruction
HNSW_SEARCH_EFFORT = 48  # efSearch: recall@1 ≥ 0.99 on bottle/tile banks (see benchmark)


def gpu_available() -> bool:
    return torch.cuda.is_available() and hasattr(faiss, "StandardGpuResources")


def resolve(search: str, bank_size: int) -> str:
    """The search `auto` means here: exact on a GPU or a small bank, HNSW otherwise."""
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}, got {search!r}")
    if search != "auto":
        return search
    return "exact" if gpu_available() or bank_size < EXACT_BELOW else "hnsw"


def build_index(bank: np.ndarray, search: str = "auto") -> faiss.Index:
    """A faiss index over the bank's rows (float32 N×D); on the GPU for exact search."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    if resolve(search, len(bank)) == "exact":
        index = faiss.IndexFlatL2(bank.shape[1])
        if gpu_available():
            index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
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


def nearest_distance(index: faiss.Index, queries: np.ndarray) -> np.ndarray:
    """Euclidean distance from each query row to its nearest bank entry."""
    squared, _ = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    return np.sqrt(np.maximum(squared[:, 0], 0))


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

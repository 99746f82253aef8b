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
from tqdm.auto import tqdm

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


def build_index(bank: np.ndarray, search: str = "auto", progress: bool = False) -> faiss.Index:
    """A faiss index over the bank's rows (float32 N×D); an HNSW build shows a bar."""
    bank = np.ascontiguousarray(bank, dtype=np.float32)
    if resolve(search, len(bank)) == "exact":
        index = faiss.IndexFlatL2(bank.shape[1])
        index.add(bank)
        return index
    index = faiss.IndexHNSWFlat(bank.shape[1], HNSW_NEIGHBOURS)
    index.hnsw.efConstruction = HNSW_BUILD_EFFORT
    index.hnsw.efSearch = HNSW_SEARCH_EFFORT
    # One thread: a multi-threaded HNSW build links nodes in a racy order, and a
    # saved-then-loaded detector must score exactly as before. One add, not blocks: rows
    # come in image order, and a graph built block by block found the nearest entry for
    # 95.6 % of bottle's test patches against 99.4 % (the bar shows only the time).
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with tqdm(total=len(bank), desc="index bank (HNSW)", unit="entry", unit_scale=True,
                  disable=not progress) as bar:  # fmt: skip
            index.add(bank)
            bar.update(len(bank))
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def nearest_distance(
    index: faiss.Index,
    queries: np.ndarray,
    groups: int = 1,
    exclusion: Exclusion | None = None,
) -> np.ndarray:
    """Euclidean distance from each query row to its nearest bank entry (outside
    EXCLUSION's rows, where given).

    The queries are `groups` equal runs (a tile's patches). With an approximate index the
    largest distance of every group is made exact: an HNSW answer is a real bank entry, so
    its distance is never below the true one, and re-searching exactly each group's top
    answers until no unchecked answer exceeds the group's exact maximum gives that maximum
    exactly. Image scores are then what exact search gives; a rare far miss (recall@1
    0.999) can only raise a low point of the map, never the score.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    hnsw = isinstance(index, faiss.IndexHNSW)
    exact = index if exclusion is None else exclusion.exact(index)
    if hnsw and exclusion is None:
        exact = faiss.downcast_index(index.storage)
        squared = index.search(queries, 1)[0][:, 0]
    elif hnsw:
        params = faiss.SearchParametersHNSW(sel=exclusion.selector, efSearch=index.hnsw.efSearch)
        squared, ids = index.search(queries, 1, params=params)
        squared = squared[:, 0]
        lost = np.flatnonzero(ids[:, 0] < 0)  # the walk found no kept entry
        if len(lost):
            squared[lost] = exact.search(queries[lost], 1)[0][:, 0]
    else:
        squared = exact.search(queries, 1)[0][:, 0]
    if hnsw:
        squared = _exact_peaks(exact, queries, squared, groups)
    return np.sqrt(np.maximum(squared, 0))


class Exclusion:
    """Bank rows a search may not answer with (a boolean mask over the bank's rows): the
    rows an image itself put in the bank, when it is scored as an unseen one.

    HNSW filters them inside its walk (faiss IDSelector: it still walks through them, it
    never answers with one), so one graph serves every fold. Exact search goes to a flat
    copy of the kept rows, built once: faiss's filtered flat search skips BLAS and ran 14×
    slower (4 000 queries, 205 k rows: 17.8 s against 1.4 s), which made cross-fitting
    grow with the square of the images.
    """

    def __init__(self, excluded: np.ndarray) -> None:
        self.kept = ~np.asarray(excluded, dtype=bool)
        if not self.kept.any():
            raise ValueError("scoring without an image's own bank rows left no bank entry; "
                             "use fewer folds or a larger coreset ratio")  # fmt: skip
        self._bits = np.packbits(self.kept, bitorder="little")  # what the selector reads
        self.selector = faiss.IDSelectorBitmap(len(self.kept), faiss.swig_ptr(self._bits))
        self._exact: faiss.Index | None = None

    def exact(self, index: faiss.Index) -> faiss.Index:
        """A flat index over INDEX's kept rows (the same for every call)."""
        if self._exact is None:
            hnsw = isinstance(index, faiss.IndexHNSW)
            storage = faiss.downcast_index(index.storage) if hnsw else index
            self._exact = faiss.IndexFlatL2(storage.d)
            self._exact.add(storage.reconstruct_n(0, storage.ntotal)[self.kept])
        return self._exact


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

"""Detection metrics on raw scores: AUROC (rank-based), AUPRO, F1.

AUROC depends only on the ranking, so it is computed on raw scores; a squashing step
before it (anomalib's sigmoid with no validation split) turned a 0.898 into a 0.500.
"""

from __future__ import annotations

import numpy as np


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the Mann–Whitney U statistic (ties count half)."""
    labels = np.asarray(labels).ravel().astype(bool)
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise ValueError("AUROC needs both good and defective samples")
    # Average ranks (ties share the mean of their positions), 1-based.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    u = ranks[labels].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def aupro(
    masks: np.ndarray, maps: np.ndarray, max_fpr: float = 0.3, content: np.ndarray | None = None
) -> float:
    """Area under the per-region-overlap curve up to `max_fpr`, normalised to [0, 1].

    Every connected defect region counts equally, whatever its size (Bergmann et al.).
    Exact: pixels are sorted once by score and the curve is accumulated along the order.
    CONTENT (bool, as masks) leaves out the pixels no image fills (a kept aspect's border).
    """
    from scipy import ndimage  # here only: AUROC and the GPU check need no scipy

    masks = np.asarray(masks, dtype=bool)
    maps = np.asarray(maps, dtype=np.float64)
    if masks.shape != maps.shape:
        raise ValueError(f"masks {masks.shape} and maps {maps.shape} differ in shape")
    content = np.ones(masks.shape, bool) if content is None else np.asarray(content, bool)
    masks = masks & content
    regions = np.zeros(masks.shape, dtype=np.int64)
    count = 0
    for i, mask in enumerate(masks):
        labelled, found = ndimage.label(mask)
        regions[i] = np.where(labelled > 0, labelled + count, 0)
        count += found
    good_pixels = int((~masks & content).sum())
    if count == 0 or good_pixels == 0:
        raise ValueError("AUPRO needs defect regions and good pixels")
    sizes = np.bincount(regions.ravel(), minlength=count + 1).astype(np.float64)
    # Each defect pixel adds 1/(its region's size · regions) to PRO; each good pixel
    # adds 1/good_pixels to FPR, as the threshold falls past it.
    flat_regions = regions.ravel()
    pro_step = np.where(flat_regions > 0, 1.0 / (sizes[flat_regions] * count), 0.0)
    fpr_step = np.where((flat_regions == 0) & content.ravel(), 1.0 / good_pixels, 0.0)
    order = np.argsort(-maps.ravel(), kind="stable")
    scores = maps.ravel()[order]
    pro = np.cumsum(pro_step[order])
    fpr = np.cumsum(fpr_step[order])
    # Keep one point per distinct score (the last of each run of ties).
    last = np.r_[scores[1:] != scores[:-1], True]
    fpr, pro = np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]
    cut = np.searchsorted(fpr, max_fpr, side="right")
    if cut < len(fpr):
        t = (max_fpr - fpr[cut - 1]) / (fpr[cut] - fpr[cut - 1])
        pro_end = pro[cut - 1] + t * (pro[cut] - pro[cut - 1])
        fpr, pro = np.r_[fpr[:cut], max_fpr], np.r_[pro[:cut], pro_end]
    return float(np.trapezoid(pro, fpr) / max_fpr)


def pixel_metrics(
    masks: np.ndarray, maps: np.ndarray, content: np.ndarray | None = None
) -> dict[str, float]:
    """Pixel AUROC and AUPRO over the pixels the images fill (CONTENT; None: all)."""
    inside = np.ones(masks.shape, bool) if content is None else content
    return {"pixel_auroc": auroc(masks[inside], maps[inside]),
            "aupro": aupro(masks, maps, content=content)}  # fmt: skip


def f1_at(labels: np.ndarray, scores: np.ndarray, threshold: float) -> float:
    """F1 of "defective" when score > threshold."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) > threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

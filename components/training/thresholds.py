"""Thresholds from good images only, with an honest bound on the false-positive rate.

A factory rarely has defect images when it starts, so the threshold is set on good
images no model scoring them has seen (out-of-fold or leave-one-out): the conformal
order statistic that keeps a new good image's chance of a false alarm at or below the
target. With few images that guarantee is impossible (20 images cannot promise 1 %), so
the result also carries the one-sided Clopper–Pearson upper bound on the false-positive
rate, and says whether the target is guaranteed.

Pixels are not independent samples: a good image's pixels rise and fall together (one
blurred map, one lighting), so ~458 k pixels of 20 images carry about 20 samples' worth of
evidence. The pixel threshold is the empirical quantile over pixels, and its bound is
taken over images (Hoeffding on the per-image exceedance share), which holds however
the pixels within an image are correlated; it is rarely tight enough to guarantee 0.1 %.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import beta


@dataclass(frozen=True)
class Calibration:
    threshold: float
    target_fpr: float
    n_good: int
    exceedances: int  # unseen good scores above the threshold
    empirical_fpr: float
    fpr_upper_bound: float  # at `confidence`, given n_good images
    confidence: float
    guaranteed: bool  # enough images for the conformal guarantee at target_fpr
    miss_rate: float | None = None  # share of known defect images at or below threshold
    n_defect: int = 0
    unit: str = "image"  # what the rate counts: "image", or "pixel" (bounded over images)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = (
            f"threshold {self.threshold:.4g}: target FPR {self.target_fpr:.2%}, "
            f"observed {self.exceedances}/{self.n_good} good above it, FPR ≤ "
            f"{self.fpr_upper_bound:.2%} at {self.confidence:.0%} confidence"
        )
        if self.unit == "pixel":
            text = (
                f"pixel threshold {self.threshold:.4g}: target FPR {self.target_fpr:.2%}, "
                f"observed {self.empirical_fpr:.3%} of pixels in {self.n_good} good images; "
                f"bound over images {self.fpr_upper_bound:.2%} at {self.confidence:.0%}"
            )
            if not self.guaranteed:
                text += " (target not guaranteed: too few images for a correlated-pixel bound)"
        elif not self.guaranteed:
            needed = math.ceil(1 / self.target_fpr) - 1
            text += f" (target not guaranteed: needs ≥ {needed} good images)"
        if self.miss_rate is not None:
            text += f"; misses {self.miss_rate:.1%} of {self.n_defect} known defects"
        return text


def clopper_pearson_upper(failures: int, trials: int, confidence: float) -> float:
    """One-sided upper confidence bound on a binomial rate."""
    if failures >= trials:
        return 1.0
    return float(beta.ppf(confidence, failures + 1, trials - failures))


def calibrate(
    good_scores: np.ndarray,
    target_fpr: float = 0.01,
    confidence: float = 0.95,
    defect_scores: np.ndarray | None = None,
) -> Calibration:
    """The threshold on unseen good scores for a per-image false-positive rate target."""
    scores = np.sort(np.asarray(good_scores, dtype=np.float64).ravel())
    if scores.size == 0:
        raise ValueError("threshold calibration needs at least one good score")
    if not np.isfinite(scores).all():
        raise ValueError("threshold calibration got non-finite scores")
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    n = scores.size
    rank = math.ceil((n + 1) * (1 - target_fpr))  # 1-based conformal rank
    guaranteed = rank <= n
    threshold = float(scores[min(rank, n) - 1])
    exceedances = int((scores > threshold).sum())
    miss_rate, n_defect = None, 0
    if defect_scores is not None and np.size(defect_scores):
        defects = np.asarray(defect_scores, dtype=np.float64).ravel()
        miss_rate, n_defect = float((defects <= threshold).mean()), int(defects.size)
    return Calibration(
        threshold=threshold,
        target_fpr=target_fpr,
        n_good=n,
        exceedances=exceedances,
        empirical_fpr=exceedances / n,
        fpr_upper_bound=clopper_pearson_upper(exceedances, n, confidence),
        confidence=confidence,
        guaranteed=guaranteed,
        miss_rate=miss_rate,
        n_defect=n_defect,
    )


def calibrate_pixels(
    good_maps: np.ndarray,
    target_fpr: float = 0.001,
    confidence: float = 0.95,
    content: np.ndarray | None = None,
) -> Calibration:
    """The pixel threshold on unseen good maps (N×H×W), with a bound over images.

    The threshold is the (1 − target) quantile of all pixels the images fill (CONTENT, as
    the maps; None: all): a kept aspect's black border is no part and would pull it down.
    The bound treats images, not pixels, as the samples: each image's share of pixels
    above the threshold lies in [0, 1] and images are exchangeable, so by Hoeffding a new
    good image's expected share is at most the mean share + sqrt(ln(1/(1 − confidence)) / 2N)
    at that confidence.
    """
    maps = np.asarray(good_maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] == 0:
        raise ValueError(f"pixel calibration needs N×H×W good maps, got shape {maps.shape}")
    if not np.isfinite(maps).all():
        raise ValueError("pixel calibration got non-finite map values")
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    filled = np.ones(maps.shape, bool) if content is None else np.asarray(content, bool)
    if filled.shape != maps.shape:
        raise ValueError(f"pixel calibration: content {filled.shape} is not maps {maps.shape}")
    threshold = float(np.quantile(maps[filled], 1 - target_fpr, method="higher"))
    above = ((maps > threshold) & filled).reshape(len(maps), -1).sum(1)
    shares = above / filled.reshape(len(maps), -1).sum(1)
    bound = min(
        1.0, float(shares.mean()) + math.sqrt(math.log(1 / (1 - confidence)) / (2 * len(maps)))
    )
    return Calibration(
        threshold=threshold,
        target_fpr=target_fpr,
        n_good=len(maps),
        exceedances=int(above.sum()),
        empirical_fpr=float(shares.mean()),
        fpr_upper_bound=bound,
        confidence=confidence,
        guaranteed=bound <= target_fpr,
        unit="pixel",
    )

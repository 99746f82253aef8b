"""Folds for cross-fitting the thresholds, kept apart by capture session.

Good parts photographed in one session look more alike than parts from two sessions
(lighting, focus, fixture): a threshold fitted on images of the sessions it is scored on
does not bound the next session's false alarms. Cameras and line exports name files in
capture order (time stamps, counters, batch prefixes such as weld's `3-`, `4-`, `6-`), so
the folds are contiguous blocks of train/good in file-name order: each fold is scored by
a model that never saw its neighbours in time. File modification times are no guide:
copying a dataset sets them all to the moment of the copy.
"""

from __future__ import annotations

import numpy as np

# Five folds: every model scoring a fold learnt from 80 % of the images, so out-of-fold
# scores run slightly above those of the final model on all of them (conservative).
FOLDS = 5


def session_folds(count: int, folds: int = FOLDS) -> list[np.ndarray]:
    """Indices 0..COUNT-1 (file-name order) in at most FOLDS contiguous, near-equal blocks."""
    if count < 2:
        raise ValueError(f"cross-fitting needs at least 2 images, got {count}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"calibration folds must be an integer of at least 2, got {folds!r}")
    return np.array_split(np.arange(count), min(folds, count))

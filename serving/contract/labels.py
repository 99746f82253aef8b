"""The one label rule: what a scored frame is called, everywhere a label is given.

A frame the model has no business scoring (serving/contract/frame_check.py) is
'unusable' whatever its score; otherwise it is 'anomalous' above the threshold and
'good' at or below it. The transformer, the plant client and `anomalyops predict` all
call `label`, and the prediction log accepts exactly LABELS.
"""

from __future__ import annotations

from collections.abc import Sequence

GOOD, ANOMALOUS, UNUSABLE = "good", "anomalous", "unusable"
LABELS = (GOOD, ANOMALOUS, UNUSABLE)


def label(score: float, threshold: float, problems: Sequence[str] = ()) -> str:
    """UNUSABLE when PROBLEMS name any, else ANOMALOUS when SCORE > THRESHOLD, else GOOD."""
    if problems:
        return UNUSABLE
    return ANOMALOUS if score > threshold else GOOD

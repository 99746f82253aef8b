"""The promotion rule, pure: is a new version at least as good as the champion?

"At least as good", on the same evaluation set only:
  1. higher image AUROC wins (differences below 1e-9 count as equal);
  2. on equal AUROC, the lower (or equal) false-positive rate at the calibrated threshold wins.
If the champion was evaluated on a different set (a different hash of the test images
actually evaluated: one skipped as unreadable changes it), the new version is not
promoted: the numbers are not comparable, and the reason says so.
"""

from __future__ import annotations

from typing import Any

AUROC_EPS = 1e-9


def _number(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None


def compare(new: dict, champion: dict) -> tuple[bool, str]:
    """(new is at least as good as champion, why), by image AUROC then false-positive rate."""
    new_auc, old_auc = _number(new.get("image_auroc")), _number(champion.get("image_auroc"))
    if new_auc is None:
        return False, "new version has no image_auroc"
    if old_auc is None:
        return True, "champion has no image_auroc"
    if new_auc > old_auc + AUROC_EPS:
        return True, f"image_auroc {new_auc:.4f} > champion's {old_auc:.4f}"
    if new_auc < old_auc - AUROC_EPS:
        return False, f"image_auroc {new_auc:.4f} < champion's {old_auc:.4f}"
    new_fpr, old_fpr = (
        _number(new.get("false_positive_rate")),
        _number(champion.get("false_positive_rate")),
    )
    if new_fpr is None or old_fpr is None or new_fpr <= old_fpr:
        return (
            True,
            f"image_auroc equal ({new_auc:.4f}), false_positive_rate {new_fpr} <= {old_fpr}",
        )
    return False, f"image_auroc equal ({new_auc:.4f}), false_positive_rate {new_fpr} > {old_fpr}"


def decide(metrics: dict, eval_hash: str | None, champion: str | None,
           champion_tags: dict | None) -> tuple[bool, str]:  # fmt: skip
    """(promote?, why) for a version with METRICS on the set EVAL_HASH against CHAMPION
    (its version, or None when the variant has none) tagged CHAMPION_TAGS."""
    skipped = int(_number(metrics.get("test_skipped")) or 0)
    tags = champion_tags or {}
    if champion is None:
        return True, "first version of this variant"
    if not eval_hash:
        return False, "no evaluation-set hash given; cannot compare with champion"
    if tags.get("eval_dataset_sha256") != eval_hash:
        why = f"{skipped} unreadable test images were skipped, so " if skipped else ""
        return False, (
            f"{why}champion v{champion} was evaluated on a different evaluation set "
            f"({tags.get('eval_dataset_sha256', '?')[:12]} vs {eval_hash[:12]}); "
            "metrics are not comparable"
        )
    promoted, reason = compare(metrics, tags)
    return promoted, f"{reason} (champion v{champion})"
